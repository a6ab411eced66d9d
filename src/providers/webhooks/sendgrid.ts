/**
 * SendGrid Event Webhook: signature check and parsing.
 * - Signature (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features):
 *   ECDSA P-256 / SHA-256 over the `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw body,
 *   base64 DER in `X-Twilio-Email-Event-Webhook-Signature`; the public key (base64 SPKI) is the config's
 *   `eventWebhookPublicKey` setting. Checked with SendGrid's own `@sendgrid/eventwebhook` (imported lazily).
 * - Payload (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event): a JSON array of events
 *   `{email, timestamp, event, sg_event_id, sg_message_id, reason?, status?, type?, …custom_args}`; `sg_message_id`
 *   is the send's `X-Message-Id` followed by `.filter…`; custom args come back as top-level fields.
 */
import { createHash } from 'node:crypto';
import type { EventWebhook as EventWebhookType } from '@sendgrid/eventwebhook';
import { readCorrelation } from '../tracking.js';
import { WebhookRejection, asText as str, fromUnixSeconds, normaliseEventAddress, parseJsonBody, type EventAction, type EventType, type ProviderEvent } from './types.js';

/** Header names (lower-case, as node:http gives them). */
export const SENDGRID_SIGNATURE_HEADER = 'x-twilio-email-event-webhook-signature';
export const SENDGRID_TIMESTAMP_HEADER = 'x-twilio-email-event-webhook-timestamp';

type PublicKey = ReturnType<EventWebhookType['convertPublicKeyToECDSA']>;
let webhook: EventWebhookType | undefined;
const keys = new Map<string, PublicKey>();

/** Imports @sendgrid/eventwebhook now (a long-running receiver does it at start, so no request waits for it). */
export async function loadSendGridVerifier(): Promise<void> {
  if (webhook) return;
  const { EventWebhook } = (await import('@sendgrid/eventwebhook')).default as unknown as { EventWebhook: new () => EventWebhookType };
  webhook = new EventWebhook();
}

/**
 * Checks a signed Event Webhook request. `nowMs` is the current time; a timestamp further than `toleranceMs`
 * from it (either way) is refused, so a captured request cannot be replayed later.
 * @throws WebhookRejection 401 (signature or timestamp header missing), 403 (stale timestamp, wrong signature,
 *   unusable public key).
 */
export async function verifySendGridSignature(o: { publicKey: string; body: Buffer; signature?: string; timestamp?: string; nowMs: number; toleranceMs: number }): Promise<void> {
  if (!o.signature || !o.timestamp) throw new WebhookRejection(401, 'no X-Twilio-Email-Event-Webhook-Signature/-Timestamp header');
  if (!/^\d{1,12}$/.test(o.timestamp)) throw new WebhookRejection(403, 'malformed signature timestamp');
  if (Math.abs(o.nowMs - Number(o.timestamp) * 1000) > o.toleranceMs) throw new WebhookRejection(403, `signature timestamp ${o.timestamp} is outside the tolerance of ${o.toleranceMs / 1000} s`);
  await loadSendGridVerifier();
  if (!webhook) throw new WebhookRejection(403, '@sendgrid/eventwebhook did not load');
  let key = keys.get(o.publicKey);
  if (!key) {
    try {
      key = webhook.convertPublicKeyToECDSA(o.publicKey);
    } catch {
      throw new WebhookRejection(403, 'the config\'s eventWebhookPublicKey is not a usable public key');
    }
    keys.set(o.publicKey, key);
  }
  let ok = false;
  try {
    ok = webhook.verifySignature(key, o.body, o.signature, o.timestamp);
  } catch {
    ok = false;
  }
  if (!ok) throw new WebhookRejection(403, 'bad SendGrid signature');
}

const TYPES: Record<string, EventType> = {
  processed: 'accepted',
  deferred: 'deferred',
  delivered: 'delivered',
  bounce: 'bounced',
  dropped: 'dropped',
  open: 'opened',
  click: 'clicked',
  spamreport: 'complained',
  unsubscribe: 'unsubscribed',
  group_unsubscribe: 'unsubscribed',
  group_resubscribe: 'resubscribed',
};

const line = (parts: Array<string | undefined>): string | null => {
  const s = parts.filter(Boolean).join(' ').replace(/\s+/g, ' ').trim();
  return s ? s.slice(0, 500) : null;
};

/**
 * The suppression action of an event: a `bounce` of type `bounce` is hard (suppress), of type `blocked` soft
 * (counted); `dropped` for a bounced, invalid, unsubscribed or spam-reporting address suppresses; `spamreport`
 * and (group) `unsubscribe` suppress.
 */
function actionOf(e: Record<string, unknown>): EventAction | undefined {
  const reason = str(e.reason) ?? '';
  switch (e.event) {
    case 'bounce':
      return e.type === 'blocked'
        ? { kind: 'soft-bounce', reason: line(['blocked', str(e.status), reason]) ?? 'blocked' }
        : { kind: 'suppress', reason: line(['hard bounce:', str(e.status), reason]) ?? 'hard bounce' };
    case 'dropped': {
      const r = reason.toLowerCase();
      if (r.includes('bounced')) return { kind: 'suppress', reason: `hard bounce: SendGrid dropped the message (${reason})` };
      if (r.includes('invalid')) return { kind: 'suppress', reason: `invalid address: SendGrid dropped the message (${reason})` };
      if (r.includes('unsubscribed')) return { kind: 'suppress', reason: `unsubscribed: SendGrid dropped the message (${reason})` };
      if (r.includes('spam reporting')) return { kind: 'suppress', reason: `complaint: SendGrid dropped the message (${reason})` };
      return undefined;
    }
    case 'spamreport':
      return { kind: 'suppress', reason: 'complaint: marked as spam' };
    case 'unsubscribe':
    case 'group_unsubscribe':
      return { kind: 'suppress', reason: 'unsubscribed (SendGrid)' };
    default:
      return undefined;
  }
}

/**
 * Parses an Event Webhook body (a JSON array) into events; entries that are not objects are skipped.
 * @throws WebhookRejection 400 when the body is not a JSON array.
 */
export function parseSendGridEvents(body: Buffer | string): ProviderEvent[] {
  const out: ProviderEvent[] = [];
  for (const item of parseJsonBody(body, 'array') as unknown[]) {
    if (!item || typeof item !== 'object' || Array.isArray(item)) continue;
    const e = item as Record<string, unknown>;
    const name = str(e.event) ?? 'unknown';
    const id = str(e.sg_event_id) ?? createHash('sha256').update(JSON.stringify(e)).digest('base64url');
    const sgMessageId = str(e.sg_message_id);
    out.push({
      key: `sendgrid:${id}`,
      type: TYPES[name] ?? 'other',
      providerType: e.event === 'bounce' && str(e.type) ? `bounce/${str(e.type)}` : name,
      occurredAt: fromUnixSeconds(e.timestamp),
      recipient: normaliseEventAddress(e.email),
      messageId: sgMessageId ? sgMessageId.split('.')[0]! : null,
      correlation: readCorrelation((k) => e[k]),
      detail: line([str(e.status), str(e.reason) ?? str(e.response), str(e.bounce_classification) && `(${str(e.bounce_classification)})`, str(e.url)]),
      action: actionOf(e),
      payload: e,
    });
  }
  return out;
}
