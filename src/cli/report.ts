/**
 * `switchboard report` and `switchboard log list`: what was sent, from the `messages` table.
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, channelFlag, examples, intFlag } from './command.js';
import { buildReport, listLog, type ReportBy } from '../core/reports.js';
import { parseSince } from '../core/time.js';
import { UsageError } from '../errors.js';
import type { Report, ReportRow } from '../core/reports.js';

/**
 * One report group (or the total) in the JSON vocabulary: attempt counts, the fallback rate, and from provider
 * events the messages tracked, delivered, bounced and complained with their rates (`null` when no event came).
 */
function groupJson(g: Omit<ReportRow, 'key'>) {
  return {
    sentCount: g.sent,
    failedCount: g.failed,
    fallbackCount: g.fallback,
    fallbackRate: g.fallbackRate,
    trackedCount: g.tracked,
    deliveredCount: g.delivered,
    bouncedCount: g.bounced,
    complainedCount: g.complained,
    deliveredRate: g.deliveredRate,
    bounceRate: g.bounceRate,
    complaintRate: g.complaintRate,
    byProvider: Object.entries(g.byProvider)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([provider, c]) => ({ provider, sentCount: c.sent, failedCount: c.failed })),
  };
}

/** `report --json`: `{sinceAt, by, groups: [...], total}`. */
function reportJson(r: Report) {
  return { sinceAt: r.since, by: r.by, groups: r.rows.map((g) => ({ key: g.key, ...groupJson(g) })), total: groupJson(r.total) };
}

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
        action<{ since: string; by: string; tenant?: string }>(io, async (cli, _args, opts) => {
          if (!['tenant', 'provider', 'channel'].includes(opts.by)) throw new UsageError(`--by ${opts.by}: expected tenant, provider or channel`);
          const ctx = await cli.core();
          const r = await buildReport(ctx, { since: parseSince(opts.since, ctx.clock.now(), '--since'), by: opts.by as ReportBy, tenantId: opts.tenant });
          cli.out.result(reportJson(r), () => {
            const providers = (p: Record<string, { sent: number; failed: number }>) =>
              Object.entries(p)
                .map(([ref, c]) => `${ref} ${c.sent}/${c.failed}`)
                .join(', ');
            // The period is a note (stderr): stdout is the header and one line per group, then the total.
            cli.out.info(`Since ${cli.out.time(r.since)}, by ${r.by} (per provider: sent/failed)${r.rows.length === 0 ? ': nothing sent' : ''}.`);
            return cli.out.table(
              [r.by.toUpperCase(), 'SENT', 'FAILED', 'FALLBACK', 'FALLBACK RATE', 'DELIVERED', 'BOUNCED', 'COMPLAINED', 'PROVIDERS'],
              r.rows.length === 0
                ? []
                : [
                    ...r.rows.map((g) => [g.key, g.sent, g.failed, g.fallback, pct(g.fallbackRate), pct(g.deliveredRate), pct(g.bounceRate), pct(g.complaintRate), providers(g.byProvider)]),
                    ['total', r.total.sent, r.total.failed, r.total.fallback, pct(r.total.fallbackRate), pct(r.total.deliveredRate), pct(r.total.bounceRate), pct(r.total.complaintRate), ''],
                  ],
            );
          });
        }),
      ),
    ['switchboard report --since 7d', 'switchboard report --since 30d --by provider --json', 'switchboard report --by channel --tenant acme-dental'],
  );

  const log = program.command('log').description('the message log: every send attempt');

  examples(log, ['switchboard log list --tenant acme-dental --status failed --since 24h', 'switchboard log list --batch b-20261123-1a2b3c4d --json']);
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
        action<{ tenant?: string; channel?: string; provider?: string; status?: string; since?: string; batch?: string; limit: string }>(io, async (cli, _args, opts) => {
          if (opts.status !== undefined && opts.status !== 'sent' && opts.status !== 'failed') throw new UsageError(`--status ${opts.status}: expected sent or failed`);
          const ctx = await cli.core();
          const entries = await listLog(ctx, {
            tenantId: opts.tenant,
            channel: opts.channel === undefined ? undefined : channelFlag(opts.channel),
            provider: opts.provider,
            status: opts.status,
            since: opts.since ? parseSince(opts.since, ctx.clock.now(), '--since') : undefined,
            batchId: opts.batch,
            limit: intFlag(opts.limit, '--limit', 1, 1_000_000),
          });
          cli.out.result(
            entries.map((e) => ({
              id: e.id,
              createdAt: e.at,
              tenantId: e.tenantId,
              channel: e.channel,
              provider: e.provider,
              recipient: e.recipient,
              status: e.status,
              messageId: e.messageId,
              error: e.error,
              errorKind: e.errorKind,
              errorCode: e.errorCode,
              fallback: e.fallback,
              attempt: e.attempt,
              batchId: e.batchId,
              row: e.row,
            })),
            () =>
              cli.out.list(
                  ['TIME', 'TENANT', 'CHANNEL', 'PROVIDER', 'RECIPIENT', 'STATUS', 'MESSAGE ID / ERROR', 'BATCH/ROW'],
                  entries.map((e) => [
                    cli.out.time(e.at, true),
                    e.tenantId,
                    e.channel,
                    e.provider + (e.fallback ? ' (fallback)' : ''),
                    e.recipient,
                    e.status,
                    e.status === 'sent' ? e.messageId : `${e.errorKind}: ${e.error}`,
                    e.batchId ? `${e.batchId}/${e.row}` : null,
                  ]),
                  'No messages.',
                ),
          );
        }),
      ),
    ['switchboard log list --tenant acme-dental --status failed --since 24h', 'switchboard log list --batch b-20261123-1a2b3c4d --limit 1000 --json'],
  );
}
