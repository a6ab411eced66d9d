/**
 * Domain authentication at the provider (DESIGN §2 `domain …`): create the sender domain, ask the provider
 * to validate it, delete it. One small API per provider kind, imported lazily like the send adapters, so a
 * command that does not talk to a provider loads no SDK.
 */
import { ProviderError, type SettingValue } from './types.js';

/** A DNS record the domain owner publishes. Host names are fully qualified, lower case, without a trailing dot. */
export interface DnsRecord {
  /**
   * What the record is for: `mail_cname`, `dkim1`, `dkim2` (SendGrid, named as in its `dns` object),
   * `dkim1`..`dkim3` (SES Easy DKIM tokens), `mail_from_mx`, `mail_from_spf` (SES custom MAIL FROM).
   */
  purpose: string;
  type: 'CNAME' | 'TXT' | 'MX';
  host: string;
  /** CNAME target, TXT text, or MX exchange host. */
  value: string;
  /** MX preference (MX records only). */
  priority?: number;
}

/** The provider's side of a new sender domain. */
export interface ProviderDomain {
  /** The provider's id for it: SendGrid's numeric domain id, SES's identity name. */
  externalId: string;
  records: DnsRecord[];
}

/** The provider's verdict on one record. `reason` is the provider's own words when it is not valid. */
export interface RecordValidation {
  purpose: string;
  valid: boolean;
  reason: string | null;
}

/** The outcome of asking the provider to validate a domain. */
export interface DomainValidation {
  /** `verified`: the provider authenticates mail for it; `pending`: still checking; `failed`: the last check failed. */
  status: 'verified' | 'pending' | 'failed';
  /** True when the provider has given up (SES `FAILED`): polling again will not help. */
  final: boolean;
  results: RecordValidation[];
  /** The provider's current records, when it reports them (SES: MAIL FROM records appear once configured). */
  records?: DnsRecord[];
}

/** Options of `domain add`. */
export interface DomainOptions {
  /** SendGrid: the return-path subdomain (default: SendGrid picks `em1234`). */
  subdomain?: string;
  /** SendGrid: a custom DKIM selector (three letters or digits). */
  dkimSelector?: string;
  /** SES: a custom MAIL FROM subdomain, e.g. `mail` for `mail.example.com`. */
  mailFrom?: string;
}

/** Domain authentication calls for one provider config. Every method throws {@link ProviderError} on failure. */
export interface DomainAuthApi {
  create(domain: string, options: DomainOptions): Promise<ProviderDomain>;
  validate(externalId: string): Promise<DomainValidation>;
  /** Deletes the domain at the provider; one that is already gone counts as deleted. */
  remove(externalId: string): Promise<void>;
}

/** What a domain API is built from: a decrypted provider config. */
export interface DomainApiConfig {
  ref: string;
  settings: Record<string, SettingValue>;
  secrets: Record<string, string>;
}

/** The SPF mechanism each kind's mail needs in the sender domain's SPF record. */
export const SPF_INCLUDE: Readonly<Record<string, string>> = {
  sendgrid: 'include:sendgrid.net',
  ses: 'include:amazonses.com',
};

/** Provider kinds that authenticate sender domains. */
export const DOMAIN_AUTH_KINDS: readonly string[] = Object.keys(SPF_INCLUDE);

/**
 * Builds the domain API for a provider kind, importing its module (and SDK) now.
 * @throws ProviderError `config` for a kind without domain authentication.
 */
export async function domainAuthApi(kind: string, config: DomainApiConfig): Promise<DomainAuthApi> {
  switch (kind) {
    case 'sendgrid':
      return (await import('./sendgrid-domains.js')).createSendgridDomains(config);
    case 'ses':
      return (await import('./ses-domains.js')).createSesDomains(config);
    default:
      throw new ProviderError('config', `provider kind ${kind} does not authenticate domains (use ${DOMAIN_AUTH_KINDS.join(' or ')})`);
  }
}

/** Lower-cases a host name and drops a trailing dot. */
export function normalizeHost(host: string): string {
  return host.trim().replace(/\.$/, '').toLowerCase();
}

/**
 * Classifies an HTTP status from a provider API (401/403 → auth, 429 → rate_limited, 5xx → transient,
 * other 4xx → config) into a {@link ProviderError} with `message`.
 */
export function httpError(status: number | undefined, message: string, cause?: unknown): ProviderError {
  const code = status === undefined ? undefined : String(status);
  if (status === 401 || status === 403) return new ProviderError('auth', message, { code, cause });
  if (status === 429) return new ProviderError('rate_limited', message, { code, cause });
  if (status === undefined || status >= 500) return new ProviderError('transient', message, { code, cause });
  return new ProviderError('config', message, { code, cause });
}
