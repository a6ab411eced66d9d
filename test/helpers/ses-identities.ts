// A local Amazon SES v2 identities API speaking the REST JSON wire format the SDK serializes
// (@aws-sdk/client-sesv2 dist-cjs: CreateEmailIdentity POST /v2/email/identities, GetEmailIdentity
// GET /v2/email/identities/{EmailIdentity}, PutEmailIdentityMailFromAttributes PUT …/{EmailIdentity}/mail-from,
// DeleteEmailIdentity DELETE …/{EmailIdentity}); errors carry `x-amzn-ErrorType` and `{"message"}` as AWS does.
// Reference: https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_Operations.html
import { randomBytes } from 'node:crypto';
import { startJsonStub, type StubReply, type JsonRequest } from './http-stub.js';

export interface SesIdentity {
  name: string;
  tokens: string[];
  mailFrom?: string;
  /** GetEmailIdentity calls so far. */
  gets: number;
}

export interface SesServer {
  url: string;
  requests: JsonRequest[];
  identities: Map<string, SesIdentity>;
  /** DKIM (and MAIL FROM) status per identity: SUCCESS from the n-th GetEmailIdentity after creation on; `fail`: FAILED. Default: never. */
  successOn: Map<string, number | 'never' | 'fail'>;
  stop(): Promise<void>;
}

const error = (status: number, type: string, message: string): StubReply => ({ status, headers: { 'x-amzn-errortype': type }, body: { message } });

function checkKeys(body: unknown, allowed: string[], required: string[]): string | null {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return 'request body must be a JSON object';
  for (const k of Object.keys(body)) if (!allowed.includes(k)) return `unexpected field ${k}`;
  for (const k of required) if (typeof (body as Record<string, unknown>)[k] !== 'string') return `${k} is required`;
  return null;
}

/**
 * Starts the server. Requests must be SigV4-signed for `accessKeyId` in `region` (the credential scope is checked,
 * the signature is not recomputed).
 */
export async function startSesIdentities(accessKeyId: string, region: string): Promise<SesServer> {
  const identities = new Map<string, SesIdentity>();
  const successOn = new Map<string, number | 'never' | 'fail'>();
  const scope = new RegExp(`^AWS4-HMAC-SHA256 Credential=${accessKeyId}/\\d{8}/${region}/ses/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$`);

  const describe = (id: SesIdentity) => {
    const rule = successOn.get(id.name) ?? 'never';
    const status = rule === 'fail' ? 'FAILED' : rule !== 'never' && id.gets >= rule ? 'SUCCESS' : 'PENDING';
    return {
      IdentityType: 'DOMAIN',
      FeedbackForwardingStatus: true,
      VerifiedForSendingStatus: status === 'SUCCESS',
      VerificationStatus: status,
      DkimAttributes: { SigningEnabled: true, Status: status, Tokens: id.tokens, SigningAttributesOrigin: 'AWS_SES', NextSigningKeyLength: 'RSA_2048_BIT', CurrentSigningKeyLength: 'RSA_2048_BIT' },
      ...(id.mailFrom ? { MailFromAttributes: { MailFromDomain: id.mailFrom, MailFromDomainStatus: status, BehaviorOnMxFailure: 'USE_DEFAULT_VALUE' } } : {}),
      Policies: {},
      Tags: [],
    };
  };

  const stub = await startJsonStub((req) => {
    if (!scope.test(String(req.headers.authorization ?? ''))) return error(403, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (req.method === 'POST' && req.path === '/v2/email/identities') {
      const bad = checkKeys(req.body, ['EmailIdentity', 'Tags', 'DkimSigningAttributes', 'ConfigurationSetName'], ['EmailIdentity']);
      if (bad) return error(400, 'BadRequestException', bad);
      const name = (req.body as { EmailIdentity: string }).EmailIdentity;
      if (identities.has(name)) return error(400, 'AlreadyExistsException', `Email identity ${name} already exist.`);
      const id: SesIdentity = { name, tokens: [0, 1, 2].map(() => randomBytes(16).toString('hex')), gets: 0 };
      identities.set(name, id);
      const d = describe(id);
      return { status: 200, body: { IdentityType: d.IdentityType, VerifiedForSendingStatus: false, DkimAttributes: d.DkimAttributes } };
    }
    const m = /^\/v2\/email\/identities\/([^/]+)(\/mail-from)?$/.exec(req.path);
    const id = m ? identities.get(decodeURIComponent(m[1]!)) : undefined;
    if (!m || !id) return error(404, 'NotFoundException', `Email identity ${m ? decodeURIComponent(m[1]!) : req.path} does not exist.`);
    if (req.method === 'PUT' && m[2]) {
      const bad = checkKeys(req.body, ['MailFromDomain', 'BehaviorOnMxFailure'], ['MailFromDomain']);
      if (bad) return error(400, 'BadRequestException', bad);
      const mailFrom = (req.body as { MailFromDomain: string }).MailFromDomain;
      if (!mailFrom.endsWith(`.${id.name}`)) return error(400, 'BadRequestException', 'MAIL FROM domain must be a subdomain of the identity');
      id.mailFrom = mailFrom;
      return { status: 200, body: {} };
    }
    if (req.method === 'GET' && !m[2]) {
      id.gets++;
      return { status: 200, body: describe(id) };
    }
    if (req.method === 'DELETE' && !m[2]) {
      identities.delete(id.name);
      return { status: 200, body: {} };
    }
    return error(405, 'BadRequestException', 'method not allowed');
  });
  return { url: stub.url, requests: stub.requests, identities, successOn, stop: stub.stop };
}
