/**
 * Meta WhatsApp Cloud API webhooks.
 * - Subscription handshake (https://developers.facebook.com/docs/graph-api/webhooks/getting-started#verification-requests):
 *   `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`; answer the challenge when the token is the
 *   config's `webhookVerifyToken` secret.
 * - Signature (https://developers.facebook.com/docs/graph-api/webhooks/getting-started#event-notifications):
 *   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`, compared in constant
 *   time (node:crypto `timingSafeEqual`).
 * - Payload (https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components): `{object:
 *   "whatsapp_business_account", entry: [{id, changes: [{field: "messages", value: {metadata: {phone_number_id},
 *   statuses?: [{id, status, timestamp, recipient_id, biz_opaque_callback_data?, errors?}], messages?: [{id,
 *   from, timestamp, type, text?}]}}]}]}`. Error codes acted on
 *   (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes): 131050 (the user stopped
 *   marketing messages) → opt-out; 131026 (message undeliverable) → soft bounce.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readCorrelation } from '../tracking.js';
import { asArray as arr, asObject as obj, asText as str, fromUnixSeconds, keywordOf, normaliseEventAddress, parseJsonBody, type EventAction, type EventType, type JsonObject as Obj, type ProviderEvent } from './types.js';

/** The signature header (lower-case). */
export const META_SIGNATURE_HEADER = 'x-hub-signature-256';

/**
 * Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `appSecret`. Constant-time compare.
 */
export function metaSignatureMatches(appSecret: string, body: Buffer, header: string | undefined): boolean {
  const m = /^sha256=([0-9a-fA-F]{64})$/.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!.toLowerCase(), 'hex');
  const want = createHmac('sha256', appSecret).update(body).digest();
  return given.length === want.length && timingSafeEqual(given, want);
}

/** The events of one `changes[]` entry, with the phone number id it is for. */
export interface MetaChange {
  phoneNumberId: string | null;
  events: ProviderEvent[];
}

const STATUS: Record<string, EventType> = { sent: 'accepted', delivered: 'delivered', read: 'read', failed: 'failed' };

function errorAction(code: unknown): EventAction | undefined {
  if (code === 131050 || code === '131050') return { kind: 'suppress', reason: 'opt-out: the user stopped marketing messages (Meta error 131050)' };
  if (code === 131026 || code === '131026') return { kind: 'soft-bounce', reason: 'message undeliverable (Meta error 131026)' };
  return undefined;
}

/** Parses a JSON body. @throws WebhookRejection 400 when it is not a JSON object. */
export function parseMetaBody(body: Buffer | string): Obj {
  return parseJsonBody(body, 'object') as Obj;
}

/** The events of a webhook body, per change (each names its business phone number id). */
export function parseMetaChanges(body: Obj): MetaChange[] {
  const out: MetaChange[] = [];
  for (const entry of arr(body.entry)) {
    for (const change of arr(obj(entry).changes)) {
      const value = obj(obj(change).value);
      const phoneNumberId = str(obj(value.metadata).phone_number_id) ?? null;
      const events: ProviderEvent[] = [];
      for (const s of arr(value.statuses).map(obj)) {
        const id = str(s.id);
        const status = str(s.status);
        if (!id || !status) continue;
        const err = obj(arr(s.errors)[0]);
        const opaque = new URLSearchParams(str(s.biz_opaque_callback_data) ?? '');
        const errText = str(err.code) ? `Meta error ${str(err.code)}: ${[str(err.title), str(obj(err.error_data).details)].filter(Boolean).join(': ')}` : null;
        events.push({
          key: `meta:${id}:${status}:${str(s.timestamp) ?? ''}`,
          type: STATUS[status] ?? 'other',
          providerType: status,
          occurredAt: fromUnixSeconds(s.timestamp),
          recipient: normaliseEventAddress(s.recipient_id),
          messageId: id,
          correlation: readCorrelation((k) => opaque.get(k) ?? undefined),
          detail: errText,
          action: errorAction(err.code),
          payload: s,
        });
      }
      for (const m of arr(value.messages).map(obj)) {
        const id = str(m.id);
        if (!id) continue;
        const text = str(obj(m.text).body) ?? str(obj(m.button).text);
        const kw = keywordOf(text);
        events.push({
          key: `meta:${id}`,
          type: kw === 'opt-out' ? 'opted-out' : kw === 'opt-in' ? 'opted-in' : 'inbound',
          providerType: `message/${str(m.type) ?? 'unknown'}`,
          occurredAt: fromUnixSeconds(m.timestamp),
          recipient: normaliseEventAddress(m.from),
          messageId: id,
          correlation: {},
          detail: text ? text.slice(0, 160) : null,
          action: kw === 'opt-out' ? { kind: 'suppress', reason: `opt-out: replied ${text!.trim().toUpperCase()}` } : kw === 'opt-in' ? { kind: 'opt-in', reason: `opt-in: replied ${text!.trim().toUpperCase()}` } : undefined,
          payload: m,
        });
      }
      out.push({ phoneNumberId, events });
    }
  }
  return out;
}
