/**
 * `switchboard domain add|list|records|check|verify|remove`: sender domains authenticated at SendGrid or SES.
 * Exit codes: `check` 0 only when every required record is OK, 1 otherwise; `verify` 0 when the provider says
 * verified, 1 when not (or `--wait` timed out); 2 usage errors.
 */
import type { Command } from 'commander';
import type { CliContext, Io } from './context.js';
import { action, examples } from './command.js';
import { confirmOrYes } from './prompt.js';
import {
  addDomain,
  checkDomain,
  getDomain,
  listDomains,
  removeDomain,
  verifyDomain,
  waitForVerification,
  zoneSnippet,
  type Domain,
  type DomainCheck,
  type DomainVerification,
  type Owner,
} from '../core/domains.js';
import { dnsLookup, parseResolver, type CheckState } from '../core/dns-check.js';
import { OperationFailed, UsageError } from '../errors.js';
import { parseDuration } from '../core/time.js';
import { checkTenantId } from '../core/tenants.js';
import type { DnsRecord } from '../providers/domain-auth.js';
import { dnsRecordJson, domainJson } from './json.js';

/** `domain check` in the JSON vocabulary. */
function checkJson(c: DomainCheck, tenantId: string | null) {
  return {
    domain: c.domain,
    tenantId,
    providerKind: c.providerKind,
    resolver: c.resolver,
    ok: c.ok,
    failed: c.failed,
    records: c.records,
    spf: c.spf ? { state: c.spf.state, host: c.spf.host, record: c.spf.record, include: c.spf.include, includesProvider: c.spf.includesProvider, lookupCount: c.spf.lookups, problem: c.spf.problem } : null,
    dmarc: c.dmarc,
    checkedAt: c.checkedAt,
  };
}

/** `domain verify` in the JSON vocabulary; `wait` is what `--wait` adds (else one poll, no time limit). */
function verificationJson(v: DomainVerification, tenantId: string | null, wait: { attempts: number; timedOut: boolean; elapsedMs: number | null }) {
  return {
    domain: v.domain,
    tenantId,
    provider: v.providerRef,
    status: v.status,
    final: v.final,
    records: v.records,
    checkedAt: v.checkedAt,
    attemptCount: wait.attempts,
    timedOut: wait.timedOut,
    elapsedMs: wait.elapsedMs,
  };
}

interface OwnerFlags {
  tenant?: string;
  system?: boolean;
}

/** `--tenant <id>` / `--system` / neither (any owner). */
function ownerFlag(opts: OwnerFlags, required = false): Owner {
  if (opts.tenant && opts.system) throw new UsageError('give only one of --tenant <id> and --system');
  if (opts.tenant) {
    checkTenantId(opts.tenant, '--tenant');
    return opts.tenant;
  }
  if (opts.system) return null;
  if (required) throw new UsageError('give --tenant <id> (or --system for the system defaults)');
  return undefined;
}

const withOwner = (cmd: Command) =>
  cmd.option('--tenant <id>', 'the tenant the domain belongs to (needed only if several have it)').option('--system', 'the system defaults\' domain');

const STATE_TEXT: Record<CheckState, string> = { ok: 'OK', missing: 'Missing', wrong: 'Wrong value', error: 'Lookup failed' };

function recordValue(r: DnsRecord): string {
  return r.type === 'MX' ? `${r.priority ?? 10} ${r.value}` : r.value;
}

function recordsTable(cli: CliContext, records: DnsRecord[]): string {
  return cli.out.table(['TYPE', 'HOST', 'VALUE'], records.map((r) => [r.type, r.host, recordValue(r)]));
}

function stateText(cli: CliContext, s: CheckState, required = true): string {
  const text = STATE_TEXT[s] + (s !== 'ok' && !required ? ' (recommended)' : '');
  return s === 'ok' ? cli.out.c.green(text) : required ? cli.out.c.red(text) : cli.out.c.yellow(text);
}

function presentCheck(cli: CliContext, c: DomainCheck): string {
  const rows: unknown[][] = c.records.map((r) => [stateText(cli, r.state), r.type, r.host, r.expected, r.state === 'error' ? r.detail : r.found.join(', ') || '-']);
  if (c.spf) {
    rows.push([
      stateText(cli, c.spf.state),
      'SPF',
      c.spf.host,
      `one record with ${c.spf.include}, <= 10 lookups`,
      c.spf.record ? `${c.spf.record} (${c.spf.lookups} lookup${c.spf.lookups === 1 ? '' : 's'})` : '-',
    ]);
  }
  rows.push([stateText(cli, c.dmarc.state, false), 'DMARC', c.dmarc.host, 'v=DMARC1; p=none|quarantine|reject', c.dmarc.record ?? '-']);
  const notes = [c.spf?.problem ? `SPF: ${c.spf.problem}` : '', c.dmarc.problem ? `DMARC: ${c.dmarc.problem}` : '', c.dmarc.policy ? `DMARC policy: ${c.dmarc.policy}` : ''].filter(Boolean);
  const verdict = c.ok ? cli.out.c.green('All required records are in place.') : cli.out.c.red(`${c.failed.length} required check${c.failed.length > 1 ? 's' : ''} failed: ${c.failed.join(', ')}`);
  return [`${c.domain} (${c.owner}, ${c.providerKind ?? 'provider unknown'}), resolver ${c.resolver}`, cli.out.table(['STATUS', 'TYPE', 'HOST', 'EXPECTED', 'FOUND'], rows), ...notes, verdict].join('\n');
}

function presentVerification(cli: CliContext, v: DomainVerification): string {
  const status = v.status === 'verified' ? cli.out.c.green(v.status) : cli.out.c.red(v.status);
  return [
    `${v.domain} (${v.owner}) at ${v.providerRef}: ${status}`,
    cli.out.table(
      ['RESULT', 'RECORD', 'TYPE', 'HOST', 'REASON'],
      v.records.map((r) => [r.valid ? cli.out.c.green('valid') : cli.out.c.red('invalid'), r.purpose, r.type, r.host, r.reason]),
    ),
  ].join('\n');
}

function resolverOf(text: string | undefined) {
  return dnsLookup(text === undefined ? undefined : parseResolver(text));
}

/** Registers the `domain` commands. */
export function registerDomain(program: Command, io: Io): void {
  const domain = program.command('domain').description('authenticate sender domains at SendGrid or SES and check their DNS records');
  examples(domain, ['switchboard domain add --tenant acme-dental acme-dental.example --provider acme-dental/email/sendgrid', 'switchboard domain check acme-dental.example', 'switchboard domain verify acme-dental.example --wait']);

  examples(
    domain
      .command('add <domain>')
      .description('create the domain at the provider (SendGrid: automatic security; SES: Easy DKIM) and show the DNS records to publish')
      .option('--tenant <id>', 'the tenant that sends from it')
      .option('--system', 'a domain of the system defaults')
      .option('--provider <ref>', 'the sendgrid or ses provider config (default: the owner\'s only one)')
      .option('--subdomain <label>', 'SendGrid: return-path subdomain (default: chosen by SendGrid)')
      .option('--dkim-selector <abc>', 'SendGrid: custom DKIM selector, three letters or digits')
      .option('--mail-from <label>', 'SES: custom MAIL FROM subdomain, e.g. mail (adds an MX and an SPF record)')
      .action(
        action<OwnerFlags & { provider?: string; subdomain?: string; dkimSelector?: string; mailFrom?: string }>(io, async (cli, [name], opts) => {
          const owner = ownerFlag(opts, true) as string | null;
          const d = await addDomain(await cli.core(), {
            tenantId: owner,
            domain: name!,
            providerRef: opts.provider,
            subdomain: opts.subdomain,
            dkimSelector: opts.dkimSelector,
            mailFrom: opts.mailFrom,
          });
          cli.out.result(domainJson(d), () =>
            [
              `Added ${d.domain} for ${d.owner} at ${d.providerRef} (status ${d.status}). Publish these records:`,
              recordsTable(cli, d.records),
              `Then: switchboard domain check ${d.domain}   and   switchboard domain verify ${d.domain} --wait`,
            ].join('\n'),
          );
        }),
      ),
    [
      'switchboard domain add --tenant acme-dental acme-dental.example --provider acme-dental/email/sendgrid',
      'switchboard domain add --tenant acme-dental acme-dental.example --provider acme-dental/email/ses --mail-from mail',
    ],
  );

  examples(
    withOwner(domain.command('list').description('list sender domains with status (pending, verified, failed) and last check')).action(
      action<OwnerFlags>(io, async (cli, _args, opts) => {
        const list = await listDomains(await cli.core(), ownerFlag(opts));
        cli.out.result(list.map(domainJson), () =>
          cli.out.list(
            ['DOMAIN', 'OWNER', 'PROVIDER', 'STATUS', 'LAST CHECK', 'DETAIL'],
            list.map((d) => [d.domain, d.owner, d.providerRef ?? `${d.providerKind} (config removed)`, d.status, cli.out.time(d.checkedAt) ?? 'never', d.detail]),
            'No domains. Add one with: switchboard domain add --tenant <id> <domain> --provider <ref>',
          ),
        );
      }),
    ),
    ['switchboard domain list', 'switchboard domain list --tenant acme-dental --json'],
  );

  examples(
    withOwner(domain.command('records <domain>').description('the DNS records to publish: a table, JSON, or a BIND zone-file snippet'))
      .option('--format <format>', 'table, json or zone', 'table')
      .action(
        action<OwnerFlags & { format: string }>(io, async (cli, [name], opts) => {
          if (!['table', 'json', 'zone'].includes(opts.format)) throw new UsageError(`--format ${opts.format}: expected table, json or zone`);
          const d: Domain = await getDomain(await cli.core(), name!, ownerFlag(opts));
          if (opts.format === 'zone') {
            cli.io.stdout.write(zoneSnippet(d) + '\n');
            return;
          }
          if (opts.format === 'json') {
            cli.io.stdout.write(JSON.stringify(d.records.map(dnsRecordJson), null, 2) + '\n');
            return;
          }
          cli.out.result(d.records.map(dnsRecordJson), () => recordsTable(cli, d.records));
        }),
      ),
    ['switchboard domain records acme-dental.example', 'switchboard domain records acme-dental.example --format zone >> acme-dental.example.zone'],
  );

  examples(
    withOwner(domain.command('check <domain>').description('look every record up in DNS: OK, Missing or Wrong value, plus SPF and DMARC; exit 0 only if all required records are OK'))
      .option('--resolver <ip[:port]>', 'ask this DNS server instead of the system\'s resolvers')
      .action(
        action<OwnerFlags & { resolver?: string }>(io, async (cli, [name], opts) => {
          const dns = resolverOf(opts.resolver);
          const ctx = await cli.core();
          const d = await getDomain(ctx, name!, ownerFlag(opts));
          const c = await checkDomain(ctx, d.domain, d.tenantId, dns);
          cli.out.result(checkJson(c, d.tenantId), () => presentCheck(cli, c));
          if (!c.ok) throw new OperationFailed(`domain ${c.domain}: ${c.failed.length} required DNS check${c.failed.length > 1 ? 's' : ''} failed`);
        }),
      ),
    ['switchboard domain check acme-dental.example', 'switchboard domain check acme-dental.example --resolver 1.1.1.1 --json'],
  );

  examples(
    withOwner(domain.command('verify <domain>').description('ask the provider to validate the domain; with --wait, poll (backoff up to --interval) until verified or --timeout'))
      .option('--wait', 'check DNS locally first, then poll until verified (progress on stderr)')
      .option('--timeout <duration>', 'with --wait: give up after this long', '48h')
      .option('--interval <duration>', 'with --wait: longest pause between polls (they start at 5 s and double)', '5m')
      .option('--resolver <ip[:port]>', 'with --wait: DNS server for the local check')
      .action(
        action<OwnerFlags & { wait?: boolean; timeout: string; interval: string; resolver?: string }>(io, async (cli, [name], opts) => {
          const owner = ownerFlag(opts);
          const ctx = await cli.core();
          const tenantId = (await getDomain(ctx, name!, owner)).tenantId;
          if (!opts.wait) {
            const v = await verifyDomain(ctx, name!, owner);
            cli.out.result(verificationJson(v, tenantId, { attempts: 1, timedOut: false, elapsedMs: null }), () => presentVerification(cli, v));
            if (v.status !== 'verified') throw new OperationFailed(`domain ${v.domain} is not verified yet (${v.status})`);
            return;
          }
          const timeoutMs = parseDuration(opts.timeout, '--timeout');
          const intervalMs = parseDuration(opts.interval, '--interval');
          if (intervalMs < 100) throw new UsageError(`--interval ${opts.interval}: at least 100ms`);
          const local = await checkDomain(ctx, name!, owner, resolverOf(opts.resolver));
          cli.out.info(
            local.ok
              ? `local DNS check: all required records are in place (resolver ${local.resolver})`
              : `local DNS check: ${local.failed.length} required check(s) failed: ${local.failed.join(', ')} (see \`switchboard domain check ${local.domain}\`); waiting for the provider anyway`,
          );
          const controller = new AbortController();
          const onSignal = () => controller.abort();
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          let r;
          try {
            r = await waitForVerification(ctx, name!, owner, {
              timeoutMs,
              intervalMs,
              signal: controller.signal,
              onPoll: (v, attempt, next) => {
                const bad = v.records.filter((x) => !x.valid).map((x) => x.purpose);
                cli.out.info(`poll ${attempt}: ${v.status}${bad.length ? ` (not valid: ${bad.join(', ')})` : ''}${next !== null ? `; next in ${(next / 1000).toFixed(1)} s` : ''}`);
              },
            });
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
          }
          const v = r.verification;
          cli.out.result(verificationJson(v, tenantId, { attempts: r.attempts, timedOut: r.timedOut, elapsedMs: r.elapsedMs }), () => presentVerification(cli, v));
          if (v.status === 'verified') return;
          if (r.timedOut) throw new OperationFailed(`domain ${v.domain}: not verified after ${opts.timeout} (${r.attempts} polls)`);
          if (controller.signal.aborted) throw new OperationFailed(`domain ${v.domain}: stopped waiting (${v.status})`);
          throw new OperationFailed(`domain ${v.domain}: the provider reports ${v.status}; fix the records and add the domain again`);
        }),
      ),
    [
      'switchboard domain verify acme-dental.example',
      'switchboard domain verify acme-dental.example --wait --timeout 2h --interval 1m',
    ],
  );

  examples(
    withOwner(domain.command('remove <domain>').description('delete the domain at the provider and locally'))
      .option('-y, --yes', 'do not ask for confirmation')
      .option('--local', 'remove only the local record; leave the domain at the provider')
      .action(
        action<OwnerFlags & { yes?: boolean; local?: boolean }>(io, async (cli, [name], opts) => {
          const ctx = await cli.core();
          const owner = ownerFlag(opts);
          const d = await getDomain(ctx, name!, owner);
          const where = opts.local || !d.providerRef ? 'locally' : `at ${d.providerRef} and locally`;
          await confirmOrYes(cli, opts.yes, `Remove domain ${d.domain} (${d.owner}) ${where}?`);
          const r = await removeDomain(ctx, d.domain, d.tenantId, opts.local);
          cli.out.result({ id: d.id, domain: d.domain, tenantId: d.tenantId, provider: d.providerRef, removed: true, removedAtProvider: r.provider === 'deleted' }, () => `Removed ${r.domain} (${r.owner})${r.provider === 'deleted' ? ` at ${d.providerRef} and` : ''} locally`);
        }),
      ),
    ['switchboard domain remove acme-dental.example --yes'],
  );
}
