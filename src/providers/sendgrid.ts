/**
 * SendGrid adapter (@sendgrid/client v8, the official SDK's v3 API client, imported lazily by the registry).
 * Settings: from, fromName, endpoint (base URL: https://api.eu.sendgrid.com for the EU region, or a test server),
 * sandbox (mail_settings.sandbox_mode: SendGrid validates and answers 200 but delivers nothing), batchSize (bulk
 * sends: rows per request as personalizations, default 1000). Secret: apiKey.
 * Bulk sends use `sendMany` (the BatchSender capability): up to 1000 rows per request, the shared body once and
 * each row's differences as `substitutions` (see {@link packMailSend}).
 * Wire format: `POST /v3/mail/send` (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send),
 * message id from the `X-Message-Id` response header; credential check: `GET /v3/scopes`
 * (https://www.twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access).
 */
import { randomBytes } from 'node:crypto';
import type { Client as SgClient } from '@sendgrid/client';
import type { AdapterConfig, BatchItemResult, EmailMessage, EmailProvider, SendResult, VerifyResult } from './types.js';
import { ProviderError } from './types.js';
import { HTTP_TIMEOUT_MS, checkEndpoint, oneLine } from './http.js';
import { factorStrings, utf8Bytes } from './substitutions.js';
import { emailHeaders, trackingFields } from './tracking.js';

/** One entry of SendGrid's `{"errors": [{message, field, help}]}` error body. */
interface SendGridErrorItem {
  message?: string;
  field?: string | null;
  help?: unknown;
}

/** The shape of @sendgrid/helpers `ResponseError` (status in `code`) and of axios network errors (`code` a string). */
interface SendGridFailure {
  code?: number | string;
  message?: string;
  response?: { headers?: Record<string, unknown>; body?: unknown };
}

/** Recipient fields of a mail send body, as SendGrid names them in `errors[].field` (e.g. `personalizations.0.to.0.email`). */
const RECIPIENT_FIELD = /^personalizations(\.\d+|\[\d+\])?\.(to|cc|bcc)\b/;

/**
 * Mail send limits (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send#limitations):
 * 1000 personalizations and 1000 recipients per request (one recipient per personalization here), 30 MB per
 * request, and 10,000 bytes of `substitutions` per personalization.
 */
export const SENDGRID_LIMITS = { personalizations: 1000, requestBytes: 30_000_000, substitutionBytes: 10_000 } as const;

function header(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  const v = headers[name] ?? headers[name.toLowerCase()];
  return v === undefined || v === null ? undefined : String(v);
}

function errorItems(body: unknown): SendGridErrorItem[] {
  const errors = (body as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) ? (errors as SendGridErrorItem[]) : [];
}

/**
 * Classifies a failed SendGrid call into a DESIGN §5 kind. Sources: the mail send responses
 * (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send#responses), the v3 error format
 * (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/responses) and rate limits
 * (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits):
 * - 401 (bad or revoked key) → `auth`; 403 → `auth` (key lacks a permission), or `config` when it is about the
 *   sender (`from` not a verified Sender Identity)
 * - 429 → `rate_limited`, retry after `X-RateLimit-Reset` (a Unix time in seconds) when given
 * - 5xx, and no response at all (connection refused or reset, timeout) → `transient`
 * - 400 with an error whose `field` is a recipient field (`personalizations.N.to…`, `cc`, `bcc`) → `recipient`
 * - any other 4xx (400 on another field, 404, 405, 413) and a message the SDK refuses to build → `config`
 * @param nowMs the current time in ms since the epoch (for the wait until `X-RateLimit-Reset`).
 */
export function classifySendGridError(err: unknown, nowMs: number): ProviderError {
  const e = err as SendGridFailure;
  const status = typeof e.code === 'number' ? e.code : undefined;
  if (status === undefined) {
    // No HTTP response: axios network errors carry a string code (ECONNREFUSED, ECONNRESET, ECONNABORTED…).
    if (typeof e.code === 'string' || /timeout|socket|network/i.test(e.message ?? '')) {
      return new ProviderError('transient', `SendGrid unreachable: ${oneLine(e.message ?? String(err))}`, { code: typeof e.code === 'string' ? e.code : undefined });
    }
    return new ProviderError('config', `SendGrid request could not be built: ${oneLine(e.message ?? String(err))}`);
  }
  const items = errorItems(e.response?.body);
  const text = items.length ? items.map((i) => oneLine(`${i.message ?? ''}${i.field ? ` (${i.field})` : ''}`)).join('; ') : oneLine(e.message ?? '');
  const details = { code: String(status) };
  if (status === 401) return new ProviderError('auth', `SendGrid rejected the API key (401): ${text}`, details);
  if (status === 403) {
    const aboutSender = items.some((i) => i.field === 'from' || /sender identity|from address/i.test(i.message ?? ''));
    return new ProviderError(aboutSender ? 'config' : 'auth', `SendGrid refused the request (403): ${text}`, details);
  }
  if (status === 429) {
    const reset = Number(header(e.response?.headers, 'X-RateLimit-Reset'));
    const retryAfterMs = Number.isFinite(reset) && reset > 0 ? Math.max(0, reset * 1000 - nowMs) : undefined;
    return new ProviderError('rate_limited', `SendGrid rate limit reached (429): ${text}`, { ...details, retryAfterMs });
  }
  if (status >= 500) return new ProviderError('transient', `SendGrid server error (${status}): ${text}`, details);
  if (status === 400 && items.some((i) => typeof i.field === 'string' && RECIPIENT_FIELD.test(i.field))) {
    return new ProviderError('recipient', `SendGrid refused the recipient (400): ${text}`, details);
  }
  return new ProviderError('config', `SendGrid refused the request (${status}): ${text}`, details);
}

/** One personalization of a mail send body as this adapter writes it. */
interface Personalization {
  to: Array<{ email: string }>;
  subject: string;
  headers?: Record<string, string>;
  substitutions?: Record<string, string>;
  /** switchboard's correlation fields (`sb_tenant`, `sb_batch`, `sb_row`), echoed in Event Webhook events. */
  custom_args?: Record<string, string>;
}

/** A mail send request packed from several messages, and what became of each message. */
export interface MailSendPack {
  /** The `POST /v3/mail/send` JSON body (snake_case, as on the wire). */
  body: {
    from: { email: string; name?: string };
    personalizations: Personalization[];
    content: Array<{ type: 'text/plain' | 'text/html'; value: string }>;
    mail_settings?: { sandbox_mode: { enable: true } };
  };
  /** `body` serialised: the request's bytes as they go on the wire (JSON, UTF-8). */
  json: string;
  /** Index (into the messages given) of each personalization, in order. */
  included: number[];
  /** Messages left out of this request, with the reason; they are to be sent in another request. */
  deferred: Array<{ index: number; reason: string }>;
}

/**
 * Packs rendered messages into one mail send request: one personalization per message (its own `to`,
 * `subject`, `headers`, and its tracking as `custom_args`), and the content once per request, as the API wants it — `content` is per request,
 * not per personalization. What differs between the messages' bodies is carried by per-personalization
 * `substitutions`: {@link factorStrings} finds the text shared by all bodies (kept literally in `content`)
 * and the differing stretches (each replaced by a substitution tag `-sb<random hex><t|h><n>-`, prefix-free and
 * absent from every value, literal and subject). SendGrid puts each personalization's values back, so each
 * recipient gets exactly the body switchboard rendered for its row (checked character for character).
 * A message is deferred (left for another request) when its substitutions would exceed 10,000 bytes
 * (SendGrid's limit per personalization), when its parts differ from the first message's (text and/or HTML),
 * or when the request would pass 1000 personalizations or 30 MB.
 * Wire format: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send.
 * @param from the sender (`{email, name?}`); `sandbox` sets `mail_settings.sandbox_mode`.
 */
export function packMailSend(messages: readonly EmailMessage[], from: { email: string; name?: string }, sandbox: boolean, tagHex = randomBytes(4).toString('hex')): MailSendPack {
  const deferred: MailSendPack['deferred'] = [];
  const first = messages[0];
  if (!first) {
    const empty: MailSendPack['body'] = { from, personalizations: [], content: [] };
    return { body: empty, json: JSON.stringify(empty), included: [], deferred };
  }
  const shape = (m: EmailMessage) => `${m.text !== undefined}|${m.html !== undefined}`;
  const candidates: number[] = [];
  messages.forEach((m, k) => {
    if (k >= SENDGRID_LIMITS.personalizations) deferred.push({ index: k, reason: 'over 1000 personalizations per request' });
    else if (shape(m) !== shape(first)) deferred.push({ index: k, reason: 'its parts (text/HTML) differ from the rest of the request' });
    else candidates.push(k);
  });
  const parts = (['text', 'html'] as const).filter((p) => first[p] !== undefined);
  const factored = parts.map((p) => factorStrings(candidates.map((k) => messages[k]![p]!), SENDGRID_LIMITS.substitutionBytes));
  // A tag that occurs nowhere in the literals, values or subjects, so every replacement is one of ours.
  let tag = `-sb${tagHex}`;
  const clashes = (t: string) =>
    factored.some((f) => f.literals.some((l) => l.includes(t)) || f.gaps.some((g) => g?.some((v) => v.includes(t)))) ||
    candidates.some((k) => messages[k]!.subject.includes(t));
  while (clashes(tag)) tag = `-sb${randomBytes(6).toString('hex')}`;
  const key = (p: number, g: number) => `${tag}${parts[p] === 'text' ? 't' : 'h'}${g}-`;
  const content = factored.map((f, p) => ({
    type: parts[p] === 'text' ? ('text/plain' as const) : ('text/html' as const),
    value: f.literals.map((l, g) => (g === 0 ? l : key(p, g - 1) + l)).join(''),
  }));
  const body: MailSendPack['body'] = {
    from,
    personalizations: [],
    content: content.filter((c) => c.value !== ''),
    ...(sandbox ? { mail_settings: { sandbox_mode: { enable: true as const } } } : {}),
  };
  const packed: Array<{ index: number; pers: Personalization }> = [];
  candidates.forEach((k, c) => {
    const m = messages[k]!;
    const substitutions: Record<string, string> = {};
    let subBytes = 0;
    let kept = true;
    factored.forEach((f, p) => {
      const g = f.gaps[c];
      if (!g) kept = false;
      else
        g.forEach((v, i) => {
          substitutions[key(p, i)] = v;
          subBytes += utf8Bytes(key(p, i)) + utf8Bytes(v);
        });
    });
    if (!kept || subBytes > SENDGRID_LIMITS.substitutionBytes) {
      deferred.push({ index: k, reason: `its body differs from the others' by more than ${SENDGRID_LIMITS.substitutionBytes} bytes of substitutions` });
      return;
    }
    const customArgs = trackingFields(m.tracking);
    packed.push({
      index: k,
      pers: {
        to: [{ email: m.to }],
        subject: m.subject,
        ...(m.headers ? { headers: m.headers } : {}),
        ...(subBytes > 0 || Object.keys(substitutions).length > 0 ? { substitutions } : {}),
        ...(Object.keys(customArgs).length > 0 ? { custom_args: customArgs } : {}),
      },
    });
  });
  body.personalizations = packed.map((p) => p.pers);
  let included = packed.map((p) => p.index);
  // The whole body is serialised once (the string that is posted); only a body over the limit is cut,
  // personalization by personalization, and serialised again.
  let json = JSON.stringify(body);
  if (utf8Bytes(json) > SENDGRID_LIMITS.requestBytes) {
    body.personalizations = [];
    included = [];
    let size = utf8Bytes(JSON.stringify(body));
    for (const { index, pers } of packed) {
      const bytes = utf8Bytes(JSON.stringify(pers)) + 1;
      if (size + bytes > SENDGRID_LIMITS.requestBytes) {
        deferred.push({ index, reason: `the request would exceed ${SENDGRID_LIMITS.requestBytes} bytes` });
        continue;
      }
      size += bytes;
      body.personalizations.push(pers);
      included.push(index);
    }
    json = JSON.stringify(body);
  }
  deferred.sort((a, b) => a.index - b.index);
  return { body, json, included, deferred };
}

/** The result of a message that was not packed into the request (every result is then overwritten). */
const NOT_PACKED: BatchItemResult = { ok: false, deferred: 'not packed' };

/** Personalization indices that the recipient errors of a 400 name (`personalizations.3.to.0.email`, `personalizations[3].to…`). */
function badPersonalizations(err: unknown): Set<number> | undefined {
  const items = errorItems((err as SendGridFailure).response?.body).filter((i) => typeof i.field === 'string' && RECIPIENT_FIELD.test(i.field));
  const out = new Set<number>();
  for (const i of items) {
    const m = /^personalizations(?:\.(\d+)|\[(\d+)\])/.exec(i.field!);
    if (!m) return undefined;
    out.add(Number(m[1] ?? m[2]));
  }
  return out.size ? out : undefined;
}

/**
 * Builds a SendGrid adapter from a decrypted config: its own `Client` (so several configs with different keys
 * can be used in one process). Every mail send, one message or a batch, is a body from {@link packMailSend}
 * posted with `client.request`: one wire path for both (no @sendgrid/mail helper objects per message).
 * Requests time out after {@link HTTP_TIMEOUT_MS}.
 * @throws ProviderError `config` if `endpoint` is not an http(s) URL.
 */
export async function createSendGridProvider(config: AdapterConfig): Promise<EmailProvider> {
  const s = config.settings;
  const endpoint = s.endpoint === undefined ? undefined : checkEndpoint(String(s.endpoint), config.ref);
  const sandbox = s.sandbox === true;
  // CommonJS whose typings hide the class behind `export =`; at run time it is a named export.
  const { Client } = (await import('@sendgrid/client')) as unknown as { Client: typeof SgClient };
  const client = new Client();
  // setApiKey() resets the base URL to the global region, so the endpoint is set after it.
  client.setApiKey(config.secrets.apiKey ?? '');
  if (endpoint) client.setDefaultRequest('baseUrl', endpoint);
  // Passed to axios as is (what @sendgrid/mail's setTimeout does); the typings list only the fields they name.
  const setDefault = client.setDefaultRequest.bind(client) as (key: string, value: unknown) => SgClient;
  setDefault('timeout', HTTP_TIMEOUT_MS);
  // The v3 API answers mail sends and scope checks without redirects; with redirects off, axios uses node:http
  // directly instead of follow-redirects, which keeps a copy of every request body for a replay (measured: 9 %
  // faster per message, and less memory). A 3xx answer is then an error like any other 4xx: `config`.
  setDefault('maxRedirects', 0);
  // Bodies are posted already serialised (MailSendPack.json, the string packMailSend measured): axios would
  // otherwise JSON.parse a string body to check it, or serialise an object a second time. The Content-Type
  // stays the client's default, application/json.
  setDefault('transformRequest', [(data: unknown) => (data === undefined || typeof data === 'string' ? data : JSON.stringify(data))]);
  /** Posts a mail send body (its JSON); @returns the `X-Message-Id` (sandbox mode answers 200 without one). @throws what the SDK throws. */
  const post = async (json: string): Promise<string> => {
    const [response] = await client.request({ method: 'POST', url: '/v3/mail/send', body: json });
    return header(response.headers as Record<string, unknown>, 'x-message-id') ?? (sandbox ? `sandbox-${randomBytes(8).toString('hex')}` : '');
  };
  const from = { email: String(s.from), ...(s.fromName !== undefined ? { name: String(s.fromName) } : {}) };
  const mailto = s.unsubscribeMailto === undefined ? undefined : String(s.unsubscribeMailto);
  /** The message with its List-Unsubscribe headers (bulk e-mails) among its headers. */
  const withListHeaders = (m: EmailMessage): EmailMessage => {
    const headers = emailHeaders(m, mailto);
    return headers ? { ...m, headers } : m;
  };

  const maxBatchSize = typeof s.batchSize === 'number' ? Math.max(1, Math.min(SENDGRID_LIMITS.personalizations, s.batchSize)) : SENDGRID_LIMITS.personalizations;

  return {
    channel: 'email',
    maxBatchSize,
    /**
     * Sends up to 1000 rendered messages in one `POST /v3/mail/send` (see {@link packMailSend}); every message
     * of the request gets the request's `X-Message-Id`. Messages that cannot join the request come back
     * `deferred`. A 400 naming recipient fields of some personalizations fails those rows (`recipient`) and
     * defers the others (SendGrid refuses the whole request, so nothing was sent).
     * @throws ProviderError (see {@link classifySendGridError}) when the request fails as a whole.
     */
    async sendMany(messages: EmailMessage[]): Promise<BatchItemResult[]> {
      // Only the JSON and the included indices outlive this turn: the packed objects (personalizations,
      // substitutions, headers) die young instead of being promoted while the request is on the wire.
      const { json, included, deferred } = packMailSend(messages.map(withListHeaders), from, sandbox);
      // Results are read, never changed: the rows of one outcome share one object (one per request, not per row).
      const results: BatchItemResult[] = messages.map(() => NOT_PACKED);
      for (const d of deferred) results[d.index] = { ok: false, deferred: d.reason };
      if (included.length === 0) return results;
      try {
        const id = await post(json);
        const accepted: BatchItemResult = { ok: true, messageId: id, acceptedAt: new Date() };
        for (const k of included) results[k] = accepted;
        return results;
      } catch (err) {
        const e = classifySendGridError(err, Date.now());
        const bad = e.kind === 'recipient' ? badPersonalizations(err) : undefined;
        if (!bad || [...bad].some((p) => p >= included.length)) throw e;
        const failed: BatchItemResult = { ok: false, error: e };
        const refused: BatchItemResult = { ok: false, deferred: 'SendGrid refused the request because of another recipient' };
        included.forEach((k, p) => {
          results[k] = bad.has(p) ? failed : refused;
        });
        return results;
      }
    },
    /**
     * Sends one message as a mail send with one personalization (its `to`, `subject` and `headers`).
     * @throws ProviderError (see {@link classifySendGridError}); `config` for a message over 30 MB.
     */
    async send(message: EmailMessage): Promise<SendResult> {
      const pack = packMailSend([withListHeaders(message)], from, sandbox);
      if (pack.included.length === 0) throw new ProviderError('config', `SendGrid cannot take this message: ${pack.deferred[0]?.reason ?? 'not packed'}`);
      try {
        return { messageId: await post(pack.json), acceptedAt: new Date() };
      } catch (err) {
        throw classifySendGridError(err, Date.now());
      }
    },
    async verify(): Promise<VerifyResult> {
      try {
        const [, body] = await client.request({ method: 'GET', url: '/v3/scopes' });
        const scopes = (body as { scopes?: unknown })?.scopes;
        if (!Array.isArray(scopes)) return { ok: false, detail: 'GET /v3/scopes answered without a scopes list' };
        if (!scopes.includes('mail.send')) {
          return { ok: false, detail: `the API key is valid but lacks the mail.send scope (it has ${scopes.length} other scope(s)); give it "Mail Send" access` };
        }
        return { ok: true, detail: `API key valid, mail.send granted${sandbox ? ' (sandbox mode: nothing is delivered)' : ''}` };
      } catch (err) {
        const e = classifySendGridError(err, Date.now());
        return { ok: false, detail: `${e.kind}: ${e.message}` };
      }
    },
    async close(): Promise<void> {},
  };
}
