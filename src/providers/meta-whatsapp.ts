/**
 * Meta WhatsApp Cloud API adapter (`meta-whatsapp`), over HTTPS with `fetch` (Meta publishes no Node SDK for it).
 * Send: `POST {endpoint}/{apiVersion}/{phoneNumberId}/messages` with `Authorization: Bearer {accessToken}` and a
 * JSON body (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages; request shape checked
 * against ../shared/contracts/meta_business-messaging-api_v23.0.yaml, operation `sendMessage`). The message id is
 * `messages[0].id` (`wamid.…`).
 * Verify: `GET {endpoint}/{apiVersion}/{phoneNumberId}` (operation `getPhoneNumberById`), which sends nothing.
 *
 * Settings: phoneNumberId (digits), apiVersion (default v23.0), endpoint (default https://graph.facebook.com).
 * Secret: accessToken.
 *
 * Text messages become `{type: "text", text: {body, preview_url: false}}`. Templates become
 * `{type: "template", template: {name, language: {code, policy: "deterministic"}, components: [{type: "body",
 * parameters: [{type: "text", text}…]}]}}`. `recipient_type: "individual"` and `language.policy` are sent
 * because the published spec marks them required although the API defaults them.
 */
import type { AdapterConfig, SendResult, VerifyResult, WhatsAppMessage, WhatsAppProvider } from './types.js';
import { ProviderError } from './types.js';
import { HTTP_TIMEOUT_MS, isNetworkError, joinEndpoint, parseEndpoint, retryAfterMs, switchboardUserAgent } from './http.js';
import { opaqueCallbackData } from './tracking.js';

/** Default Graph API base URL. */
export const META_DEFAULT_ENDPOINT = 'https://graph.facebook.com';
/** Default Graph API version. */
export const META_DEFAULT_API_VERSION = 'v23.0';

/** The Graph API error body (https://developers.facebook.com/docs/graph-api/guides/error-handling). */
interface GraphError {
  error?: { message?: string; type?: string; code?: number; error_subcode?: number; error_data?: { details?: string }; fbtrace_id?: string };
}

/**
 * Cloud API error codes by DESIGN §5 kind. Source: https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
 * - auth: 0 (AuthException), 190 (access token expired/invalid), 3 (capability), 10 and 200–299 (permission),
 *   131031 (business account locked); also HTTP 401/403 without a code.
 * - rate_limited: 4 (too many calls), 80007 (WABA rate limit), 130429 (throughput limit), 131048 (spam rate
 *   limit), 131056 (pair rate limit: too many messages to the same recipient); also HTTP 429.
 * - recipient: 131026 (message undeliverable: not a WhatsApp user, old app…), 131047 (re-engagement: more than
 *   24 hours since the user last replied), 131051 (unsupported message type for the user); with opt-out:
 *   131050 (the user stopped marketing messages).
 * - transient: 1, 2 (API unknown/service), 131000 (something went wrong), 131016 (service unavailable),
 *   133004 (server temporarily unavailable); also HTTP 5xx and network failures.
 * - config: everything else (132000/132001 template parameter count or template missing, 131008/131009
 *   parameter missing/invalid, 133010 phone number not registered, 368 policy block, …).
 */
const AUTH = new Set([0, 3, 10, 190, 131031]);
const RATE = new Set([4, 80007, 130429, 131048, 131056]);
const RECIPIENT = new Set([131026, 131047, 131051]);
const OPT_OUT = new Set([131050]);
const TRANSIENT = new Set([1, 2, 131000, 131016, 133004]);

/** Classifies a Graph API error response (see the table above). `retryAfter` is the Retry-After header, if any. */
export function classifyMetaError(status: number, body: unknown, retryAfter?: string | null): ProviderError {
  const e = (body && typeof body === 'object' ? (body as GraphError).error : undefined) ?? {};
  const code = typeof e.code === 'number' ? e.code : undefined;
  const detail = e.error_data?.details ? ` (${e.error_data.details})` : '';
  const text = `${e.message ?? `HTTP ${status}`}${detail}${code !== undefined ? ` [Meta error ${code}]` : ''}`;
  const details = { code: String(code ?? status) };
  if (code !== undefined && OPT_OUT.has(code)) return new ProviderError('recipient', `recipient stopped marketing messages: ${text}`, { ...details, optOut: true });
  if (code !== undefined && RECIPIENT.has(code)) return new ProviderError('recipient', `recipient rejected: ${text}`, details);
  if ((code !== undefined && (AUTH.has(code) || (code >= 200 && code <= 299))) || (code === undefined && (status === 401 || status === 403))) {
    return new ProviderError('auth', `Meta rejected the access token: ${text}`, details);
  }
  if ((code !== undefined && RATE.has(code)) || status === 429) {
    return new ProviderError('rate_limited', `Meta rate limit: ${text}`, { ...details, retryAfterMs: retryAfterMs(retryAfter) });
  }
  if ((code !== undefined && TRANSIENT.has(code)) || status >= 500) return new ProviderError('transient', `Meta server error: ${text}`, details);
  return new ProviderError('config', `Meta refused the request: ${text}`, details);
}

/**
 * The JSON body for one message (see the module docs). `to` is E.164; Meta accepts the leading `+`. A tracked
 * message carries its correlation fields in `biz_opaque_callback_data` (echoed in status webhooks).
 */
export function metaMessageBody(m: WhatsAppMessage): Record<string, unknown> {
  const opaque = opaqueCallbackData(m.tracking);
  const base = { messaging_product: 'whatsapp', recipient_type: 'individual', to: m.to, ...(opaque ? { biz_opaque_callback_data: opaque } : {}) };
  if (!m.template) return { ...base, type: 'text', text: { body: m.text ?? '', preview_url: false } };
  const { name, language, parameters } = m.template;
  return {
    ...base,
    type: 'template',
    template: {
      name,
      language: { code: language, policy: 'deterministic' },
      ...(parameters.length ? { components: [{ type: 'body', parameters: parameters.map((text) => ({ type: 'text', text })) }] } : {}),
    },
  };
}

/**
 * Builds a Meta WhatsApp adapter.
 * @throws ProviderError `config` for a malformed endpoint, phoneNumberId or apiVersion, or a missing token.
 */
export function createMetaWhatsAppProvider(config: AdapterConfig): WhatsAppProvider {
  const s = config.settings;
  const phoneNumberId = String(s.phoneNumberId ?? '');
  const apiVersion = String(s.apiVersion ?? META_DEFAULT_API_VERSION);
  const token = config.secrets.accessToken;
  if (!/^\d+$/.test(phoneNumberId)) throw new ProviderError('config', `${config.ref}: setting phoneNumberId must be digits`);
  if (!/^v\d+\.\d+$/.test(apiVersion)) throw new ProviderError('config', `${config.ref}: setting apiVersion must look like v23.0`);
  if (!token) throw new ProviderError('config', `${config.ref}: secret accessToken is not set`);
  let base: URL;
  try {
    base = parseEndpoint(String(s.endpoint ?? META_DEFAULT_ENDPOINT));
  } catch (err) {
    throw new ProviderError('config', `${config.ref}: ${(err as Error).message}`);
  }
  const url = (path: string) => joinEndpoint(base, `/${apiVersion}/${phoneNumberId}${path}`);
  const headers = { Authorization: `Bearer ${token}`, 'User-Agent': switchboardUserAgent(), Accept: 'application/json' };

  /** One request; returns the parsed JSON body of a 2xx answer. @throws ProviderError (classified). */
  async function call(method: 'GET' | 'POST', target: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(target, {
        method,
        headers: body === undefined ? headers : { ...headers, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
      });
    } catch (err) {
      // fetch wraps network failures in a TypeError whose cause says what happened.
      const reason = isNetworkError(err) ? (((err as Error).cause as Error | undefined)?.message ?? (err as Error).message) : (err as Error).message;
      throw new ProviderError('transient', `cannot reach Meta at ${base.origin}: ${reason}`, { cause: err });
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = undefined;
    }
    if (!res.ok) throw classifyMetaError(res.status, json, res.headers.get('retry-after'));
    if (json === undefined) throw new ProviderError('transient', `Meta answered HTTP ${res.status} with a body that is not JSON`);
    return json;
  }

  return {
    channel: 'whatsapp',
    async send(message: WhatsAppMessage): Promise<SendResult> {
      const json = (await call('POST', url('/messages'), metaMessageBody(message))) as { messages?: Array<{ id?: string }> };
      const id = json.messages?.[0]?.id;
      if (!id) throw new ProviderError('transient', 'Meta accepted the request but returned no message id (messages[0].id)');
      return { messageId: id, acceptedAt: new Date() };
    },
    async verify(): Promise<VerifyResult> {
      try {
        const json = (await call('GET', url(''))) as { display_phone_number?: string; verified_name?: string; quality_rating?: string };
        const name = [json.display_phone_number, json.verified_name && `(${json.verified_name})`].filter(Boolean).join(' ');
        return { ok: true, detail: `phone number ${phoneNumberId}${name ? ` ${name}` : ''} readable with this token${json.quality_rating ? `, quality ${json.quality_rating}` : ''}` };
      } catch (err) {
        const e = err instanceof ProviderError ? err : new ProviderError('transient', (err as Error).message);
        return { ok: false, detail: `${e.kind}: ${e.message}` };
      }
    },
    async close(): Promise<void> {},
  };
}
