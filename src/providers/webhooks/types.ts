/**
 * What the webhook parsers of each provider produce: provider events in one shape, which core code stores
 * and applies (`src/core/events.ts`) without knowing any provider. Provider knowledge — which event means a
 * hard bounce, which error code an opt-out — lives in the parsers, expressed as {@link EventAction}s.
 */
import type { Correlation } from '../tracking.js';

/**
 * Event types, in switchboard's words. Delivery: `accepted` (the provider took it: SendGrid processed, Twilio
 * queued/sent, Meta sent, SES Send), `deferred`, `delivered`, `bounced`, `dropped` (refused before sending),
 * `undelivered`, `failed`; engagement: `opened`, `clicked`, `read`; feedback: `complained`, `unsubscribed`,
 * `resubscribed`; inbound messages: `opted-out` (STOP…), `opted-in` (START…), `inbound` (anything else);
 * `other` for types switchboard does not interpret (stored, never applied).
 */
export type EventType =
  | 'accepted'
  | 'deferred'
  | 'delivered'
  | 'bounced'
  | 'dropped'
  | 'undelivered'
  | 'failed'
  | 'opened'
  | 'clicked'
  | 'read'
  | 'complained'
  | 'unsubscribed'
  | 'resubscribed'
  | 'opted-out'
  | 'opted-in'
  | 'inbound'
  | 'other';

/** Every {@link EventType}, for flag checks. */
export const EVENT_TYPES: readonly EventType[] = [
  'accepted', 'deferred', 'delivered', 'bounced', 'dropped', 'undelivered', 'failed', 'opened', 'clicked', 'read',
  'complained', 'unsubscribed', 'resubscribed', 'opted-out', 'opted-in', 'inbound', 'other',
];

/**
 * What an event asks of the suppression list for its recipient:
 * - `suppress`: add (or keep) a suppression without expiry, with this reason (hard bounce, complaint,
 *   unsubscribe, opt-out);
 * - `soft-bounce`: count a soft bounce; N within a window suppress until an expiry (the config's settings);
 * - `opt-in`: the recipient asked to receive messages again (START/UNSTOP/YES): lift an opt-out suppression.
 */
export type EventAction = { kind: 'suppress'; reason: string } | { kind: 'soft-bounce'; reason: string } | { kind: 'opt-in'; reason: string };

/** One provider event, parsed. */
export interface ProviderEvent {
  /**
   * The provider's identity of this event, with a provider prefix: `sendgrid:<sg_event_id>`,
   * `twilio:<MessageSid>:<MessageStatus>`, `meta:<wamid>:<status>:<timestamp>`, `sns:<MessageId>:<recipient>`.
   * The same event delivered twice has the same key and is applied once.
   */
  key: string;
  type: EventType;
  /** The provider's own name of the event, e.g. `bounce`, `undelivered`, `Bounce/Permanent`. */
  providerType: string;
  /** When the provider says it happened (null when it does not say). */
  occurredAt: Date | null;
  /** The person's address: lower-case e-mail, or E.164 phone number; null when the event names none. */
  recipient: string | null;
  /** The provider's message id, as the send returned it (SendGrid: the `X-Message-Id` part of `sg_message_id`). */
  messageId: string | null;
  correlation: Correlation;
  /** Reason, error code or response text, one line. */
  detail: string | null;
  action?: EventAction;
  /** The provider's own event object, kept as JSON for `events list --json` and replays. */
  payload: unknown;
}

/** A webhook request refused: its HTTP status and a one-line reason for the log (never a secret). */
export class WebhookRejection extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'WebhookRejection';
  }
}

/** Lower-cases an e-mail address; strips `whatsapp:` and adds the `+` of a bare digit string (Meta's `wa_id`). */
export function normaliseEventAddress(raw: unknown): string | null {
  if (typeof raw !== 'string' && typeof raw !== 'number') return null;
  const s = String(raw).trim().replace(/^whatsapp:/i, '');
  if (!s) return null;
  if (s.includes('@')) return s.toLowerCase();
  if (/^\d{6,15}$/.test(s)) return `+${s}`;
  return s;
}

/** Seconds since the epoch (number or digit string) → Date; null when missing or not a number. */
export function fromUnixSeconds(v: unknown): Date | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
  return Number.isFinite(n) ? new Date(n * 1000) : null;
}

/** An inbound message's text as an opt-out or opt-in keyword (Twilio's standard keywords, https://help.twilio.com/articles/223134027). */
export function keywordOf(body: unknown): 'opt-out' | 'opt-in' | null {
  const word = typeof body === 'string' ? body.trim().toUpperCase() : '';
  if (OPT_OUT_KEYWORDS.has(word)) return 'opt-out';
  if (OPT_IN_KEYWORDS.has(word)) return 'opt-in';
  return null;
}

/** STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT. */
export const OPT_OUT_KEYWORDS: ReadonlySet<string> = new Set(['STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT']);
/** START, UNSTOP, YES. */
export const OPT_IN_KEYWORDS: ReadonlySet<string> = new Set(['START', 'UNSTOP', 'YES']);

/** A JSON object (or an empty one for anything else), for reading payloads defensively. */
export type JsonObject = Record<string, unknown>;
/** `v` if it is a plain object, else `{}`. */
export const asObject = (v: unknown): JsonObject => (v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : {});
/** `v` if it is an array, else `[]`. */
export const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
/** A non-empty string, or a number as text; undefined otherwise. */
export const asText = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);

/**
 * Parses a request body as JSON; `want` says what it must be (an array, or an object).
 * @throws WebhookRejection 400 naming what is wrong.
 */
export function parseJsonBody(body: Buffer | string, want: 'array' | 'object'): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw new WebhookRejection(400, 'body is not JSON');
  }
  const ok = want === 'array' ? Array.isArray(parsed) : Boolean(parsed) && typeof parsed === 'object' && !Array.isArray(parsed);
  if (!ok) throw new WebhookRejection(400, `body is not a JSON ${want === 'array' ? 'array of events' : 'object'}`);
  return parsed;
}
