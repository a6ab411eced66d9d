/**
 * SendGrid adapter (@sendgrid/mail v8, imported lazily by the registry).
 * Settings: from, fromName, endpoint (base URL: https://api.eu.sendgrid.com for the EU region, or a test server),
 * sandbox (mail_settings.sandbox_mode: SendGrid validates and answers 200 but delivers nothing). Secret: apiKey.
 * Wire format: `POST /v3/mail/send` (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send),
 * message id from the `X-Message-Id` response header; credential check: `GET /v3/scopes`
 * (https://www.twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access).
 */
import { randomBytes } from 'node:crypto';
import type { MailDataRequired, MailService as SgMailService } from '@sendgrid/mail';
import type { Client as SgClient } from '@sendgrid/client';
import type { AdapterConfig, EmailMessage, EmailProvider, SendResult, VerifyResult } from './types.js';
import { ProviderError } from './types.js';
import { checkEndpoint, oneLine } from './util.js';

/** Request timeout for every SendGrid call, in ms. */
const TIMEOUT_MS = 30_000;

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

/**
 * Builds a SendGrid adapter from a decrypted config: one `MailService` (its own client, so several configs
 * with different keys can be used in one process).
 * @throws ProviderError `config` if `endpoint` is not an http(s) URL.
 */
export async function createSendGridProvider(config: AdapterConfig): Promise<EmailProvider> {
  const s = config.settings;
  const endpoint = s.endpoint === undefined ? undefined : checkEndpoint(String(s.endpoint), config.ref);
  const sandbox = s.sandbox === true;
  // Both packages are CommonJS whose typings hide the classes behind `export =`; at run time they are named exports.
  const { MailService } = (await import('@sendgrid/mail')) as unknown as { MailService: typeof SgMailService };
  const { Client } = (await import('@sendgrid/client')) as unknown as { Client: typeof SgClient };
  const client = new Client();
  // setApiKey() resets the base URL to the global region, so the endpoint is set after it.
  client.setApiKey(config.secrets.apiKey ?? '');
  if (endpoint) client.setDefaultRequest('baseUrl', endpoint);
  const mail = new MailService();
  mail.setClient(client);
  mail.setTimeout(TIMEOUT_MS);
  const from = { email: String(s.from), ...(s.fromName !== undefined ? { name: String(s.fromName) } : {}) };

  return {
    channel: 'email',
    async send(message: EmailMessage): Promise<SendResult> {
      try {
        // EmailMessage guarantees text or html, which is what MailDataRequired's union asks for.
        const data = {
          from,
          to: message.to,
          subject: message.subject,
          ...(message.text !== undefined ? { text: message.text } : {}),
          ...(message.html !== undefined ? { html: message.html } : {}),
          ...(message.headers ? { headers: message.headers } : {}),
          ...(sandbox ? { mailSettings: { sandboxMode: { enable: true } } } : {}),
        } as MailDataRequired;
        const [response] = await mail.send(data);
        // Sandbox mode answers 200 without an id; a real send answers 202 with X-Message-Id.
        const id = header(response.headers as Record<string, unknown>, 'x-message-id') ?? (sandbox ? `sandbox-${randomBytes(8).toString('hex')}` : '');
        return { messageId: id, acceptedAt: new Date() };
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
