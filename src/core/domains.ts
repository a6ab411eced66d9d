/**
 * Sender domains (domain authentication): a tenant's (or the system defaults') domain, created at a SendGrid or
 * SES provider, with the DNS records the provider asked for. `add` creates it at the provider and stores the
 * records; `check` looks them up in DNS; `verify` asks the provider; `waitForVerification` polls with backoff.
 * Statuses: `pending` (not yet validated), `verified`, `failed` (the provider's last validation failed).
 */
import type { Channel, CoreContext } from './context.js';
import { recordAudit } from './audit.js';
import { deleteDomain, insertDomain, selectDomainById, selectDomainExists, selectDomains, selectDomainsOfProviders, updateDomainChecked, type DomainRow } from '../store/repos/domains.js';
import { NotFoundError, OperationFailed, UsageError } from '../errors.js';
import { checkTenantId, getTenant, SYSTEM } from './tenants.js';
import { configSecrets, formatRef, getProvider, listProviders, type ProviderConfig } from './providers.js';
import { requireKey } from './vault.js';
import { checkDmarc, checkRecord, checkSpf, type DmarcCheck, type DnsLookup, type RecordCheck, type SpfCheck } from './dns-check.js';
import {
  domainAuthApi,
  DOMAIN_AUTH_KINDS,
  SPF_INCLUDE,
  type DnsRecord,
  type DomainAuthApi,
  type DomainOptions,
  type DomainValidation,
} from '../providers/domain-auth.js';
import { ProviderError } from '../providers/types.js';

/** Domain statuses. */
export type DomainStatus = 'pending' | 'verified' | 'failed';

/** A stored sender domain. */
export interface Domain {
  id: number;
  /** Null for a system default's domain. */
  tenantId: string | null;
  /** The tenant id, or `system`. */
  owner: string;
  domain: string;
  /** The provider config it was created with; null if that config was removed since. */
  providerRef: string | null;
  providerKind: string | null;
  /** The provider's id for it (SendGrid domain id, SES identity). */
  externalId: string | null;
  records: DnsRecord[];
  status: DomainStatus;
  /** One line on the last check or validation. */
  detail: string | null;
  /** When it was last checked in DNS or validated at the provider (ISO 8601). */
  checkedAt: string | null;
  createdAt: string;
}

/** A host name: labels of letters, digits and hyphens, at least two labels, at most 253 characters. */
const DOMAIN_PATTERN = /^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;

/**
 * Normalizes (lower case, no trailing dot) and checks a domain name.
 * @throws UsageError naming `field`.
 */
export function checkDomainName(name: string, field = '<domain>'): string {
  const d = name.trim().replace(/\.$/, '').toLowerCase();
  if (!DOMAIN_PATTERN.test(d)) throw new UsageError(`${field} "${name}" is not a domain name (e.g. acme-dental.example)`);
  return d;
}

function toDomain(row: DomainRow): Domain {
  const providerRef = row.p_name && row.p_channel ? formatRef({ tenantId: row.p_tenant, channel: row.p_channel as Channel, name: row.p_name }) : null;
  return {
    id: row.id,
    tenantId: row.tenant_id,
    owner: row.tenant_id ?? SYSTEM,
    domain: row.domain,
    providerRef,
    providerKind: row.provider_kind,
    externalId: row.external_id,
    records: JSON.parse(row.records) as DnsRecord[],
    status: row.status as DomainStatus,
    detail: row.detail,
    checkedAt: row.checked_at,
    createdAt: row.created_at,
  };
}

/** Which owner a command means: a tenant id, `null` for the system defaults, or undefined for "any". */
export type Owner = string | null | undefined;

/** Sender domains, by owner (system first) and name. `owner` undefined: all. */
export async function listDomains(ctx: CoreContext, owner?: Owner): Promise<Domain[]> {
  const rows = await selectDomains(ctx.sql, owner === undefined ? undefined : (owner ?? ''));
  return rows.map((r) => toDomain(r));
}

/**
 * Finds a stored domain by name; `owner` picks one when several tenants added the same name.
 * @throws NotFoundError if there is none; UsageError if the name is ambiguous without `owner`.
 */
export async function getDomain(ctx: CoreContext, name: string, owner?: Owner): Promise<Domain> {
  const domain = checkDomainName(name);
  const matches = (await listDomains(ctx, owner)).filter((d) => d.domain === domain);
  if (matches.length === 0) {
    const whose = owner === undefined ? '' : ` for ${owner ?? SYSTEM}`;
    throw new NotFoundError(`no domain ${domain}${whose} (see \`switchboard domain list\`)`);
  }
  if (matches.length > 1) {
    throw new UsageError(`domain ${domain} was added for ${matches.map((d) => d.owner).join(' and ')}: give --tenant <id> or --system`);
  }
  return matches[0]!;
}

/** What `domain add` takes. */
export interface NewDomain extends DomainOptions {
  /** The owning tenant, or null for the system defaults. */
  tenantId: string | null;
  domain: string;
  /** The SendGrid or SES provider config to create it with; default: the owner's only such config. */
  providerRef?: string;
}

/** The owner's email configs of a kind that authenticates domains. */
async function domainProviders(ctx: CoreContext, tenantId: string | null): Promise<ProviderConfig[]> {
  return (await listProviders(ctx, { tenantId, channel: 'email' })).filter((p) => DOMAIN_AUTH_KINDS.includes(p.kind));
}

async function pickProvider(ctx: CoreContext, tenantId: string | null, ref: string | undefined): Promise<ProviderConfig> {
  if (ref) {
    const p = await getProvider(ctx, ref);
    if (!DOMAIN_AUTH_KINDS.includes(p.kind)) {
      throw new UsageError(`--provider ${ref} is kind ${p.kind}; domains are authenticated at a ${DOMAIN_AUTH_KINDS.join(' or ')} provider`);
    }
    if (p.tenantId !== null && p.tenantId !== tenantId) throw new UsageError(`--provider ${ref} belongs to tenant ${p.tenantId}, not ${tenantId ?? SYSTEM}`);
    return p;
  }
  const own = await domainProviders(ctx, tenantId);
  if (own.length === 1) return own[0]!;
  if (own.length > 1) throw new UsageError(`--provider is required: ${tenantId ?? SYSTEM} has ${own.map((p) => p.ref).join(', ')}`);
  throw new UsageError(`--provider <ref> is required: ${tenantId ?? SYSTEM} has no ${DOMAIN_AUTH_KINDS.join(' or ')} email provider of its own`);
}

/** Turns a provider failure into a one-line OperationFailed (exit 1); other errors pass through. */
function providerFailure(err: unknown, ref: string): unknown {
  if (err instanceof ProviderError) return new OperationFailed(`${ref}: ${err.message}${err.kind === 'auth' ? ' (check the API key)' : ''}`);
  return err;
}

async function apiFor(ctx: CoreContext, p: ProviderConfig): Promise<DomainAuthApi> {
  const secrets = await configSecrets(ctx, await requireKey(ctx), p);
  try {
    return await domainAuthApi(p.kind, { ref: p.ref, settings: p.settings, secrets });
  } catch (err) {
    throw providerFailure(err, p.ref);
  }
}

async function providerOf(ctx: CoreContext, d: Domain): Promise<ProviderConfig> {
  if (!d.providerRef) {
    throw new OperationFailed(`domain ${d.domain}: its provider config was removed; remove the domain (\`domain remove ${d.domain} --local\`) and add it again`);
  }
  return getProvider(ctx, d.providerRef);
}

/**
 * Creates the domain at the provider (SendGrid: automatic security; SES: Easy DKIM) and stores it with the
 * records to publish. Audited as `domain.add`.
 * @throws UsageError (bad name or options, no suitable provider, already added), NotFoundError (tenant,
 *   provider), KeyError, OperationFailed (the provider refused; nothing stored).
 */
export async function addDomain(ctx: CoreContext, input: NewDomain): Promise<Domain> {
  const domain = checkDomainName(input.domain);
  if (input.tenantId !== null) {
    checkTenantId(input.tenantId, '--tenant');
    await getTenant(ctx, input.tenantId);
  }
  const provider = await pickProvider(ctx, input.tenantId, input.providerRef);
  if (provider.kind !== 'sendgrid' && (input.subdomain || input.dkimSelector)) throw new UsageError('--subdomain and --dkim-selector are SendGrid options');
  if (provider.kind !== 'ses' && input.mailFrom) throw new UsageError('--mail-from is an SES option');
  for (const [flag, v, re] of [
    ['--subdomain', input.subdomain, /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/],
    ['--mail-from', input.mailFrom, /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/],
    ['--dkim-selector', input.dkimSelector, /^[a-z0-9]{3}$/],
  ] as const) {
    if (v !== undefined && !re.test(v)) throw new UsageError(`${flag} "${v}": ${flag === '--dkim-selector' ? 'three lower-case letters or digits' : 'one DNS label (letters, digits, hyphens)'}`);
  }
  if (await selectDomainExists(ctx.sql, input.tenantId, domain)) {
    throw new UsageError(`domain ${domain} is already added for ${input.tenantId ?? SYSTEM} (see \`switchboard domain records ${domain}\`)`);
  }
  const api = await apiFor(ctx, provider);
  let created;
  try {
    created = await api.create(domain, { subdomain: input.subdomain, dkimSelector: input.dkimSelector, mailFrom: input.mailFrom });
  } catch (err) {
    throw providerFailure(err, provider.ref);
  }
  const now = ctx.clock.now().toISOString();
  const id = await ctx.sql.tx(async (t) => {
    const newId = await insertDomain(t, {
      tenantId: input.tenantId,
      domain,
      providerId: provider.id,
      providerKind: provider.kind,
      externalId: created.externalId,
      records: JSON.stringify(created.records),
      at: now,
    });
    // Added meanwhile by another process (the check above ran before the provider call): refused as that check would.
    if (newId === undefined) throw new UsageError(`domain ${domain} is already added for ${input.tenantId ?? SYSTEM} (see \`switchboard domain records ${domain}\`)`);
    const options = Object.entries({ subdomain: input.subdomain, dkimSelector: input.dkimSelector, mailFrom: input.mailFrom }).filter(([, v]) => v !== undefined);
    await recordAudit(ctx, t, 'domain.add', domain, input.tenantId, ['domain', 'provider', ...options.map(([k]) => k)]);
    return newId;
  });
  return toDomain((await selectDomainById(ctx.sql, id))!);
}

/** Everything `domain check` found. `ok` is true when every required check passed (records and SPF; DMARC is recommended). */
export interface DomainCheck {
  domain: string;
  owner: string;
  providerKind: string | null;
  resolver: string;
  records: RecordCheck[];
  spf: SpfCheck | null;
  dmarc: DmarcCheck;
  ok: boolean;
  /** Names of the failed required checks, e.g. `CNAME s1._domainkey.example.com`, `SPF`. */
  failed: string[];
  checkedAt: string;
}

async function setChecked(ctx: CoreContext, id: number, detail: string, status?: DomainStatus, records?: DnsRecord[]): Promise<string> {
  const now = ctx.clock.now().toISOString();
  await updateDomainChecked(ctx.sql, id, { at: now, detail, status: status ?? null, records: records ? JSON.stringify(records) : null });
  return now;
}

/**
 * Looks every record of a stored domain up in DNS, plus SPF (required, when the provider kind is known) and
 * DMARC (recommended). Records the time and a one-line summary on the domain; the status is left to `verify`.
 * @throws NotFoundError, UsageError (ambiguous name).
 */
export async function checkDomain(ctx: CoreContext, name: string, owner: Owner, dns: DnsLookup): Promise<DomainCheck> {
  const d = await getDomain(ctx, name, owner);
  const records = await Promise.all(d.records.map((r) => checkRecord(dns, r)));
  const include = d.providerKind ? SPF_INCLUDE[d.providerKind] : undefined;
  const [spf, dmarc] = await Promise.all([include ? checkSpf(dns, d.domain, include) : Promise.resolve(null), checkDmarc(dns, d.domain)]);
  const failed = [...records.filter((r) => r.state !== 'ok').map((r) => `${r.type} ${r.host}`), ...(spf && spf.state !== 'ok' ? ['SPF'] : [])];
  const okCount = records.filter((r) => r.state === 'ok').length;
  const summary = `dns: ${okCount}/${records.length} records OK, SPF ${spf?.state ?? 'not checked'}, DMARC ${dmarc.state}${dmarc.policy ? ` (p=${dmarc.policy})` : ''}`;
  const checkedAt = await setChecked(ctx, d.id, summary);
  return { domain: d.domain, owner: d.owner, providerKind: d.providerKind, resolver: dns.server, records, spf, dmarc, ok: failed.length === 0, failed, checkedAt };
}

/** One record's provider verdict, joined with the stored record. */
export interface VerifyRecord {
  purpose: string;
  type: string | null;
  host: string | null;
  valid: boolean;
  reason: string | null;
}

/** The outcome of `domain verify`. */
export interface DomainVerification {
  domain: string;
  owner: string;
  providerRef: string;
  status: DomainStatus;
  /** The provider has given up (polling will not help). */
  final: boolean;
  records: VerifyRecord[];
  checkedAt: string;
}

/**
 * Asks the provider to validate the domain (SendGrid `POST …/validate`, SES `GetEmailIdentity`) and stores the
 * resulting status, time and records.
 * @throws NotFoundError, UsageError, KeyError, OperationFailed (provider unreachable or refused, or its config was removed).
 */
export async function verifyDomain(ctx: CoreContext, name: string, owner: Owner): Promise<DomainVerification> {
  const d = await getDomain(ctx, name, owner);
  const provider = await providerOf(ctx, d);
  const api = await apiFor(ctx, provider);
  let v: DomainValidation;
  try {
    v = await api.validate(d.externalId ?? d.domain);
  } catch (err) {
    throw providerFailure(err, provider.ref);
  }
  const stored = v.records ?? d.records;
  const records = v.results.map((r) => {
    const rec = stored.find((s) => s.purpose === r.purpose);
    return { purpose: r.purpose, type: rec?.type ?? null, host: rec?.host ?? null, valid: r.valid, reason: r.reason };
  });
  const bad = records.filter((r) => !r.valid);
  const detail = `${provider.kind}: ${v.status}${bad.length ? ` (${bad.map((r) => `${r.purpose}: ${r.reason}`).join('; ')})` : ''}`;
  const checkedAt = await setChecked(ctx, d.id, detail, v.status, v.records);
  return { domain: d.domain, owner: d.owner, providerRef: provider.ref, status: v.status, final: v.final, records, checkedAt };
}

/** First poll delay of {@link waitForVerification} in ms; it doubles each poll up to the interval. */
export const FIRST_POLL_DELAY_MS = 5_000;

/** The delay before poll number `attempt + 1` (attempt ≥ 1): 5 s doubling, capped by `intervalMs`. */
export function pollDelay(attempt: number, intervalMs: number): number {
  return Math.min(intervalMs, FIRST_POLL_DELAY_MS * 2 ** Math.max(0, attempt - 1));
}

/** The outcome of {@link waitForVerification}. */
export interface WaitResult {
  verification: DomainVerification;
  attempts: number;
  timedOut: boolean;
  elapsedMs: number;
}

/**
 * Validates at the provider until the domain is verified, the provider gives up, `timeoutMs` passes or
 * `signal` aborts; waits {@link pollDelay} between polls (never past the deadline; the last poll is at it).
 * `onPoll` is called after every poll with the next delay (null when done).
 * @throws as {@link verifyDomain}.
 */
export async function waitForVerification(
  ctx: CoreContext,
  name: string,
  owner: Owner,
  opts: { timeoutMs: number; intervalMs: number; signal?: AbortSignal; onPoll?(v: DomainVerification, attempt: number, nextDelayMs: number | null): void },
): Promise<WaitResult> {
  const start = ctx.clock.now().getTime();
  const deadline = start + opts.timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const v = await verifyDomain(ctx, name, owner);
    const now = ctx.clock.now().getTime();
    const done = v.status === 'verified' || v.final || now >= deadline || opts.signal?.aborted === true;
    const delay = done ? null : Math.min(pollDelay(attempt, opts.intervalMs), deadline - now);
    opts.onPoll?.(v, attempt, delay);
    if (delay === null) {
      return { verification: v, attempts: attempt, timedOut: v.status !== 'verified' && !v.final && now >= deadline, elapsedMs: now - start };
    }
    await ctx.clock.sleep(delay, opts.signal);
  }
}

/** What `domain remove` did at the provider. */
export interface RemovedDomain {
  domain: string;
  owner: string;
  /** `deleted` at the provider, or `skipped` (its provider config was removed, or `localOnly`). */
  provider: 'deleted' | 'skipped';
}

/**
 * Deletes the domain at the provider (unless `localOnly`, or its provider config is gone), then locally.
 * Audited as `domain.remove`.
 * @throws NotFoundError, UsageError, KeyError, OperationFailed (the provider refused: nothing removed locally).
 */
export async function removeDomain(ctx: CoreContext, name: string, owner: Owner, localOnly = false): Promise<RemovedDomain> {
  const d = await getDomain(ctx, name, owner);
  let remote: RemovedDomain['provider'] = 'skipped';
  if (!localOnly && d.providerRef) {
    const provider = await getProvider(ctx, d.providerRef);
    const api = await apiFor(ctx, provider);
    try {
      await api.remove(d.externalId ?? d.domain);
    } catch (err) {
      throw providerFailure(err, provider.ref);
    }
    remote = 'deleted';
  }
  await ctx.sql.tx(async (t) => {
    if (!(await deleteDomain(t, d.id))) throw new NotFoundError(`no domain ${d.domain} for ${d.owner} (removed meanwhile; see \`switchboard domain list\`)`);
    await recordAudit(ctx, t, 'domain.remove', d.domain, d.tenantId, remote === 'deleted' ? ['provider'] : []);
  });
  return { domain: d.domain, owner: d.owner, provider: remote };
}

/** A provider config whose `from` address is in a domain not verified for it. */
export interface UnverifiedSender {
  ref: string;
  tenantId: string | null;
  kind: string;
  from: string;
  domain: string;
  /** `missing`: no such domain added for this provider; otherwise the domain's status. */
  status: 'missing' | 'pending' | 'failed';
  /** One line for a warning: what is wrong and the command that fixes it. */
  message: string;
}

/**
 * SendGrid and SES configs whose `from` domain is not verified with that config: no domain added (the
 * domain itself or a parent of it), or one that is pending or failed. For `provider list`, `doctor`, and
 * before a batch starts. `refs` limits it to those configs (e.g. a route).
 */
export async function unverifiedSenderDomains(ctx: CoreContext, filter: { refs?: readonly string[] } = {}): Promise<UnverifiedSender[]> {
  const out: UnverifiedSender[] = [];
  const domains = await selectDomainsOfProviders(ctx.sql);
  for (const p of await listProviders(ctx, { channel: 'email' })) {
    if (!DOMAIN_AUTH_KINDS.includes(p.kind) || (filter.refs && !filter.refs.includes(p.ref))) continue;
    const from = String(p.settings.from ?? '');
    const domain = from.split('@')[1]?.toLowerCase();
    if (!domain) continue;
    const covering = domains.filter((d) => d.provider_id === p.id && (domain === d.domain || domain.endsWith(`.${d.domain}`)));
    if (covering.some((d) => d.status === 'verified')) continue;
    const status = covering.find((d) => d.status === 'failed') ? 'failed' : covering.length ? 'pending' : 'missing';
    const owner = p.tenantId ? `--tenant ${p.tenantId}` : '--system';
    const message =
      status === 'missing'
        ? `${p.ref}: sender domain ${domain} (from ${from}) is not authenticated at ${p.kind}; run: switchboard domain add ${owner} ${domain} --provider ${p.ref}`
        : `${p.ref}: sender domain ${covering[0]!.domain} is ${status} at ${p.kind}; run: switchboard domain check ${covering[0]!.domain}, then domain verify`;
    out.push({ ref: p.ref, tenantId: p.tenantId, kind: p.kind, from, domain, status, message });
  }
  return out;
}

/** Quotes TXT data for a zone file: `"` and `\` escaped, split into strings of at most 255 characters. */
function zoneTxt(text: string): string {
  const esc = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  const parts: string[] = [];
  for (let i = 0; i < text.length || i === 0; i += 255) parts.push(esc(text.slice(i, i + 255)));
  return parts.join(' ');
}

/**
 * A BIND zone-file snippet of the domain's records (absolute names, TTL 3600), with the recommended SPF and
 * DMARC records as comments (they must be merged with any the domain already has).
 */
export function zoneSnippet(d: Domain, ttl = 3600): string {
  const width = Math.max(...d.records.map((r) => r.host.length + 1), 10);
  const lines = [`; ${d.domain}: records for ${d.providerKind ?? 'the provider'} (${d.providerRef ?? 'provider config removed'}), switchboard domain records --format zone`];
  for (const r of d.records) {
    const data = r.type === 'TXT' ? zoneTxt(r.value) : r.type === 'MX' ? `${r.priority ?? 10} ${r.value}.` : `${r.value}.`;
    lines.push(`${`${r.host}.`.padEnd(width)} ${ttl} IN ${r.type.padEnd(5)} ${data}`);
  }
  const include = d.providerKind ? SPF_INCLUDE[d.providerKind] : undefined;
  if (include) lines.push(`; recommended, merged into the one SPF record of the domain: ${d.domain}. ${ttl} IN TXT "v=spf1 ${include} ~all"`);
  lines.push(`; recommended if there is none yet: _dmarc.${d.domain}. ${ttl} IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@${d.domain}"`);
  return lines.join('\n');
}
