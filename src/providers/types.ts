/**
 * The adapter interfaces (DESIGN §5). An adapter is built from one decrypted provider config and holds no
 * state beyond its connection pool. Retries, fallback and rate limits are wrappers in `src/core/dispatch.ts`,
 * never inside adapters.
 */

/**
 * How a failure should be handled (DESIGN §5):
 * - `recipient`: the address is invalid, unsubscribed or blocked. Do not retry, do not fall back.
 * - `auth` / `config`: bad credentials, missing scope, unverified sender. Fall back; mark the config unhealthy.
 * - `rate_limited`: wait `retryAfterMs`, then retry the same provider.
 * - `transient`: timeouts, 5xx, connection resets. Retry with backoff, then fall back.
 */
export type ProviderErrorKind = 'recipient' | 'auth' | 'config' | 'rate_limited' | 'transient';

/** A classified provider failure. `code` is the provider's own code (SMTP reply code, HTTP status, API code). */
export class ProviderError extends Error {
  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly details: {
      code?: string;
      /** How long the provider asked us to wait before retrying, in ms. */
      retryAfterMs?: number;
      /** The provider says the recipient opted out: add a suppression. */
      optOut?: boolean;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: details.cause });
    this.name = 'ProviderError';
  }
}

/**
 * What switchboard attaches to a send so that the provider echoes it back in its delivery events (DESIGN §6b),
 * set where messages are composed (`send batch`, `send test`) and mapped by each adapter to its wire fields
 * (see `src/providers/tracking.ts`): SendGrid `personalizations[].custom_args`, SES `EmailTags`, Twilio the
 * `StatusCallback` URL's query, Meta `biz_opaque_callback_data`; SMTP and the outbox carry the
 * `X-Switchboard-Batch` header only. Adapters ignore what they cannot carry.
 */
export interface Tracking {
  tenantId: string;
  /** The bulk send and its ledger row (1-based), for `send batch` rows. */
  batchId?: string;
  rowNo?: number;
  /**
   * The public base URL of `events serve` (no trailing slash), when one is known: Twilio status callbacks go
   * to `<publicUrl>/hooks/<provider ref>`.
   */
  publicUrl?: string;
  /** E-mail of a bulk send: the one-click unsubscribe URL (RFC 8058) of this recipient, when a public URL is known. */
  unsubscribeUrl?: string;
}

/** An e-mail to one recipient. `from` is `"Name" <addr>` or a bare address; adapters fall back to their setting. */
export interface EmailMessage {
  to: string;
  subject: string;
  /** Plain-text body. At least one of `text` and `html` is set. */
  text?: string;
  html?: string;
  /** Extra headers, e.g. `X-Switchboard-Batch`. */
  headers?: Record<string, string>;
  /** Correlation data and unsubscribe URL for delivery events (see {@link Tracking}). */
  tracking?: Tracking;
}

/** What an adapter returns when the provider accepted a message. */
export interface SendResult {
  /** The provider's message id (SMTP: the Message-ID header; HTTP APIs: the id they return). */
  messageId: string;
  acceptedAt: Date;
}

/** Result of a credential check that sends nothing. */
export interface VerifyResult {
  ok: boolean;
  detail: string;
}

/** An e-mail adapter. `send` throws {@link ProviderError} on failure. `close` releases pooled connections. */
export interface EmailProvider extends Partial<BatchSender<EmailMessage>> {
  readonly channel: 'email';
  send(message: EmailMessage): Promise<SendResult>;
  verify(): Promise<VerifyResult>;
  close(): Promise<void>;
}

/**
 * The outcome of one message of a batched request, in the order the messages were given: accepted (with the
 * request's message id), failed for good (a `recipient` error naming this message), or `deferred` — the
 * adapter left it out of the request (e.g. SendGrid: its body differs too much from the others' to travel as
 * substitutions); the dispatcher sends deferred messages in a further request, or one by one.
 */
export type BatchItemResult = ({ ok: true } & SendResult) | { ok: false; error: ProviderError } | { ok: false; deferred: string };

/**
 * Optional adapter capability: many messages in one provider request (e.g. SendGrid `POST /v3/mail/send` with
 * up to 1000 `personalizations`, https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send).
 * The bulk-send runner uses it when the first provider of a route has it: rows of one batch (one template) are
 * grouped up to `maxBatchSize`, each row still gets its own ledger state and the request's message id.
 *
 * Every message is rendered per row by switchboard (local rendering; see README "Provider batching"), so the
 * adapter packs finished messages and never renders templates itself (SendGrid: one personalization per
 * message with its own `to`, `subject` and `headers`; the body once per request, with what differs between
 * the rows' bodies carried as per-personalization `substitutions`, see `packMailSend` in sendgrid.ts).
 *
 * `sendMany` throws a {@link ProviderError} when the request as a whole fails (nothing was accepted); the
 * dispatcher then retries or falls back row by row (DESIGN §5). Otherwise it returns one result per message,
 * in order (`messageId` of an accepted message is the request's id, e.g. SendGrid's `X-Message-Id`).
 */
export interface BatchSender<M> {
  /** Most messages per request (SendGrid: 1000). */
  readonly maxBatchSize: number;
  sendMany(messages: M[]): Promise<BatchItemResult[]>;
}

/** An SMS to one recipient. `to` is E.164 (e.g. `+447700900123`). */
export interface SmsMessage {
  to: string;
  body: string;
  /** Correlation data for delivery events (see {@link Tracking}). */
  tracking?: Tracking;
}

/**
 * A WhatsApp message to one recipient (`to` in E.164). Either free-form `text` (only inside the 24-hour
 * customer-service window) or an approved `template` with positional body parameters ({{1}}, {{2}}, …).
 */
export interface WhatsAppMessage {
  to: string;
  text?: string;
  template?: { name: string; language: string; parameters: string[] };
  /** Correlation data for delivery events (see {@link Tracking}). */
  tracking?: Tracking;
}

/** Any outbound message; which one is decided by the channel. */
export type OutboundMessage = EmailMessage | SmsMessage | WhatsAppMessage;

/** An SMS adapter. */
export interface SmsProvider {
  readonly channel: 'sms';
  send(message: SmsMessage): Promise<SendResult>;
  verify(): Promise<VerifyResult>;
  close(): Promise<void>;
}

/** A WhatsApp adapter. */
export interface WhatsAppProvider {
  readonly channel: 'whatsapp';
  send(message: WhatsAppMessage): Promise<SendResult>;
  verify(): Promise<VerifyResult>;
  close(): Promise<void>;
}

/** Any adapter. */
export type Provider = EmailProvider | SmsProvider | WhatsAppProvider;

/** Setting values as stored: strings, integers and booleans. */
export type SettingValue = string | number | boolean;

/** What an adapter factory receives: the decrypted config plus run-time hints. */
export interface AdapterConfig {
  /** The provider ref, `<tenant|system>/<channel>/<name>`, for messages. */
  ref: string;
  settings: Record<string, SettingValue>;
  secrets: Record<string, string>;
  /** How many messages the caller may have in flight at once (sizes connection pools). */
  maxConcurrency: number;
  /** The channel the config serves (a kind may serve several, e.g. outbox). */
  channel: 'email' | 'sms' | 'whatsapp';
}

/**
 * Sends `message` through `adapter`. The dispatcher only pairs adapters and messages of the same channel;
 * this is the one place that relies on it.
 */
export function sendThrough(adapter: Provider, message: OutboundMessage): Promise<SendResult> {
  return (adapter.send as (m: OutboundMessage) => Promise<SendResult>)(message);
}
