/**
 * Amazon SNS HTTP(S) notifications carrying Amazon SES events (bounces, complaints, deliveries…).
 *
 * Signature, as AWS documents it (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html,
 * https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message-verify-message-signature.html), with
 * node:crypto — no maintained validator package keeps certificates on disk (`sns-payload-validator` 2.1 caches
 * in memory only, `sns-validator` 0.3 predates SignatureVersion 2):
 * - string to sign: `Name\nValue\n` for Message, MessageId, Subject (only if present), Timestamp, TopicArn, Type
 *   (notifications); Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type (subscription and
 *   unsubscribe confirmations);
 * - `SignatureVersion` 1: RSA with SHA1, 2: RSA with SHA256; `Signature` base64;
 * - the certificate only from `SigningCertURL` of the form `https://sns.<region>.amazonaws.com[.cn]/<file>.pem`,
 *   fetched over HTTPS and kept in a cache folder: one PEM file per URL, named by {@link snsCertFileName}
 *   (operators and tests may put a certificate there beforehand); it must be within its validity dates.
 * Only topics the config lists (`snsTopicArn`) are accepted: a valid signature proves the message came from SNS,
 * not from our topic.
 *
 * SES event contents (https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html and
 * https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html): `Message` is a JSON
 * string `{notificationType | eventType, mail: {messageId, destination, tags?, headers?}, bounce?: {bounceType:
 * Permanent | Transient | Undetermined, bouncedRecipients}, complaint?: {complainedRecipients,
 * complaintFeedbackType?}, delivery?: {recipients}, …}`; one notification may name several recipients (one event each).
 */
import { createVerify, X509Certificate, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { correlationFromBatchHeader, readCorrelation, type Correlation } from '../tracking.js';
import { WebhookRejection, asArray as arr, asObject as obj, normaliseEventAddress, parseJsonBody, type EventAction, type EventType, type JsonObject as Obj, type ProviderEvent } from './types.js';

/** The certificate URLs accepted: https, an SNS regional host on amazonaws.com or amazonaws.com.cn, one path segment ending .pem. */
export const SNS_CERT_URL = /^https:\/\/sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?\/[A-Za-z0-9._-]+\.pem$/;

/** An SNS message (the JSON body of the POST). */
export type SnsMessage = Record<string, unknown>;

/**
 * The cache file name of a certificate URL: the URL without `https://`, `/` replaced by `_`, e.g.
 * `sns.us-east-1.amazonaws.com_SimpleNotificationService-0123456789abcdef.pem`.
 */
export function snsCertFileName(url: string): string {
  return url.replace(/^https:\/\//, '').replace(/\//g, '_');
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Parses an SNS body. @throws WebhookRejection 400 when it is not a JSON object with a Type. */
export function parseSnsBody(body: Buffer | string): SnsMessage {
  const parsed = parseJsonBody(body, 'object') as SnsMessage;
  if (typeof parsed.Type !== 'string') throw new WebhookRejection(400, 'body is not an SNS message (no Type)');
  return parsed;
}

/** The string SNS signs for a message (see the module docs). @throws WebhookRejection 400 for a field missing. */
export function snsStringToSign(m: SnsMessage): string {
  const type = str(m.Type);
  const fields =
    type === 'Notification'
      ? ['Message', 'MessageId', ...(m.Subject !== undefined && m.Subject !== null ? ['Subject'] : []), 'Timestamp', 'TopicArn', 'Type']
      : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
  return fields
    .map((f) => {
      const v = m[f];
      if (typeof v !== 'string') throw new WebhookRejection(400, `SNS message has no ${f}`);
      return `${f}\n${v}\n`;
    })
    .join('');
}

/** Fetches a certificate over HTTPS (10 s timeout). */
async function fetchCert(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: 'error' });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.text();
}

/**
 * The certificate of `url`: from `cacheDir` when a file for it is there, else fetched and written there
 * (mode 0600, via a temporary file and a rename). @throws WebhookRejection 403 when it cannot be had.
 */
export async function snsCertificate(url: string, cacheDir: string, fetcher: (url: string) => Promise<string> = fetchCert): Promise<X509Certificate> {
  const file = path.join(cacheDir, snsCertFileName(url));
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch {
    try {
      pem = await fetcher(url);
    } catch (err) {
      throw new WebhookRejection(403, `cannot fetch the SNS signing certificate ${url}: ${(err as Error).message}`);
    }
    try {
      fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, pem, { mode: 0o600 });
      fs.renameSync(tmp, file);
    } catch {
      // An unwritable cache costs a fetch per certificate next time, nothing else.
    }
  }
  try {
    return new X509Certificate(pem);
  } catch {
    throw new WebhookRejection(403, `the SNS signing certificate for ${url} is not a PEM certificate`);
  }
}

/**
 * Verifies an SNS message's signature (see the module docs). `now` bounds the certificate's validity.
 * @throws WebhookRejection 403 (bad version, certificate URL, certificate or signature), 400 (fields missing).
 */
export async function verifySnsMessage(m: SnsMessage, o: { cacheDir: string; now: Date; fetcher?: (url: string) => Promise<string> }): Promise<void> {
  const version = str(m.SignatureVersion);
  if (version !== '1' && version !== '2') throw new WebhookRejection(403, `unsupported SNS SignatureVersion ${String(m.SignatureVersion)}`);
  const url = str(m.SigningCertURL) ?? '';
  if (!SNS_CERT_URL.test(url)) throw new WebhookRejection(403, `SigningCertURL ${url || '(none)'} is not an https://sns.<region>.amazonaws.com/…pem URL`);
  const signature = str(m.Signature);
  if (!signature) throw new WebhookRejection(401, 'SNS message has no Signature');
  const toSign = snsStringToSign(m);
  const cert = await snsCertificate(url, o.cacheDir, o.fetcher);
  if (Date.parse(cert.validFrom) > o.now.getTime() || Date.parse(cert.validTo) < o.now.getTime()) {
    throw new WebhookRejection(403, `the SNS signing certificate ${url} is not valid now (${cert.validFrom} – ${cert.validTo})`);
  }
  const verifier = createVerify(version === '1' ? 'RSA-SHA1' : 'RSA-SHA256');
  verifier.update(toSign, 'utf8');
  if (!verifier.verify(cert.publicKey, signature, 'base64')) throw new WebhookRejection(403, 'bad SNS signature');
}

/**
 * Confirms a subscription by requesting its `SubscribeURL` (https://docs.aws.amazon.com/sns/latest/dg/SendMessageToHttp.confirm.html).
 * With `endpoint` (the config's `snsEndpoint`), the request goes to that base URL with the same path and query
 * (a VPC endpoint, or a test server). @throws WebhookRejection 403 for a SubscribeURL not on an SNS host, 502
 * when SNS does not confirm.
 */
export async function confirmSnsSubscription(m: SnsMessage, endpoint?: string): Promise<void> {
  const raw = str(m.SubscribeURL) ?? '';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookRejection(400, 'SubscribeURL is not a URL');
  }
  if (url.protocol !== 'https:' || !/^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/.test(url.hostname)) throw new WebhookRejection(403, `SubscribeURL ${url.origin} is not an SNS host`);
  const target = endpoint ? `${endpoint.replace(/\/+$/, '')}${url.pathname}${url.search}` : url.toString();
  let res: Response;
  try {
    res = await fetch(target, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new WebhookRejection(502, `confirming the subscription failed: ${(err as Error).message}`);
  }
  await res.text();
  if (!res.ok) throw new WebhookRejection(502, `confirming the subscription failed: SNS answered HTTP ${res.status}`);
}


/** Correlation of an SES event: `mail.tags` (event publishing) or the `X-Switchboard-Batch` header in `mail.headers`. */
function sesCorrelation(mail: Obj): Correlation {
  const tags = obj(mail.tags);
  const fromTags = readCorrelation((k) => tags[k]);
  if (fromTags.batchId !== undefined) return fromTags;
  const header = arr(mail.headers)
    .map(obj)
    .find((h) => typeof h.name === 'string' && h.name.toLowerCase() === 'x-switchboard-batch');
  return { ...fromTags, ...correlationFromBatchHeader(str(header?.value)) };
}

/**
 * Parses the SES event inside an SNS notification (or a bare SES event, for `events import`) into one event per
 * recipient. `keyBase` is the identity prefix: `sns:<MessageId>` for notifications; bare events use the SES
 * message id, type and timestamp. The topic-validation notice SES sends once yields no events.
 */
export function parseSesEvent(ses: Obj, keyBase: string | null, fallbackTime: Date | null): ProviderEvent[] {
  const type = str(ses.eventType) ?? str(ses.notificationType);
  if (!type) return [];
  const mail = obj(ses.mail);
  const messageId = str(mail.messageId) ?? null;
  const correlation = sesCorrelation(mail);
  const destination = arr(mail.destination).map((d) => str(d)).filter((d): d is string => Boolean(d));
  const detailObj = obj(ses[type === 'Rendering Failure' ? 'failure' : type.charAt(0).toLowerCase() + type.slice(1)]);
  const when = (v: unknown) => {
    const t = typeof v === 'string' ? Date.parse(v) : NaN;
    return Number.isFinite(t) ? new Date(t) : fallbackTime;
  };
  let eventType: EventType = 'other';
  let recipients: Array<{ address: string; detail: string | null }> = destination.map((address) => ({ address, detail: null }));
  let action: EventAction | undefined;
  let providerType = type;
  switch (type) {
    case 'Bounce': {
      const bounceType = str(detailObj.bounceType) ?? 'Undetermined';
      providerType = `Bounce/${bounceType}`;
      eventType = 'bounced';
      recipients = arr(detailObj.bouncedRecipients).map(obj).map((r) => ({ address: str(r.emailAddress) ?? '', detail: str(r.diagnosticCode) ?? str(r.status) ?? null }));
      const what = `${bounceType}/${str(detailObj.bounceSubType) ?? 'General'}`;
      action = bounceType === 'Permanent' ? { kind: 'suppress', reason: `hard bounce: ${what}` } : { kind: 'soft-bounce', reason: `${what} bounce` };
      break;
    }
    case 'Complaint': {
      eventType = 'complained';
      recipients = arr(detailObj.complainedRecipients).map(obj).map((r) => ({ address: str(r.emailAddress) ?? '', detail: str(detailObj.complaintFeedbackType) ?? null }));
      const feedback = str(detailObj.complaintFeedbackType);
      // RFC 5965 "not-spam" feedback is a recipient saying the message is wanted: no suppression.
      if (feedback !== 'not-spam') action = { kind: 'suppress', reason: `complaint${feedback ? `: ${feedback}` : ''}` };
      break;
    }
    case 'Delivery':
      eventType = 'delivered';
      recipients = arr(detailObj.recipients).map((r) => ({ address: str(r) ?? '', detail: str(detailObj.smtpResponse) ?? null }));
      break;
    case 'DeliveryDelay':
      eventType = 'deferred';
      recipients = arr(detailObj.delayedRecipients).map(obj).map((r) => ({ address: str(r.emailAddress) ?? '', detail: str(r.diagnosticCode) ?? str(detailObj.delayType) ?? null }));
      break;
    case 'Send':
      eventType = 'accepted';
      break;
    case 'Reject':
      eventType = 'dropped';
      recipients = recipients.map((r) => ({ ...r, detail: str(detailObj.reason) ?? null }));
      break;
    case 'Open':
      eventType = 'opened';
      break;
    case 'Click':
      eventType = 'clicked';
      recipients = recipients.map((r) => ({ ...r, detail: str(detailObj.link) ?? null }));
      break;
    case 'Rendering Failure':
      eventType = 'failed';
      recipients = recipients.map((r) => ({ ...r, detail: str(detailObj.errorMessage) ?? null }));
      break;
    default:
      break;
  }
  const occurredAt = when(detailObj.timestamp ?? mail.timestamp);
  return recipients
    .filter((r) => r.address)
    .map((r) => {
      const recipient = normaliseEventAddress(r.address);
      const key = keyBase ? `${keyBase}:${recipient}` : `ses:${messageId}:${providerType}:${recipient}:${occurredAt?.toISOString() ?? ''}`;
      return { key, type: eventType, providerType, occurredAt, recipient, messageId, correlation, detail: r.detail ? r.detail.slice(0, 500) : null, action, payload: ses };
    });
}

/**
 * The events of an SNS `Notification` whose `Message` is an SES event. @throws WebhookRejection 400 when the
 * message is neither JSON nor SES's topic-validation notice.
 */
export function parseSnsNotification(m: SnsMessage): ProviderEvent[] {
  const text = str(m.Message) ?? '';
  let ses: unknown;
  try {
    ses = JSON.parse(text);
  } catch {
    if (/^Successfully validated SNS topic/i.test(text)) return [];
    throw new WebhookRejection(400, 'SNS Message is not an SES event (not JSON)');
  }
  const ts = typeof m.Timestamp === 'string' ? new Date(m.Timestamp) : null;
  return parseSesEvent(obj(ses), `sns:${str(m.MessageId) ?? createHash('sha256').update(text).digest('hex')}`, ts && !Number.isNaN(ts.getTime()) ? ts : null);
}
