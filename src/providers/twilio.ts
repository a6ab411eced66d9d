/**
 * Twilio adapters for SMS (`twilio`) and WhatsApp (`twilio-whatsapp`), through the official `twilio` SDK
 * (imported lazily by the registry). Messages are created with `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
 * (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource); the message id is the
 * returned `sid` (`SM…`/`MM…`).
 *
 * Settings: accountSid (`AC` + 32 hex), exactly one of from / messagingServiceSid (`MG` + 32 hex), endpoint
 * (base URL, e.g. a Twilio edge `https://api.dublin.ie1.twilio.com` or a local test server). Secret: authToken.
 *
 * The SDK has no base-URL option, so `endpoint` is implemented with a custom `httpClient`: a `RequestClient`
 * subclass that rewrites the scheme, host and port of every request to the endpoint's (keeping the path,
 * prefixed with the endpoint's own path if it has one). The same client turns HTTP errors into classified
 * {@link ProviderError}s while it still has the response headers (`Retry-After`), which the SDK's own
 * `RestException` drops.
 *
 * Delivery events: with a public URL known, each message carries `StatusCallback` =
 * `<public URL>/hooks/<ref>?sb_tenant=…&sb_batch=…&sb_row=…` (see ./tracking.ts); without one, none.
 *
 * WhatsApp via Twilio: addresses get the `whatsapp:` prefix (From and To). Free-form text goes in `Body`.
 * Approved templates are Twilio Content API templates: the message's `template.name` is the Content SID
 * (`HX` + 32 hex) and its positional parameters become `ContentVariables` `{"1": p1, "2": p2, …}`
 * (https://www.twilio.com/docs/content/send-templates-created-with-the-content-editor). The template's
 * language is fixed by the Content SID, so `template.language` is not sent.
 */
import type { AdapterConfig, SendResult, SmsMessage, SmsProvider, VerifyResult, WhatsAppMessage, WhatsAppProvider } from './types.js';
import { ProviderError } from './types.js';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import { HTTP_TIMEOUT_MS, isNetworkError, joinEndpoint, parseEndpoint, retryAfterMs } from './http.js';
import { statusCallbackUrl } from './tracking.js';

/** `AC` followed by 32 hex digits (the pattern of the 2010-04-01 spec's AccountSid path parameter). */
export const ACCOUNT_SID = /^AC[0-9a-fA-F]{32}$/;
/** `MG` followed by 32 hex digits. */
export const MESSAGING_SERVICE_SID = /^MG[0-9a-fA-F]{32}$/;
/** A Content API template SID: `HX` followed by 32 hex digits. */
export const CONTENT_SID = /^HX[0-9a-fA-F]{32}$/;

/** Twilio's error body (https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions). */
interface TwilioErrorBody {
  code?: number;
  message?: string;
  more_info?: string;
  status?: number;
}

/**
 * Twilio error codes by DESIGN §5 kind. Sources: https://www.twilio.com/docs/api/errors (one page per code,
 * e.g. https://www.twilio.com/docs/api/errors/21211).
 * - auth: 20003 authentication failed (also any HTTP 401/403), 20005 account not active.
 * - recipient: 21211 invalid To, 21614 To is not a mobile number, 21612 cannot route to To, 21408 region not
 *   enabled for To, 63003 WhatsApp: channel could not find To, 63024 invalid WhatsApp recipient, 63016 outside the
 *   WhatsApp 24-hour window (a template is needed; no provider can send free text).
 * - recipient with opt-out: 21610 the recipient replied STOP (unsubscribed).
 * - rate_limited: 20429 too many requests (also HTTP 429), 14107 SMS send rate limit exceeded.
 * - config: 21212/21606/21659/21660 invalid or unusable From, 21606, 63007 WhatsApp sender not found, 20404 resource
 *   (account, service) not found, 21703/21704 messaging service problems, any other 4xx.
 * - transient: HTTP 5xx and network failures.
 */
const RECIPIENT_CODES = new Set([21211, 21614, 21612, 21408, 63003, 63024, 63016]);
const OPT_OUT_CODES = new Set([21610]);
const AUTH_CODES = new Set([20003, 20005]);
const RATE_CODES = new Set([20429, 14107]);

/**
 * Classifies a Twilio HTTP error response into a DESIGN §5 kind (see the table above).
 * `headers` are the response headers (lower-case names); `Retry-After` becomes `retryAfterMs`.
 */
export function classifyTwilioError(status: number, body: unknown, headers: Record<string, unknown> = {}): ProviderError {
  const b: TwilioErrorBody = body && typeof body === 'object' ? (body as TwilioErrorBody) : {};
  const code = typeof b.code === 'number' ? b.code : undefined;
  const text = `${b.message ?? `HTTP ${status}`}${code !== undefined ? ` (Twilio error ${code})` : ''}`;
  const details = { code: String(code ?? status) };
  if (code !== undefined && OPT_OUT_CODES.has(code)) {
    return new ProviderError('recipient', `recipient has opted out (replied STOP): ${text}`, { ...details, optOut: true });
  }
  if (code !== undefined && RECIPIENT_CODES.has(code)) return new ProviderError('recipient', `recipient rejected: ${text}`, details);
  if ((code !== undefined && AUTH_CODES.has(code)) || status === 401 || status === 403) {
    return new ProviderError('auth', `Twilio authentication failed: ${text}`, details);
  }
  if ((code !== undefined && RATE_CODES.has(code)) || status === 429) {
    return new ProviderError('rate_limited', `Twilio rate limit: ${text}`, { ...details, retryAfterMs: retryAfterMs(headers['retry-after']) });
  }
  if (status >= 500) return new ProviderError('transient', `Twilio server error: ${text}`, details);
  return new ProviderError('config', `Twilio refused the request: ${text}`, details);
}

/** Classifies anything thrown while talking to Twilio (classified errors pass through). */
function classifyThrown(err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  const e = err as { status?: number; code?: unknown; message?: string };
  // A RestException (should the SDK raise one itself) carries status and code.
  if (typeof e.status === 'number') return classifyTwilioError(e.status, { code: e.code, message: e.message });
  const message = (err as Error).message ?? String(err);
  if (isNetworkError(err)) return new ProviderError('transient', `cannot reach Twilio: ${message}`, { cause: err });
  return new ProviderError('transient', `Twilio request failed: ${message}`, { cause: err });
}

type RequestOptions<T> = RequestClient.RequestOptions<T>;

/** The subset of the SDK's Message/Account resources this adapter reads. */
interface TwilioClientLike {
  messages: { create(params: Record<string, string>): Promise<{ sid: string }> };
  api: { v2010: { accounts(sid: string): { fetch(): Promise<{ status: string; friendlyName: string }> } } };
}

/**
 * Builds the SDK client with the endpoint-rewriting, error-classifying `httpClient`.
 * @throws ProviderError `config` for a malformed accountSid or endpoint.
 */
async function createClient(config: AdapterConfig): Promise<TwilioClientLike> {
  const s = config.settings;
  const accountSid = String(s.accountSid ?? '');
  if (!ACCOUNT_SID.test(accountSid)) throw new ProviderError('config', `${config.ref}: setting accountSid must be AC followed by 32 hex digits`);
  const authToken = config.secrets.authToken;
  if (!authToken) throw new ProviderError('config', `${config.ref}: secret authToken is not set`);
  let endpoint: URL | undefined;
  try {
    endpoint = s.endpoint === undefined ? undefined : parseEndpoint(String(s.endpoint));
  } catch (err) {
    throw new ProviderError('config', `${config.ref}: ${(err as Error).message}`);
  }
  const twilio = (await import('twilio')).default;

  /** RequestClient that sends every request to `endpoint` and classifies HTTP errors (see the module docs). */
  class EndpointRequestClient extends twilio.RequestClient {
    override async request<TData>(opts: RequestOptions<TData>): Promise<{ statusCode: number; body: TData; headers: unknown }> {
      let uri = opts.uri;
      if (endpoint) {
        const original = new URL(uri);
        uri = joinEndpoint(endpoint, `${original.pathname}${original.search}`);
      }
      const res = await super.request<TData>({ ...opts, uri });
      if (res.statusCode >= 400) throw classifyTwilioError(res.statusCode, res.body, (res.headers ?? {}) as Record<string, unknown>);
      return res;
    }
  }

  const httpClient = new EndpointRequestClient({ timeout: HTTP_TIMEOUT_MS, keepAlive: true, maxSockets: Math.max(1, config.maxConcurrency) });
  return twilio(accountSid, authToken, { httpClient, autoRetry: false }) as unknown as TwilioClientLike;
}

/** The Messages.json form parameters for one message, as the SDK names them. */
function senderParams(config: AdapterConfig, prefix: string): Record<string, string> {
  const s = config.settings;
  if (s.messagingServiceSid !== undefined) return { messagingServiceSid: String(s.messagingServiceSid) };
  const from = String(s.from);
  return { from: prefix && !from.startsWith(prefix) ? `${prefix}${from}` : from };
}

/**
 * Builds a Twilio adapter for `config.channel` (sms: plain numbers; whatsapp: `whatsapp:` addresses).
 * @throws ProviderError `config` for bad settings (see {@link createClient}).
 */
export async function createTwilioProvider(config: AdapterConfig): Promise<SmsProvider | WhatsAppProvider> {
  const client = await createClient(config);
  const accountSid = String(config.settings.accountSid);

  const create = async (params: Record<string, string>): Promise<SendResult> => {
    try {
      const m = await client.messages.create(params);
      return { messageId: m.sid, acceptedAt: new Date() };
    } catch (err) {
      throw classifyThrown(err);
    }
  };
  const verify = async (): Promise<VerifyResult> => {
    try {
      const account = await client.api.v2010.accounts(accountSid).fetch();
      if (account.status !== 'active') return { ok: false, detail: `account ${accountSid} is ${account.status}` };
      return { ok: true, detail: `account ${accountSid} (${account.friendlyName}) is active` };
    } catch (err) {
      const e = classifyThrown(err);
      return { ok: false, detail: `${e.kind}: ${e.message}` };
    }
  };
  const close = async () => {};

  /** `StatusCallback` (the SDK's `statusCallback`) when a public URL is known: `<public URL>/hooks/<ref>?sb_…`. */
  const callback = (m: SmsMessage | WhatsAppMessage): Record<string, string> => {
    const url = statusCallbackUrl(m.tracking, config.ref);
    return url ? { statusCallback: url } : {};
  };
  if (config.channel === 'whatsapp') {
    return {
      channel: 'whatsapp',
      send: async (m: WhatsAppMessage) => create({ to: `whatsapp:${m.to}`, ...senderParams(config, 'whatsapp:'), ...whatsappContent(m), ...callback(m) }),
      verify,
      close,
    };
  }
  return { channel: 'sms', send: (m: SmsMessage) => create({ to: m.to, ...senderParams(config, ''), body: m.body, ...callback(m) }), verify, close };
}

/**
 * The content parameters of a WhatsApp message: `body` for text; `contentSid` + `contentVariables` for a
 * template (see the module docs).
 * @throws ProviderError `config` when the template name is not a Content SID.
 */
export function whatsappContent(m: WhatsAppMessage): Record<string, string> {
  if (!m.template) return { body: m.text ?? '' };
  if (!CONTENT_SID.test(m.template.name)) {
    throw new ProviderError('config', `Twilio WhatsApp templates are addressed by Content SID (HX + 32 hex digits); "${m.template.name}" is not one`);
  }
  const vars = Object.fromEntries(m.template.parameters.map((p, i) => [String(i + 1), p]));
  return { contentSid: m.template.name, ...(m.template.parameters.length ? { contentVariables: JSON.stringify(vars) } : {}) };
}
