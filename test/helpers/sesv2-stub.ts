// A local Amazon SES v2 endpoint for tests, speaking the REST-JSON wire format the SDK uses
// (@aws-sdk/client-sesv2 dist-cjs schemas: SendEmail = POST /v2/email/outbound-emails, GetAccount =
// GET /v2/email/account; errors carry the code in `x-amzn-ErrorType` and `{"message"}` in the body,
// https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html). Every request must carry a valid
// SigV4 signature: the stub re-signs it with the known secret (@smithy/signature-v4, the SDK's own signer)
// and compares, so a wrong secret or key id is refused as AWS would.
import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { startHttpStub, type HttpStub, type RecordedRequest, type StubReply } from './http-stub.js';

export interface SesCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** A parsed SigV4 `Authorization` header. */
export interface SigV4Header {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/;

/** Parses a SigV4 Authorization header; undefined if it is not one. */
export function parseSigV4(value: string | undefined): SigV4Header | undefined {
  const m = AUTH.exec(value ?? '');
  if (!m) return undefined;
  return { accessKeyId: m[1]!, date: m[2]!, region: m[3]!, service: m[4]!, signedHeaders: m[5]!.split(';'), signature: m[6]! };
}

function bytes(d: string | ArrayBuffer | ArrayBufferView): string | Buffer {
  if (typeof d === 'string') return d;
  return d instanceof ArrayBuffer ? Buffer.from(d) : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

/** node:crypto behind the `Checksum` interface the smithy signer expects. */
class NodeSha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
  reset(): void {}
}

/** Recomputes the request's signature with `creds`; true if it matches the one sent. */
export async function signatureMatches(req: RecordedRequest, port: number, creds: SesCredentials): Promise<boolean> {
  const auth = parseSigV4(req.headers.authorization);
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!auth || !m) return false;
  const signingDate = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  const headers: Record<string, string> = {};
  for (const h of auth.signedHeaders) headers[h] = String(req.headers[h] ?? '');
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  const signer = new SignatureV4({ credentials: { accessKeyId: creds.accessKeyId, secretAccessKey: creds.secretAccessKey }, region: auth.region, service: 'ses', sha256: NodeSha256 });
  const signed = await signer.sign(
    { method: req.method, protocol: 'http:', hostname: url.hostname, port, path: url.pathname, query: Object.fromEntries(url.searchParams), headers, body: req.body },
    { signingDate },
  );
  const again = parseSigV4(String(signed.headers.authorization ?? signed.headers.Authorization ?? ''));
  return again?.signature === auth.signature;
}

/** An SES error reply in the REST-JSON shape. */
export function sesError(status: number, code: string, message: string): StubReply {
  return { status, headers: { 'x-amzn-ErrorType': `${code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/`, 'x-amzn-RequestId': 'test-request' }, body: { message } };
}

export interface SesStub extends HttpStub {
  /** Requests whose signature checked out, in order. */
  signed: RecordedRequest[];
}

/**
 * Starts the stub. Requests with a missing or wrong signature get 403 (`UnrecognizedClientException` for an unknown
 * key id, `SignatureDoesNotMatch` for a wrong secret); signed ones go to `handler` (default: SendEmail answers a
 * fresh MessageId, GetAccount a sending-enabled account; a handler returning undefined falls through to it).
 */
export async function startSesStub(creds: SesCredentials, handler?: (req: RecordedRequest) => StubReply | undefined): Promise<SesStub> {
  let n = 0;
  const fallbackHandler = (req: RecordedRequest): StubReply => {
    if (req.method === 'POST' && req.url === '/v2/email/outbound-emails') {
      n += 1;
      return { status: 200, body: { MessageId: `0100018f-test-${String(n).padStart(4, '0')}-000000` } };
    }
    if (req.method === 'GET' && req.url === '/v2/email/account') {
      return {
        status: 200,
        body: {
          SendingEnabled: true,
          ProductionAccessEnabled: false,
          EnforcementStatus: 'HEALTHY',
          SendQuota: { Max24HourSend: 200, MaxSendRate: 1, SentLast24Hours: 3 },
          DedicatedIpAutoWarmupEnabled: false,
        },
      };
    }
    return sesError(404, 'NotFoundException', `no route for ${req.method} ${req.url}`);
  };
  const signed: RecordedRequest[] = [];
  const stub = await startHttpStub(async (req) => {
    const auth = parseSigV4(req.headers.authorization);
    if (!auth) return sesError(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    if (auth.accessKeyId !== creds.accessKeyId) return sesError(403, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (auth.region !== creds.region || auth.service !== 'ses') return sesError(403, 'SignatureDoesNotMatch', `Credential should be scoped to a valid region and service (got ${auth.region}/${auth.service})`);
    if (!(await signatureMatches(req, Number(new URL(stub.url).port), creds))) {
      return sesError(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
    }
    signed.push(req);
    return handler?.(req) ?? fallbackHandler(req);
  });
  return Object.assign(stub, { signed });
}
