// Local provider servers for the sms/whatsapp adapters, built on http-stub:
// - Twilio 2010-04-01 (Messages.json, Accounts/{Sid}.json) and Meta WhatsApp Cloud API (/{v}/{id}/messages,
//   /{v}/{id}): every request is first checked by Prism against the provider's published spec (violations are
//   collected); then the stub checks the credential, plays any scripted answers for the recipient (Twilio error
//   bodies {code, message, more_info, status}, 429 with Retry-After, 5xx, STOP 21610, Meta error objects), and
//   otherwise answers with Prism's documented response, with a fresh message id it records.
// - Amazon SNS: the AWS Query protocol (form-encoded Action=Publish|GetSMSAttributes, XML answers) with a real
//   SigV4 signature check, as the SDK's serializer/deserializer expect (@aws-sdk/client-sns dist-cjs).
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { startHttpStub, type HttpStub, type StubReply, type RecordedRequest } from './http-stub.js';
import { checkWithPrism, type PrismServer } from './prism.js';

/** A scripted answer for one attempt to one recipient; `'ok'` lets the request through. */
export type Scripted = StubReply | 'ok';

/** Per-recipient scripts: the n-th request to that recipient gets the n-th entry; after the last, `'ok'`. */
export type Script = Record<string, Scripted[]>;

interface Common extends HttpStub {
  /** Spec violations Prism reported, one line each; tests expect none. */
  violations: string[];
  /** Requests that reached the send operation, with the answer given. */
  sends: Array<{ to: string; status: number; messageId?: string; payload: Record<string, unknown>; at: number }>;
  /** Requests that reached the verify operation, with the answer status. */
  verifies: number[];
}

function nextScripted(script: Script, counts: Map<string, number>, to: string): Scripted {
  const n = counts.get(to) ?? 0;
  counts.set(to, n + 1);
  return script[to]?.[n] ?? 'ok';
}

function hex(n: number): string {
  return randomBytes(n).toString('hex');
}

// ---------------------------------------------------------------------------------------------- Twilio

/** A Twilio error answer (https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions). */
export function twilioError(status: number, code: number, message: string, headers: Record<string, string> = {}): StubReply {
  return { status, headers, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status } };
}

export interface TwilioStub extends Common {
  /** Replace the accepted auth token (e.g. to revoke the tenant's credential). */
  setAuthToken(token: string): void;
}

/** A Twilio API server for one account; `prism` runs twilio_api_v2010.json. */
export async function startTwilioStub(o: { prism: PrismServer; accountSid: string; authToken: string; script?: Script }): Promise<TwilioStub> {
  let token = o.authToken;
  const counts = new Map<string, number>();
  const violations: string[] = [];
  const sends: Common['sends'] = [];
  const verifies: number[] = [];
  const stub = await startHttpStub(async (req: RecordedRequest): Promise<StubReply> => {
    const checked = await checkWithPrism(o.prism, req);
    violations.push(...checked.violations);
    const expected = `Basic ${Buffer.from(`${o.accountSid}:${token}`).toString('base64')}`;
    const authed = req.headers.authorization === expected;
    const isSend = req.method === 'POST' && req.path === `/2010-04-01/Accounts/${o.accountSid}/Messages.json`;
    const isVerify = req.method === 'GET' && req.path === `/2010-04-01/Accounts/${o.accountSid}.json`;
    if (!isSend && !isVerify) return twilioError(404, 20404, `The requested resource ${req.path} was not found`);
    let reply: StubReply;
    const payload = Object.fromEntries(new URLSearchParams(req.body));
    const to = String(payload.To ?? '');
    const scripted: Scripted = !authed ? twilioError(401, 20003, 'Authenticate') : isSend ? nextScripted(o.script ?? {}, counts, to) : 'ok';
    let messageId: string | undefined;
    if (scripted !== 'ok') reply = scripted;
    else {
      const body = JSON.parse(checked.reply.body) as Record<string, unknown>;
      if (isSend) {
        messageId = `SM${hex(16)}`;
        Object.assign(body, { sid: messageId, to, body: payload.Body ?? null, status: 'queued' });
      }
      reply = { status: checked.reply.status, body };
    }
    if (isSend) sends.push({ to, status: reply.status, messageId, payload, at: req.at });
    else verifies.push(reply.status);
    return reply;
  });
  return { ...stub, violations, sends, verifies, setAuthToken: (t) => (token = t) };
}

// ------------------------------------------------------------------------------------------------ Meta

/** A Graph API error answer (https://developers.facebook.com/docs/graph-api/guides/error-handling). */
export function metaError(status: number, code: number, message: string, headers: Record<string, string> = {}): StubReply {
  return { status, headers, body: { error: { message, type: 'OAuthException', code, fbtrace_id: `A${hex(8)}` } } };
}

/** A WhatsApp Cloud API server for one phone number id; `prism` runs meta_business-messaging-api_v23.0.yaml. */
export async function startMetaStub(o: { prism: PrismServer; phoneNumberId: string; accessToken: string; apiVersion?: string; script?: Script }): Promise<Common> {
  const version = o.apiVersion ?? 'v23.0';
  const counts = new Map<string, number>();
  const violations: string[] = [];
  const sends: Common['sends'] = [];
  const verifies: number[] = [];
  const stub = await startHttpStub(async (req) => {
    // Meta documents `biz_opaque_callback_data` on the messages endpoint (a string of at most 512 characters,
    // echoed in status webhooks: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages), but
    // the published v23.0 spec omits it for message bodies: checked here, everything else by Prism.
    let forPrism = req;
    if (req.method === 'POST' && req.body.includes('"biz_opaque_callback_data"')) {
      const { biz_opaque_callback_data: opaque, ...rest } = JSON.parse(req.body) as Record<string, unknown>;
      if (typeof opaque !== 'string' || opaque.length > 512) violations.push(`POST ${req.path}: biz_opaque_callback_data must be a string of at most 512 characters`);
      forPrism = { ...req, body: JSON.stringify(rest) };
    }
    const checked = await checkWithPrism(o.prism, forPrism);
    violations.push(...checked.violations);
    const authed = req.headers.authorization === `Bearer ${o.accessToken}`;
    const isSend = req.method === 'POST' && req.path === `/${version}/${o.phoneNumberId}/messages`;
    const isVerify = req.method === 'GET' && req.path === `/${version}/${o.phoneNumberId}`;
    if (!isSend && !isVerify) return metaError(400, 100, `Unsupported ${req.method} request to ${req.path}`);
    const payload = isSend ? (JSON.parse(req.body) as Record<string, unknown>) : {};
    const to = String(payload.to ?? '');
    const scripted: Scripted = !authed ? metaError(401, 190, 'Invalid OAuth access token - Cannot parse access token') : isSend ? nextScripted(o.script ?? {}, counts, to) : 'ok';
    let reply: StubReply;
    let messageId: string | undefined;
    if (scripted !== 'ok') reply = scripted;
    else if (isSend) {
      messageId = `wamid.${Buffer.from(hex(12)).toString('base64url')}`;
      reply = { status: 200, body: { messaging_product: 'whatsapp', contacts: [{ input: to, wa_id: to.replace(/^\+/, '') }], messages: [{ id: messageId }] } };
    } else {
      reply = { status: 200, body: { id: o.phoneNumberId, display_phone_number: '+1 415-555-0100', verified_name: 'Acme Dental', quality_rating: 'GREEN' } };
    }
    if (isSend) sends.push({ to, status: reply.status, messageId, payload, at: req.at });
    else verifies.push(reply.status);
    return reply;
  });
  return { ...stub, violations, sends, verifies };
}

// ------------------------------------------------------------------------------------------------- SNS

const SNS_NS = 'http://sns.amazonaws.com/doc/2010-03-31/';

/** An SNS Query-protocol error answer (https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html). */
export function snsError(status: number, code: string, message: string, headers: Record<string, string> = {}): StubReply {
  const type = status >= 500 ? 'Receiver' : 'Sender';
  return {
    status,
    headers: { 'content-type': 'text/xml', ...headers },
    body: `<ErrorResponse xmlns="${SNS_NS}"><Error><Type>${type}</Type><Code>${code}</Code><Message>${xml(message)}</Message></Error><RequestId>${hex(8)}</RequestId></ErrorResponse>`,
  };
}

function xml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Checks an AWS Signature Version 4 `Authorization` header
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). Returns the SNS error code for
 * a bad credential, or undefined when the signature is right.
 */
function checkSigV4(req: RecordedRequest, accessKeyId: string, secret: string): 'InvalidClientTokenId' | 'SignatureDoesNotMatch' | 'MissingAuthenticationToken' | undefined {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(String(req.headers.authorization ?? ''));
  if (!m) return 'MissingAuthenticationToken';
  const [, akid, date, region, service, signedHeaders, signature] = m as unknown as string[];
  if (akid !== accessKeyId) return 'InvalidClientTokenId';
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const names = signedHeaders!.split(';');
  const canonicalHeaders = names.map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const payloadHash = String(req.headers['x-amz-content-sha256'] ?? createHash('sha256').update(req.body).digest('hex'));
  const canonical = [req.method, req.path, req.query.toString(), canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${secret}`).update(date!).digest();
  for (const part of [region!, service!, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(toSign).digest('hex') === signature ? undefined : 'SignatureDoesNotMatch';
}

export interface SnsStub extends Common {
  /** Form fields of Publish calls that broke the Publish input shape (PhoneNumber E.164, Message, attributes). */
  violations: string[];
}

/** An SNS server (Query protocol, API version 2010-03-31) for one access key. */
export async function startSnsStub(o: { accessKeyId: string; secretAccessKey: string; script?: Script }): Promise<SnsStub> {
  const counts = new Map<string, number>();
  const violations: string[] = [];
  const sends: Common['sends'] = [];
  const verifies: number[] = [];
  const stub = await startHttpStub((req) => {
    const form = Object.fromEntries(new URLSearchParams(req.body));
    if (req.method !== 'POST' || req.path !== '/' || !String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
      violations.push(`${req.method} ${req.path} (${String(req.headers['content-type'])}): not a Query-protocol POST /`);
    }
    if (form.Version !== '2010-03-31') violations.push(`Version=${form.Version}: expected 2010-03-31`);
    const bad = checkSigV4(req, o.accessKeyId, o.secretAccessKey);
    const authError = bad && snsError(403, bad, bad === 'InvalidClientTokenId' ? 'The security token included in the request is invalid.' : 'The request signature we calculated does not match the signature you provided.');
    if (form.Action === 'GetSMSAttributes') {
      const reply: StubReply = authError || {
        status: 200,
        headers: { 'content-type': 'text/xml' },
        body: `<GetSMSAttributesResponse xmlns="${SNS_NS}"><GetSMSAttributesResult><attributes><entry><key>DefaultSMSType</key><value>Transactional</value></entry><entry><key>MonthlySpendLimit</key><value>10</value></entry></attributes></GetSMSAttributesResult><ResponseMetadata><RequestId>${hex(8)}</RequestId></ResponseMetadata></GetSMSAttributesResponse>`,
      };
      verifies.push(reply.status);
      return reply;
    }
    if (form.Action !== 'Publish') {
      violations.push(`Action=${form.Action}: not Publish or GetSMSAttributes`);
      return snsError(400, 'InvalidAction', `The action ${form.Action} is not valid for this endpoint.`);
    }
    // Publish input (PublishInput$ in @aws-sdk/client-sns): Message required; PhoneNumber for SMS.
    const to = form.PhoneNumber ?? '';
    if (!/^\+[1-9]\d{6,14}$/.test(to)) violations.push(`PhoneNumber=${to}: not E.164`);
    if (!form.Message) violations.push('Message is missing');
    if (form.TopicArn || form.TargetArn) violations.push('TopicArn/TargetArn given with PhoneNumber');
    for (const k of Object.keys(form)) {
      if (!/^(Action|Version|PhoneNumber|Message|MessageAttributes\.entry\.\d+\.(Name|Value\.DataType|Value\.StringValue))$/.test(k)) violations.push(`unexpected field ${k}`);
    }
    const scripted: Scripted = authError || nextScripted(o.script ?? {}, counts, to);
    let reply: StubReply;
    let messageId: string | undefined;
    if (scripted !== 'ok') reply = scripted;
    else {
      messageId = `${hex(4)}-${hex(2)}-${hex(2)}-${hex(2)}-${hex(6)}`;
      reply = {
        status: 200,
        headers: { 'content-type': 'text/xml' },
        body: `<PublishResponse xmlns="${SNS_NS}"><PublishResult><MessageId>${messageId}</MessageId></PublishResult><ResponseMetadata><RequestId>${hex(8)}</RequestId></ResponseMetadata></PublishResponse>`,
      };
    }
    sends.push({ to, status: reply.status, messageId, payload: form, at: req.at });
    return reply;
  });
  return { ...stub, violations, sends, verifies };
}
