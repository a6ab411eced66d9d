// A local SendGrid domain-authentication API: a stateful stub answering with the documented shapes
// (AuthenticatedDomain with its `dns` object; validate results with reasons), behind Prism as a validating
// proxy against ../shared/contracts/tsg_domain_authentication_v3.json.
import { startJsonStub, startPrismProxy, type StubReply, type JsonRequest } from './http-stub.js';

export interface SgDomainState {
  id: number;
  domain: string;
  subdomain: string;
  selector: string;
  /** How many validate calls so far. */
  validations: number;
}

export interface SendgridDomainsServer {
  /** The Prism proxy URL: set it as the provider's `endpoint`. */
  url: string;
  requests: JsonRequest[];
  domains: Map<number, SgDomainState>;
  /** Validation outcome per domain name: valid from the n-th validate call on (`never`: always invalid). Default: never. */
  validOn: Map<string, number | 'never'>;
  prismLog(): string;
  stop(): Promise<void>;
}

const USER_ID = 4242;

function dns(d: SgDomainState, valid: boolean) {
  const base = `u${USER_ID}.wl.sendgrid.net`;
  return {
    mail_cname: { valid, type: 'cname', host: `${d.subdomain}.${d.domain}`, data: base },
    dkim1: { valid, type: 'cname', host: `${d.selector}._domainkey.${d.domain}`, data: `${d.selector}.domainkey.${base}` },
    dkim2: { valid, type: 'cname', host: `${d.selector === 's1' ? 's2' : `${d.selector}2`}._domainkey.${d.domain}`, data: `${d.selector === 's1' ? 's2' : `${d.selector}2`}.domainkey.${base}` },
  };
}

function authenticated(d: SgDomainState, valid: boolean) {
  return {
    id: d.id,
    user_id: USER_ID,
    subdomain: d.subdomain,
    domain: d.domain,
    username: 'switchboard-test',
    ips: [],
    custom_spf: false,
    default: false,
    legacy: false,
    automatic_security: true,
    valid,
    dns: dns(d, valid),
  };
}

/** Starts the stub and Prism in front of it. Requests must carry `Authorization: Bearer <apiKey>`. */
export async function startSendgridDomains(apiKey: string): Promise<SendgridDomainsServer> {
  const domains = new Map<number, SgDomainState>();
  const validOn = new Map<string, number | 'never'>();
  let nextId = 1000;
  const error = (status: number, message: string, field: string | null = null): StubReply => ({ status, body: { errors: [{ field, message }] } });

  const stub = await startJsonStub((req) => {
    if (req.headers.authorization !== `Bearer ${apiKey}`) return error(401, 'authorization required');
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (req.method === 'POST' && req.path === '/v3/whitelabel/domains') {
      if (typeof body.domain !== 'string' || !body.domain) return error(400, 'domain is required', 'domain');
      const d: SgDomainState = {
        id: nextId++,
        domain: body.domain,
        subdomain: typeof body.subdomain === 'string' ? body.subdomain : `em${nextId}`,
        selector: typeof body.custom_dkim_selector === 'string' ? body.custom_dkim_selector : 's1',
        validations: 0,
      };
      domains.set(d.id, d);
      return { status: 201, body: authenticated(d, false) };
    }
    const m = /^\/v3\/whitelabel\/domains\/(\d+)(\/validate)?$/.exec(req.path);
    const d = m ? domains.get(Number(m[1])) : undefined;
    if (!m || !d) return error(404, 'authenticated domain not found');
    if (req.method === 'POST' && m[2]) {
      d.validations++;
      const rule = validOn.get(d.domain) ?? 'never';
      const valid = rule !== 'never' && d.validations >= rule;
      const records = dns(d, valid);
      const result = (name: keyof typeof records) => ({
        valid,
        reason: valid ? null : `Expected CNAME for "${records[name].host}" to match "${records[name].data}".`,
      });
      return {
        status: 200,
        body: { id: d.id, valid, validation_results: { mail_cname: result('mail_cname'), dkim1: result('dkim1'), dkim2: result('dkim2') } },
      };
    }
    if (req.method === 'GET' && !m[2]) return { status: 200, body: authenticated(d, false) };
    if (req.method === 'DELETE' && !m[2]) {
      domains.delete(d.id);
      return { status: 204 };
    }
    return error(405, 'method not allowed');
  });
  let prism;
  try {
    prism = await startPrismProxy('tsg_domain_authentication_v3.json', stub.url);
  } catch (err) {
    await stub.stop();
    throw err;
  }
  return {
    url: prism.url,
    requests: stub.requests,
    domains,
    validOn,
    prismLog: prism.log,
    stop: async () => {
      await prism.stop();
      await stub.stop();
    },
  };
}
