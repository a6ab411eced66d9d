/**
 * Local DNS checks of a sender domain (`domain check`): every record the provider asked for, looked up with
 * `node:dns` (CNAME, TXT, MX), plus the domain's SPF record (RFC 7208: exactly one, authorizes the provider,
 * at most 10 DNS-querying terms counted through include/redirect) and its DMARC record (RFC 7489).
 */
import { isIP } from 'node:net';
import { Resolver } from 'node:dns/promises';
import { UsageError } from '../errors.js';
import { normalizeHost, type DnsRecord } from '../providers/domain-auth.js';

/** OK, Missing (no such record), Wrong value (something else found), or Error (the lookup itself failed). */
export type CheckState = 'ok' | 'missing' | 'wrong' | 'error';

/** The answers of a lookup: `found` values, or `error` (a resolver code such as ETIMEOUT) when it failed. */
interface Answer {
  found: string[];
  error?: string;
}

/** The three lookups a check needs. Host names without a trailing dot. */
export interface DnsLookup {
  cname(host: string): Promise<Answer>;
  /** TXT records, each one's strings joined. */
  txt(host: string): Promise<Answer>;
  /** MX records as `<priority> <exchange>`. */
  mx(host: string): Promise<Answer>;
  /** `ip:port` of the server asked, or `system` for the system's resolvers. */
  readonly server: string;
}

/** Lookup codes that mean "no such record" rather than "the lookup failed". */
const ABSENT = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN']);

/**
 * Parses `--resolver ip[:port]` (IPv6 as `[addr]:port`) into the form `Resolver.setServers` takes.
 * @throws UsageError naming the flag.
 */
export function parseResolver(text: string, flag = '--resolver'): string {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const ip = m?.[1];
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (!ip || !isIP(ip) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`${flag} ${text}: expected an IP address with an optional port, e.g. 1.1.1.1, 127.0.0.1:5353 or [::1]:53`);
  }
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * A {@link DnsLookup} over `node:dns`: the system's resolvers, or one server (`ip:port` from {@link parseResolver}).
 * Each query times out after `timeoutMs` (default 3000 ms) and is tried twice.
 */
export function dnsLookup(server?: string, timeoutMs = 3000): DnsLookup {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (server) resolver.setServers([server]);
  const wrap = async (q: () => Promise<string[]>): Promise<Answer> => {
    try {
      return { found: await q() };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
      return ABSENT.has(code) ? { found: [] } : { found: [], error: code };
    }
  };
  return {
    server: server ?? 'system',
    cname: (host) => wrap(async () => (await resolver.resolveCname(host)).map(normalizeHost)),
    txt: (host) => wrap(async () => (await resolver.resolveTxt(host)).map((chunks) => chunks.join(''))),
    mx: (host) => wrap(async () => (await resolver.resolveMx(host)).map((m) => `${m.priority} ${normalizeHost(m.exchange)}`)),
  };
}

/** One published record compared with what the provider asked for. */
export interface RecordCheck {
  purpose: string;
  type: DnsRecord['type'];
  host: string;
  expected: string;
  found: string[];
  state: CheckState;
  /** For `error`: the resolver's code. */
  detail: string | null;
}

/** Looks one record up and compares it (host names case-insensitively, TXT exactly after trimming). */
export async function checkRecord(dns: DnsLookup, r: DnsRecord): Promise<RecordCheck> {
  const expected = r.type === 'MX' ? `${r.priority ?? 10} ${normalizeHost(r.value)}` : r.type === 'CNAME' ? normalizeHost(r.value) : r.value.trim();
  const answer = r.type === 'CNAME' ? await dns.cname(r.host) : r.type === 'MX' ? await dns.mx(r.host) : await dns.txt(r.host);
  const found = r.type === 'TXT' ? answer.found.map((t) => t.trim()) : answer.found;
  const state: CheckState = answer.error ? 'error' : found.length === 0 ? 'missing' : found.includes(expected) ? 'ok' : 'wrong';
  return { purpose: r.purpose, type: r.type, host: r.host, expected, found, state, detail: answer.error ?? null };
}

/** RFC 7208 §4.6.4: at most 10 terms that cause DNS queries. */
export const SPF_LOOKUP_LIMIT = 10;

/** The result of checking a domain's SPF record. */
export interface SpfCheck {
  state: CheckState;
  host: string;
  /** The SPF record found (the first, if several). */
  record: string | null;
  /** The mechanism the provider needs, e.g. `include:sendgrid.net`. */
  include: string;
  includesProvider: boolean;
  /** DNS-querying terms counted through includes and redirects. */
  lookups: number;
  /** One line saying what is wrong, or null. */
  problem: string | null;
}

const isSpf = (t: string) => /^v=spf1(\s|$)/i.test(t.trim());

/**
 * Counts the DNS-querying terms of an SPF record (include, redirect, a, mx, ptr, exists), following includes
 * and redirects recursively, and reports whether `include` (e.g. `include:sendgrid.net`) appears anywhere in
 * the tree. Stops following once the count is past the limit; a loop counts its lookups once per visit.
 */
export async function spfLookups(
  txt: (host: string) => Promise<Answer>,
  record: string,
  include: string,
): Promise<{ lookups: number; includesProvider: boolean; problems: string[] }> {
  let lookups = 0;
  let includesProvider = false;
  const problems: string[] = [];
  const want = include.toLowerCase();
  const walk = async (rec: string, depth: number): Promise<void> => {
    for (const term of rec.trim().split(/\s+/).slice(1)) {
      const t = term.toLowerCase().replace(/^[+\-~?]/, '');
      if (t === want) includesProvider = true;
      const m = /^(include|redirect|exists|a|mx|ptr)(?:[:=](.*))?$/.exec(t) ?? (/^(a|mx)(\/.*)$/.exec(t) as RegExpExecArray | null);
      if (!m) continue;
      lookups++;
      const target = m[2]?.replace(/\/.*$/, '');
      if ((m[1] !== 'include' && m[1] !== 'redirect') || !target || target.includes('%')) continue;
      if (lookups > SPF_LOOKUP_LIMIT + 10 || depth > SPF_LOOKUP_LIMIT) return;
      const answer = await txt(target);
      const spf = answer.found.filter(isSpf);
      if (answer.error) problems.push(`${m[1]}:${target}: lookup failed (${answer.error})`);
      else if (spf.length !== 1) problems.push(`${m[1]}:${target} has ${spf.length} SPF records`);
      else await walk(spf[0]!, depth + 1);
    }
  };
  await walk(record, 0);
  return { lookups, includesProvider, problems };
}

/** Checks the SPF record at `domain`: exactly one, authorizes the provider (`include`), ≤ 10 lookups. */
export async function checkSpf(dns: DnsLookup, domain: string, include: string): Promise<SpfCheck> {
  const answer = await dns.txt(domain);
  const records = answer.found.filter(isSpf);
  const base = { host: domain, include, record: records[0] ?? null, includesProvider: false, lookups: 0 };
  if (answer.error) return { ...base, state: 'error', problem: `lookup failed (${answer.error})` };
  if (records.length === 0) return { ...base, state: 'missing', problem: `no SPF record; publish one that has ${include}` };
  if (records.length > 1) return { ...base, state: 'wrong', problem: `${records.length} SPF records; there must be exactly one (merge them)` };
  const r = await spfLookups(dns.txt, records[0]!, include);
  const spf = { ...base, lookups: r.lookups, includesProvider: r.includesProvider };
  if (r.lookups > SPF_LOOKUP_LIMIT) return { ...spf, state: 'wrong', problem: `${r.lookups} DNS lookups, more than the limit of ${SPF_LOOKUP_LIMIT} (receivers fail it)` };
  if (!r.includesProvider) return { ...spf, state: 'wrong', problem: `does not have ${include}` };
  if (r.problems.length) return { ...spf, state: 'wrong', problem: r.problems.join('; ') };
  return { ...spf, state: 'ok', problem: null };
}

/** The result of checking a domain's DMARC record. */
export interface DmarcCheck {
  state: CheckState;
  /** Where it was found (or first looked for): `_dmarc.<domain>`, or the parent domain's. */
  host: string;
  record: string | null;
  /** `p=` of the record: none, quarantine or reject. */
  policy: string | null;
  problem: string | null;
}

/**
 * Checks the DMARC record at `_dmarc.<domain>`, then at its parent domains (down to two labels) as
 * receivers do for the organizational domain (approximated without the public suffix list).
 */
export async function checkDmarc(dns: DnsLookup, domain: string): Promise<DmarcCheck> {
  const labels = domain.split('.');
  const first = `_dmarc.${domain}`;
  for (let i = 0; i <= Math.max(0, labels.length - 2); i++) {
    const host = `_dmarc.${labels.slice(i).join('.')}`;
    const answer = await dns.txt(host);
    if (answer.error) return { state: 'error', host, record: null, policy: null, problem: `lookup failed (${answer.error})` };
    const records = answer.found.filter((t) => /^v=DMARC1\s*(;|$)/i.test(t.trim()));
    if (records.length === 0) continue;
    const record = records[0]!;
    if (records.length > 1) return { state: 'wrong', host, record, policy: null, problem: `${records.length} DMARC records; there must be exactly one` };
    const policy = /(?:^|;)\s*p\s*=\s*([^;\s]+)/i.exec(record)?.[1]?.toLowerCase() ?? null;
    if (!policy || !['none', 'quarantine', 'reject'].includes(policy)) {
      return { state: 'wrong', host, record, policy, problem: 'no valid p= policy (none, quarantine or reject)' };
    }
    return { state: 'ok', host, record, policy, problem: null };
  }
  return { state: 'missing', host: first, record: null, policy: null, problem: 'no DMARC record; publish e.g. "v=DMARC1; p=none; rua=mailto:dmarc@<domain>"' };
}
