/**
 * Twilio webhooks (SMS and WhatsApp): status callbacks of sent messages and inbound messages.
 * - Signature (https://www.twilio.com/docs/usage/webhooks/webhooks-security): `X-Twilio-Signature` = base64
 *   HMAC-SHA1 with the account's auth token over the full URL Twilio requested plus the POST parameters sorted
 *   by name (key followed by value); for JSON bodies the URL carries `bodySHA256`. Checked with the twilio SDK's
 *   own `validateRequest` / `validateRequestWithBody` (the SDK is imported lazily, on the first request).
 * - Status callbacks (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status): form fields
 *   `MessageSid`, `MessageStatus` (queued, sending, sent, delivered, undelivered, failed, read, canceled…),
 *   `ErrorCode`, `To`, `From`, `AccountSid`; switchboard's correlation fields travel in the callback URL's query.
 * - Inbound messages (https://www.twilio.com/docs/messaging/guides/webhook-request): `MessageSid`, `From`,
 *   `To`, `Body`, and `OptOutType` (STOP/START/HELP) where Advanced Opt-Out is on. Opt-out keywords STOP,
 *   STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT; opt-in START, UNSTOP, YES
 *   (https://help.twilio.com/articles/223134027).
 * - Error codes acted on (https://www.twilio.com/docs/api/errors): 21610 (the recipient replied STOP) →
 *   opt-out; 30005 (unknown destination handset) and 30006 (landline or unreachable carrier) → hard bounce;
 *   30003 (unreachable handset) and 30004 (message blocked) → soft bounce.
 */
import { readCorrelation } from '../tracking.js';
import { WebhookRejection, keywordOf, normaliseEventAddress, type EventAction, type EventType, type ProviderEvent } from './types.js';

/** The signature header (lower-case). */
export const TWILIO_SIGNATURE_HEADER = 'x-twilio-signature';

/** Form parameters as posted; a name given more than once keeps every value, in order. */
export type TwilioParams = Record<string, string | string[]>;

/** Parses an `application/x-www-form-urlencoded` body. */
export function parseTwilioForm(body: Buffer | string): TwilioParams {
  const out: TwilioParams = {};
  for (const [k, v] of new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8'))) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

const one = (p: TwilioParams, name: string): string | undefined => {
  const v = p[name];
  return Array.isArray(v) ? v[0] : v;
};

type TwilioValidators = { validateRequest(token: string, sig: string, url: string, params: object): boolean; validateRequestWithBody(token: string, sig: string, url: string, body: string): boolean };
let sdk: TwilioValidators | undefined;

/** Imports the twilio SDK now (a long-running receiver does it at start, so no callback waits for it). */
export async function loadTwilioValidators(): Promise<void> {
  sdk ??= (await import('twilio')).default;
}

/**
 * Checks `X-Twilio-Signature` for a request to `url` (the public URL plus the path and query Twilio used).
 * A URL with `bodySHA256` in its query is a JSON-body request: the body is checked against that hash.
 * @throws WebhookRejection 401 (no signature), 403 (wrong signature).
 */
export async function verifyTwilioSignature(o: { authToken: string; signature?: string; url: string; body: Buffer; params: TwilioParams }): Promise<void> {
  if (!o.signature) throw new WebhookRejection(401, 'no X-Twilio-Signature header');
  await loadTwilioValidators();
  const ok = new URL(o.url).searchParams.has('bodySHA256')
    ? sdk!.validateRequestWithBody(o.authToken, o.signature, o.url, o.body.toString('utf8'))
    : sdk!.validateRequest(o.authToken, o.signature, o.url, o.params);
  if (!ok) throw new WebhookRejection(403, 'bad Twilio signature');
}

const STATUS: Record<string, EventType> = {
  accepted: 'accepted',
  scheduled: 'accepted',
  queued: 'accepted',
  sending: 'accepted',
  sent: 'accepted',
  delivered: 'delivered',
  undelivered: 'undelivered',
  failed: 'failed',
  canceled: 'failed',
  read: 'read',
};

function errorAction(code: string | undefined): EventAction | undefined {
  switch (code) {
    case '21610':
      return { kind: 'suppress', reason: 'opt-out: the recipient replied STOP (Twilio error 21610)' };
    case '30005':
      return { kind: 'suppress', reason: 'hard bounce: unknown destination handset (Twilio error 30005)' };
    case '30006':
      return { kind: 'suppress', reason: 'hard bounce: landline or unreachable carrier (Twilio error 30006)' };
    case '30003':
      return { kind: 'soft-bounce', reason: 'unreachable destination handset (Twilio error 30003)' };
    case '30004':
      return { kind: 'soft-bounce', reason: 'message blocked (Twilio error 30004)' };
    default:
      return undefined;
  }
}

/** Whether the parameters are an inbound message (not a status callback of a sent one). */
export function isTwilioInbound(p: TwilioParams): boolean {
  const status = one(p, 'MessageStatus') ?? one(p, 'SmsStatus');
  return status === 'received' || status === 'receiving' || (status === undefined && one(p, 'Body') !== undefined);
}

/**
 * The switchboard-side number of a request: `From` of a status callback (the number we sent from), `To` of an
 * inbound message; without the `whatsapp:` prefix. Used to find the config of the shared `/hooks/twilio` route.
 */
export function twilioOwnNumber(p: TwilioParams): string | undefined {
  const n = isTwilioInbound(p) ? one(p, 'To') : one(p, 'From');
  return n?.replace(/^whatsapp:/i, '');
}

/**
 * Parses one Twilio webhook request into at most one event; `query` is the request URL's query (status callbacks
 * carry the correlation fields there). @throws WebhookRejection 400 when `MessageSid` is missing.
 */
export function parseTwilioEvent(p: TwilioParams, query: URLSearchParams): ProviderEvent[] {
  const sid = one(p, 'MessageSid') ?? one(p, 'SmsSid');
  if (!sid) throw new WebhookRejection(400, 'no MessageSid in the request');
  const payload = Object.fromEntries(Object.entries(p));
  if (isTwilioInbound(p)) {
    const optOut = (one(p, 'OptOutType') ?? '').toUpperCase();
    const kw = optOut === 'STOP' ? 'opt-out' : optOut === 'START' ? 'opt-in' : keywordOf(one(p, 'Body'));
    const body = (one(p, 'Body') ?? '').trim();
    return [
      {
        key: `twilio:${sid}`,
        type: kw === 'opt-out' ? 'opted-out' : kw === 'opt-in' ? 'opted-in' : 'inbound',
        providerType: optOut ? `received/${optOut}` : 'received',
        occurredAt: null,
        recipient: normaliseEventAddress(one(p, 'From')),
        messageId: sid,
        correlation: {},
        detail: body ? body.slice(0, 160) : null,
        action: kw === 'opt-out' ? { kind: 'suppress', reason: `opt-out: replied ${body.toUpperCase() || 'STOP'}` } : kw === 'opt-in' ? { kind: 'opt-in', reason: `opt-in: replied ${body.toUpperCase() || 'START'}` } : undefined,
        payload,
      },
    ];
  }
  const status = one(p, 'MessageStatus') ?? one(p, 'SmsStatus') ?? 'unknown';
  const code = one(p, 'ErrorCode');
  const message = one(p, 'ErrorMessage');
  const both = new URLSearchParams(query);
  for (const [k, v] of Object.entries(p)) if (!both.has(k)) both.set(k, Array.isArray(v) ? v[0]! : v);
  return [
    {
      key: `twilio:${sid}:${status}`,
      type: STATUS[status] ?? 'other',
      providerType: status,
      occurredAt: null,
      recipient: normaliseEventAddress(one(p, 'To')),
      messageId: sid,
      correlation: readCorrelation((k) => both.get(k) ?? undefined),
      detail: code ? `Twilio error ${code}${message ? `: ${message}` : ''}` : null,
      action: errorAction(code),
      payload,
    },
  ];
}
