/**
 * SendGrid domain authentication through the official `@sendgrid/client`.
 * Wire format: https://www.twilio.com/docs/sendgrid/api-reference/domain-authentication
 * (`POST /v3/whitelabel/domains`, `POST /v3/whitelabel/domains/{id}/validate`, `DELETE /v3/whitelabel/domains/{id}`;
 * OpenAPI: ../shared/contracts/tsg_domain_authentication_v3.json).
 */
import {
  httpError,
  normalizeHost,
  type DnsRecord,
  type DomainApiConfig,
  type DomainAuthApi,
  type DomainValidation,
  type ProviderDomain,
} from './domain-auth.js';
import { ProviderError } from './types.js';

/** One entry of the `dns` object of an AuthenticatedDomain. */
interface SgDnsEntry {
  valid: boolean;
  type: string;
  host: string;
  data: string;
}

/** The parts of SendGrid's AuthenticatedDomain we use. */
interface SgDomain {
  id: number;
  domain: string;
  valid: boolean;
  dns: Record<string, SgDnsEntry>;
}

/** SendGrid's validate response. */
interface SgValidation {
  id: number;
  valid: boolean;
  validation_results?: Record<string, { valid?: boolean; reason?: string | null }>;
}

type SgClient = {
  setApiKey(key: string): void;
  setDefaultRequest(key: 'baseUrl', value: string): unknown;
  request(req: { method: 'GET' | 'POST' | 'DELETE'; url: string; body?: unknown }): Promise<[{ statusCode: number }, unknown]>;
};

/** Maps the `dns` object (`mail_cname`, `dkim1`, `dkim2`, or `mail_server`/`subdomain_spf`/`dkim` without automatic security). */
function toRecords(dns: Record<string, SgDnsEntry>): DnsRecord[] {
  const out: DnsRecord[] = [];
  for (const [purpose, e] of Object.entries(dns ?? {})) {
    const type = e.type.toUpperCase();
    if (type !== 'CNAME' && type !== 'TXT' && type !== 'MX') continue;
    out.push({ purpose, type, host: normalizeHost(e.host), value: type === 'TXT' ? e.data : normalizeHost(e.data), ...(type === 'MX' ? { priority: 10 } : {}) });
  }
  return out;
}

function failure(err: unknown, what: string): ProviderError {
  const e = err as { code?: number | string; response?: { body?: { errors?: Array<{ message?: string; field?: string | null }> } }; message?: string };
  const status = typeof e.code === 'number' ? e.code : undefined;
  const reasons = (e.response?.body?.errors ?? []).map((x) => (x.field ? `${x.field}: ${x.message}` : x.message)).filter(Boolean);
  const detail = reasons.length ? reasons.join('; ') : status ? `HTTP ${status}` : (e.message ?? String(err));
  return httpError(status, `SendGrid ${what}: ${detail}`, err);
}

/**
 * Builds the SendGrid domain API from a config: secret `apiKey`, setting `endpoint` (default
 * https://api.sendgrid.com; the EU region is https://api.eu.sendgrid.com).
 */
export async function createSendgridDomains(config: DomainApiConfig): Promise<DomainAuthApi> {
  const { Client } = (await import('@sendgrid/client')).default as unknown as { Client: new () => SgClient };
  const client = new Client();
  const apiKey = config.secrets.apiKey;
  if (!apiKey) throw new ProviderError('config', `${config.ref}: secret apiKey is not set`);
  // setApiKey resets the base URL, so the endpoint is set after it (../shared/contracts/README.md).
  client.setApiKey(apiKey);
  if (typeof config.settings.endpoint === 'string' && config.settings.endpoint) client.setDefaultRequest('baseUrl', config.settings.endpoint);

  const call = async <T>(what: string, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<T> => {
    try {
      const [, data] = await client.request({ method, url, ...(body !== undefined ? { body } : {}) });
      return data as T;
    } catch (err) {
      throw failure(err, what);
    }
  };

  return {
    async create(domain, options): Promise<ProviderDomain> {
      const body: Record<string, unknown> = { domain, automatic_security: true };
      if (options.subdomain) body.subdomain = options.subdomain;
      if (options.dkimSelector) body.custom_dkim_selector = options.dkimSelector;
      const d = await call<SgDomain>('create domain', 'POST', '/v3/whitelabel/domains', body);
      if (typeof d?.id !== 'number' || !d.dns) throw new ProviderError('transient', 'SendGrid create domain: the answer has no id or dns records');
      return { externalId: String(d.id), records: toRecords(d.dns) };
    },

    async validate(externalId): Promise<DomainValidation> {
      const v = await call<SgValidation>('validate domain', 'POST', `/v3/whitelabel/domains/${encodeURIComponent(externalId)}/validate`);
      const results = Object.entries(v.validation_results ?? {}).map(([purpose, r]) => ({
        purpose,
        valid: r.valid === true,
        reason: r.valid === true ? null : (r.reason ?? 'not valid'),
      }));
      return { status: v.valid ? 'verified' : 'failed', final: false, results };
    },

    async remove(externalId): Promise<void> {
      try {
        await client.request({ method: 'DELETE', url: `/v3/whitelabel/domains/${encodeURIComponent(externalId)}` });
      } catch (err) {
        if ((err as { code?: number }).code === 404) return;
        throw failure(err, 'delete domain');
      }
    },
  };
}
