/**
 * `switchboard batch list|show|resume`.
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples, intFlag, retryFlags } from './command.js';
import { runWithProgress } from './run-batch.js';
import { batchItems, getBatch, listBatches, resumeBatch } from '../core/batches.js';

/** Registers the `batch` commands. */
export function registerBatch(program: Command, io: Io): void {
  const batch = program.command('batch').description('inspect and resume bulk sends');

  examples(
    batch
      .command('list')
      .description('list batches, newest first')
      .option('--tenant <id>', 'only this tenant\'s')
      .option('--limit <n>', 'at most this many (default 100)')
      .action(
        action<{ tenant?: string; limit?: string }>(io, (cli, _args, opts) => {
          const list = listBatches(cli.core(), { tenantId: opts.tenant, limit: intFlag(opts.limit, '--limit', 1, 100_000) });
          cli.out.result(list, () =>
            list.length === 0
              ? 'No batches.'
              : cli.out.table(
                  ['BATCH', 'TENANT', 'CHANNEL', 'STATUS', 'ROWS', 'SENT', 'FAILED', 'SKIPPED', 'UNKNOWN', 'CREATED'],
                  list.map((b) => [b.id, b.tenantId, b.channel, b.status, b.rows, b.sent, b.failed, b.skipped, b.unknown, b.createdAt.replace('T', ' ').slice(0, 19)]),
                ),
          );
        }),
      ),
    ['switchboard batch list', 'switchboard batch list --tenant acme-dental --json'],
  );

  examples(
    batch
      .command('show <id>')
      .description('show a batch; with --items, every row with its state, provider and message id')
      .option('--items', 'include every row')
      .action(
        action<{ items?: boolean }>(io, (cli, [id], opts) => {
          const ctx = cli.core();
          const b = getBatch(ctx, id!);
          const items = opts.items ? batchItems(ctx, b.id) : undefined;
          cli.out.result(items ? { ...b, items } : b, () =>
            [
              cli.out.fields([
                ['batch', b.id],
                ['tenant', b.tenantId],
                ['channel', b.channel],
                ['status', b.status],
                ['idempotency key', b.idempotencyKey],
                ['csv', b.inputPath],
                ['template', b.templatePath],
                ['rows', b.rows],
                ['sent', b.sent],
                ['failed', b.failed],
                ['skipped', b.skipped],
                ['unknown', b.unknown],
                ['pending', b.pending],
                ['fallback', b.fallback],
                ...Object.entries(b.byProvider).map(([p, n]): [string, unknown] => [`via ${p}`, n]),
                ['lease', b.leaseOwner ? `${b.leaseOwner} until ${b.leaseExpiresAt}` : 'none'],
                ['created', b.createdAt],
                ['finished', b.finishedAt],
              ]),
              ...(items
                ? [
                    '',
                    cli.out.table(
                      ['ROW', 'LINE', 'RECIPIENT', 'STATE', 'PROVIDER', 'FALLBACK', 'MESSAGE ID / ERROR'],
                      items.map((i) => [i.row, i.line, i.recipient, i.state, i.provider, i.fallback ? 'yes' : 'no', i.error ?? i.messageId]),
                    ),
                  ]
                : []),
            ].join('\n'),
          );
        }),
      ),
    ['switchboard batch show b-20261123-1a2b3c4d', 'switchboard batch show b-20261123-1a2b3c4d --items --json'],
  );

  examples(
    batch
      .command('resume <id>')
      .description("send a batch's pending rows; rows left 'sending' by a crash become 'unknown' and are resent only with --retry-unknown")
      .option('--concurrency <n>', 'messages in flight at once', '4')
      .option('--retry-unknown', 'resend rows whose outcome is unknown')
      .action(
        action<{ concurrency: string; retryUnknown?: boolean }>(io, async (cli, [id], opts) => {
          const ctx = cli.core();
          await runWithProgress(cli, `resuming ${id}`, (hooks) =>
            resumeBatch(ctx, id!, { concurrency: intFlag(opts.concurrency, '--concurrency', 1, 1000), retryUnknown: opts.retryUnknown, retry: retryFlags(cli) }, hooks),
          );
        }),
      ),
    ['switchboard batch resume b-20261123-1a2b3c4d', 'switchboard batch resume b-20261123-1a2b3c4d --retry-unknown'],
  );
}
