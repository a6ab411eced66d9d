/**
 * `switchboard report` and `switchboard log list`: what was sent, from the `messages` table.
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, channelFlag, examples, intFlag } from './command.js';
import { buildReport, listLog, type ReportBy } from '../core/reports.js';
import { parseSince } from '../core/time.js';
import { UsageError } from '../errors.js';

const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)} %`);

/** Registers `report` and `log list`. */
export function registerReport(program: Command, io: Io): void {
  examples(
    program
      .command('report')
      .description('send attempts since a time: sent, failed, fallback rate, per provider (a retry or fallback is a further attempt); delivered, bounce and complaint rates from provider events')
      .option('--since <when>', 'a duration such as 30d, 12h, or an ISO 8601 time', '30d')
      .option('--by <group>', 'tenant, provider or channel', 'tenant')
      .option('--tenant <id>', "only this tenant's")
      .action(
        action<{ since: string; by: string; tenant?: string }>(io, (cli, _args, opts) => {
          if (!['tenant', 'provider', 'channel'].includes(opts.by)) throw new UsageError(`--by ${opts.by}: expected tenant, provider or channel`);
          const ctx = cli.core();
          const r = buildReport(ctx, { since: parseSince(opts.since, ctx.clock.now(), '--since'), by: opts.by as ReportBy, tenantId: opts.tenant });
          cli.out.result(r, () => {
            if (r.rows.length === 0) return `Nothing sent since ${r.since}.`;
            const providers = (p: Record<string, { sent: number; failed: number }>) =>
              Object.entries(p)
                .map(([ref, c]) => `${ref} ${c.sent}/${c.failed}`)
                .join(', ');
            return [
              `Since ${r.since}, by ${r.by} (per provider: sent/failed):`,
              cli.out.table(
                [r.by.toUpperCase(), 'SENT', 'FAILED', 'FALLBACK', 'FALLBACK RATE', 'DELIVERED', 'BOUNCED', 'COMPLAINED', 'PROVIDERS'],
                [
                  ...r.rows.map((g) => [g.key, g.sent, g.failed, g.fallback, pct(g.fallbackRate), pct(g.deliveredRate), pct(g.bounceRate), pct(g.complaintRate), providers(g.byProvider)]),
                  ['total', r.total.sent, r.total.failed, r.total.fallback, pct(r.total.fallbackRate), pct(r.total.deliveredRate), pct(r.total.bounceRate), pct(r.total.complaintRate), ''],
                ],
              ),
            ].join('\n');
          });
        }),
      ),
    ['switchboard report --since 7d', 'switchboard report --since 30d --by provider --json', 'switchboard report --by channel --tenant acme-dental'],
  );

  const log = program.command('log').description('the message log: every send attempt');
  examples(
    log
      .command('list')
      .description('list send attempts, newest first')
      .option('--tenant <id>', 'only this tenant')
      .option('--channel <channel>', 'only this channel')
      .option('--provider <ref>', 'only this provider ref')
      .option('--status <status>', 'sent or failed')
      .option('--since <when>', 'a duration such as 24h, or an ISO 8601 time')
      .option('--batch <id>', 'only this batch')
      .option('--limit <n>', 'at most this many', '100')
      .action(
        action<{ tenant?: string; channel?: string; provider?: string; status?: string; since?: string; batch?: string; limit: string }>(io, (cli, _args, opts) => {
          if (opts.status !== undefined && opts.status !== 'sent' && opts.status !== 'failed') throw new UsageError(`--status ${opts.status}: expected sent or failed`);
          const ctx = cli.core();
          const entries = listLog(ctx, {
            tenantId: opts.tenant,
            channel: opts.channel === undefined ? undefined : channelFlag(opts.channel),
            provider: opts.provider,
            status: opts.status,
            since: opts.since ? parseSince(opts.since, ctx.clock.now(), '--since') : undefined,
            batchId: opts.batch,
            limit: intFlag(opts.limit, '--limit', 1, 1_000_000),
          });
          cli.out.result(entries, () =>
            entries.length === 0
              ? 'No messages.'
              : cli.out.table(
                  ['TIME', 'TENANT', 'CHANNEL', 'PROVIDER', 'RECIPIENT', 'STATUS', 'MESSAGE ID / ERROR', 'BATCH/ROW'],
                  entries.map((e) => [
                    e.at.replace('T', ' ').slice(0, 19),
                    e.tenantId,
                    e.channel,
                    e.provider + (e.fallback ? ' (fallback)' : ''),
                    e.recipient,
                    e.status,
                    e.status === 'sent' ? e.messageId : `${e.errorKind}: ${e.error}`,
                    e.batchId ? `${e.batchId}/${e.row}` : null,
                  ]),
                ),
          );
        }),
      ),
    ['switchboard log list --tenant acme-dental --status failed --since 24h', 'switchboard log list --batch b-20261123-1a2b3c4d --limit 1000 --json'],
  );
}
