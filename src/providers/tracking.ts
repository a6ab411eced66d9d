/**
 * Correlation data on the wire (DESIGN §6b): how a send's {@link Tracking} travels to each provider so that its
 * delivery events name the tenant, batch and row, and how the webhook parsers read it back. No SDK imports here.
 *
 * The same three names everywhere: `sb_tenant`, `sb_batch`, `sb_row` —
 * - SendGrid: `personalizations[].custom_args` (echoed as top-level fields of each event,
 *   https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event#custom-arguments);
 * - Amazon SES: `EmailTags` (echoed in `mail.tags` of event-publishing notifications,
 *   https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-contents.html); tag values may hold
 *   only ASCII letters, digits, `_`, `-`, `.` and `@`, which tenant ids, batch ids and row numbers are;
 * - Twilio: the query of the per-message `StatusCallback` URL (https://www.twilio.com/docs/messaging/api/message-resource#request-body-parameters);
 * - Meta WhatsApp: `biz_opaque_callback_data`, up to 512 characters, echoed in `statuses[]`
 *   (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages), as a URL query string.
 * SMTP and the outbox carry the `X-Switchboard-Batch: <batch>/<row>` header (SES echoes it in `mail.headers`).
 */
import type { Tracking } from './types.js';

/** The wire names of the correlation fields. */
export const TRACKING_FIELDS = { tenant: 'sb_tenant', batch: 'sb_batch', row: 'sb_row' } as const;

/** What an event says about where its message came from; each field only when present and well-formed. */
export interface Correlation {
  tenantId?: string;
  batchId?: string;
  rowNo?: number;
}

const TENANT = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
const BATCH = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/;

/** The correlation fields of a send as name → value (`sb_tenant`, and `sb_batch`/`sb_row` for batch rows). */
export function trackingFields(t: Tracking | undefined): Record<string, string> {
  if (!t) return {};
  return {
    [TRACKING_FIELDS.tenant]: t.tenantId,
    ...(t.batchId !== undefined ? { [TRACKING_FIELDS.batch]: t.batchId } : {}),
    ...(t.rowNo !== undefined ? { [TRACKING_FIELDS.row]: String(t.rowNo) } : {}),
  };
}

/**
 * The Twilio `StatusCallback` URL for a send through the config `ref`: `<publicUrl>/hooks/<ref>?sb_tenant=…&sb_batch=…&sb_row=…`,
 * or undefined when no public URL is known (then the send carries no callback at all).
 */
export function statusCallbackUrl(t: Tracking | undefined, ref: string): string | undefined {
  if (!t?.publicUrl) return undefined;
  const path = ref.split('/').map(encodeURIComponent).join('/');
  return `${t.publicUrl}/hooks/${path}?${new URLSearchParams(trackingFields(t)).toString()}`;
}

/** Meta's `biz_opaque_callback_data` for a send: the correlation fields as a URL query string (undefined without tracking). */
export function opaqueCallbackData(t: Tracking | undefined): string | undefined {
  return t ? new URLSearchParams(trackingFields(t)).toString() : undefined;
}

/**
 * The RFC 2369 / RFC 8058 headers of a bulk e-mail: `List-Unsubscribe: <https://…/unsubscribe/<token>>` (plus
 * `<mailto:…?subject=unsubscribe>` when the config has an `unsubscribeMailto`) and
 * `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (only with the HTTPS-or-HTTP URL: one-click needs it).
 * A bulk e-mail without a public URL gets the mailto form alone when `mailto` is set; other sends get nothing.
 * Sources: https://www.rfc-editor.org/rfc/rfc8058#section-3.1, https://www.rfc-editor.org/rfc/rfc2369#section-3.2.
 */
export function listUnsubscribeHeaders(t: Tracking | undefined, mailto?: string): Record<string, string> {
  if (!t || t.batchId === undefined) return {};
  const targets = [
    ...(t.unsubscribeUrl ? [`<${t.unsubscribeUrl}>`] : []),
    ...(mailto ? [`<mailto:${mailto}?subject=unsubscribe>`] : []),
  ];
  if (targets.length === 0) return {};
  return {
    'List-Unsubscribe': targets.join(', '),
    ...(t.unsubscribeUrl ? { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } : {}),
  };
}

/**
 * Reads correlation fields with `get(name)` (a custom arg, tag, query parameter…); malformed values are dropped,
 * so a forged or garbled field never names a batch row it does not fit.
 */
export function readCorrelation(get: (name: string) => unknown): Correlation {
  const str = (name: string): string | undefined => {
    const v = get(name);
    const s = Array.isArray(v) ? v[0] : v;
    return typeof s === 'string' || typeof s === 'number' ? String(s) : undefined;
  };
  const tenant = str(TRACKING_FIELDS.tenant);
  const batch = str(TRACKING_FIELDS.batch);
  const row = str(TRACKING_FIELDS.row);
  const out: Correlation = {};
  if (tenant && tenant.length <= 63 && TENANT.test(tenant)) out.tenantId = tenant;
  if (batch && BATCH.test(batch) && row && /^[1-9]\d{0,9}$/.test(row)) {
    out.batchId = batch;
    out.rowNo = Number(row);
  }
  return out;
}

/** Correlation from an `X-Switchboard-Batch: <batch>/<row>` header value (as SES echoes headers). */
export function correlationFromBatchHeader(value: string | undefined): Correlation {
  const m = /^\s*([^/\s]+)\/(\d+)\s*$/.exec(value ?? '');
  return m ? readCorrelation((name) => (name === TRACKING_FIELDS.batch ? m[1] : name === TRACKING_FIELDS.row ? m[2] : undefined)) : {};
}

/**
 * The headers an e-mail adapter sends: the message's own, plus its List-Unsubscribe headers (see
 * {@link listUnsubscribeHeaders}; `mailto` is the config's `unsubscribeMailto`); undefined when there are none.
 */
export function emailHeaders(m: { headers?: Record<string, string>; tracking?: Tracking }, mailto?: string): Record<string, string> | undefined {
  const all = { ...m.headers, ...listUnsubscribeHeaders(m.tracking, mailto) };
  return Object.keys(all).length > 0 ? all : undefined;
}
