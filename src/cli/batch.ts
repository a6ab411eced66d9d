/**
 * `switchboard batch list|show|resume|work|retry|cancel|export`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import type { CliContext, Io } from './context.js';
import type { CoreContext } from '../core/context.js';
import { action, examples, intFlag, required, retryFlags } from './command.js';
import { leaseOwner, ownerAlive, runWithProgress } from './run-batch.js';
import { batchItems, exportBatch, getBatch, listBatches } from '../core/batch/queries.js';
import { resumeBatch } from '../core/batch/runner.js';
import { cancelBatch, retryBatch, retryCount } from '../core/batch/manage.js';
import type { ErrorClass } from '../core/batch/types.js';
import { csvWriter } from '../core/csv.js';
import { OperationFailed, UsageError } from '../errors.js';
import { deliveryCounts } from '../core/events.js';
import { confirmOrYes } from './prompt.js';
import { batchJson, batchRowJson, countsJson, deliveryCountsJson } from './json.js';

/** Registers the `batch` commands. */
export function registerBatch(program: Command, io: Io): void {
  const batch = program.command('batch').description('inspect, resume, retry, cancel and export bulk sends');
  examples(batch, ['switchboard batch list', 'switchboard batch show b-20261123-1a2b3c4d --items', 'switchboard batch resume b-20261123-1a2b3c4d']);

  examples(
    batch
      .command('list')
      .description('list batches, newest first')
      .option('--tenant <id>', 'only this tenant\'s')
      .option('--limit <n>', 'at most this many (default 100)')
      .action(
        action<{ tenant?: string; limit?: string }>(io, async (cli, _args, opts) => {
          const list = await listBatches(await cli.core(), { tenantId: opts.tenant, limit: intFlag(opts.limit, '--limit', 1, 100_000) });
          cli.out.result(list.map(batchJson), () =>
            cli.out.list(
              ['BATCH', 'TENANT', 'CHANNEL', 'STATUS', 'ROWS', 'SENT', 'FAILED', 'SKIPPED', 'UNKNOWN', 'CREATED'],
              list.map((b) => [b.id, b.tenantId, b.channel, b.status, b.rows, b.sent, b.failed, b.skipped, b.unknown, cli.out.time(b.createdAt)]),
              'No batches yet.',
            ),
          );
        }),
      ),
    ['switchboard batch list', 'switchboard batch list --tenant acme-dental --json'],
  );

  examples(
    batch
      .command('show <id>')
      .description('show a batch and its messages by delivery status (from provider events); with --items, every row with its state, provider and message id')
      .option('--items', 'include every row')
      .action(
        action<{ items?: boolean }>(io, async (cli, [id], opts) => {
          const ctx = await cli.core();
          const b = await getBatch(ctx, id!);
          const delivery = await deliveryCounts(ctx, b.id);
          const tracked = Object.entries(delivery).filter(([, n]) => n > 0);
          const data = { ...batchJson(b), deliveryCounts: deliveryCountsJson(delivery) };
          const fields = () =>
            cli.out.fields([
              ['batch', b.id],
              ['tenant', b.tenantId],
              ['channel', b.channel],
              ['status', b.status],
              ...(b.pausedReason ? ([['paused', `${cli.out.time(b.pausedAt, true)}: ${b.pausedReason}`]] as Array<[string, unknown]>) : []),
              ['idempotency key', b.idempotencyKey],
              ['key expires', b.keyExpiresAt ? cli.out.time(b.keyExpiresAt, true) : 'never'],
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
              ['delivery', tracked.length ? tracked.map(([st, n]) => `${n} ${st}`).join(', ') : 'no events yet'],
              ['lease', b.leaseOwner ? `${b.leaseOwner} until ${cli.out.time(b.leaseExpiresAt, true)}` : 'none'],
              ['created', cli.out.time(b.createdAt, true)],
              ['started', cli.out.time(b.startedAt, true)],
              ['finished', cli.out.time(b.finishedAt, true)],
            ]);
          if (!opts.items) return cli.out.result({ ...data, items: null }, fields);
          // Every row, written as it is read from the store (a batch of a million rows would not fit in memory).
          await cli.out.resultRows(await batchItems(ctx, b.id), {
            data,
            key: 'items',
            json: batchRowJson,
            human: fields,
            head: ['ROW', 'LINE', 'RECIPIENT', 'STATE', 'PROVIDER', 'FALLBACK', 'MESSAGE ID / ERROR'],
            cells: (i) => [i.row, i.line, i.recipient, i.state, i.provider, i.fallback ? 'yes' : 'no', i.error ?? i.messageId],
          });
        }),
      ),
    ['switchboard batch show b-20261123-1a2b3c4d', 'switchboard batch show b-20261123-1a2b3c4d --items --json'],
  );

  examples(
    batch
      .command('resume <id>')
      .description("send a batch's pending rows (a paused or interrupted batch continues); rows left 'sending' by a crash become 'unknown' and are resent only with --retry-unknown")
      .option('--concurrency <n>', 'messages in flight at once', '4')
      .option('--rate <n>', 'most messages per second to each provider, in any one-second window')
      .option('--retry-unknown', 'resend rows whose outcome is unknown')
      .action(
        action<ResumeFlags>(io, async (cli, [id], opts) => {
          await resumeWithFlags(cli, await cli.core(), id!, opts, `resuming ${id}`);
        }),
      ),
    ['switchboard batch resume b-20261123-1a2b3c4d', 'switchboard batch resume b-20261123-1a2b3c4d --retry-unknown --rate 50'],
  );

  examples(
    batch
      .command('work <id>')
      .description(
        "PostgreSQL store: join the batch as one more worker (on this or another host): reserve pending rows no other worker holds, send them, and exit with the batch's state once no row is left (exit codes as `send batch`)",
      )
      .option('--concurrency <n>', 'messages in flight at once for this worker', '4')
      .option('--rate <n>', "most messages per second to each provider, in any one-second window, across all of the batch's workers")
      .option('--retry-unknown', 'resend rows whose outcome is unknown')
      .action(
        action<ResumeFlags>(io, async (cli, [id], opts) => {
          const ctx = await cli.core();
          if (ctx.sql.dialect !== 'postgres') {
            throw new UsageError(`batch work: workers share a batch on a PostgreSQL store; on a SQLite store one process sends a batch: use \`switchboard batch resume ${id}\``);
          }
          await resumeWithFlags(cli, ctx, id!, opts, `working ${id}`);
        }),
      ),
    ['switchboard batch work b-20261123-1a2b3c4d', 'switchboard batch work b-20261123-1a2b3c4d --concurrency 16'],
  );

  examples(
    batch
      .command('retry <id>')
      .description(
        "put chosen rows back to 'pending' for `batch resume` to send: --failed, --unknown (neither: both), optionally only --error-class recipient|render (auth, config and transient errors never fail a row: they pause the batch). Audited. Asks on a terminal; needs --yes without one",
      )
      .option('--failed', "rows that failed")
      .option('--unknown', "rows whose outcome is unknown (left 'sending' by a crash)")
      .option('--error-class <class>', 'only rows that failed with this class of error: recipient or render (the only errors that fail a row; the others pause the batch with its rows pending)')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<{ failed?: boolean; unknown?: boolean; errorClass?: string; yes?: boolean }>(io, async (cli, [id], opts) => {
          const classes = ['recipient', 'render'];
          if (opts.errorClass !== undefined && !classes.includes(opts.errorClass)) throw new UsageError(`--error-class ${opts.errorClass}: expected one of ${classes.join(', ')}`);
          const both = !opts.failed && !opts.unknown;
          const sel = { failed: both || opts.failed === true, unknown: both || opts.unknown === true, errorClass: opts.errorClass as ErrorClass | undefined };
          const ctx = await cli.core();
          const b = await getBatch(ctx, id!);
          const n = await retryCount(ctx, b.id, sel);
          const what = [sel.failed ? 'failed' : '', sel.unknown ? 'unknown' : ''].filter(Boolean).join(' or ') + (sel.errorClass ? ` (${sel.errorClass} errors)` : '');
          if (n > 0) await confirmOrYes(cli, opts.yes, `Put ${n} ${what} rows of batch ${b.id} back to pending (\`batch resume\` sends them)?`);
          const r = n > 0 ? await retryBatch(ctx, b.id, sel, { owner: leaseOwner(), ownerAlive }) : { batchId: b.id, retried: 0, counts: b };
          cli.out.result({ batchId: r.batchId, retriedCount: r.retried, ...countsJson(r.counts) }, () =>
            r.retried > 0
              ? `Batch ${r.batchId}: ${r.retried} ${what} rows are pending again; send them with: switchboard batch resume ${r.batchId}`
              : `Batch ${r.batchId}: no ${what} rows; nothing changed`,
          );
        }),
      ),
    ['switchboard batch retry b-20261123-1a2b3c4d --unknown', 'switchboard batch retry b-20261123-1a2b3c4d --failed --error-class recipient --yes'],
  );

  examples(
    batch
      .command('cancel <id>')
      .description("stop a batch for good: its pending rows become 'skipped' (cancelled); sent rows stay sent. A batch being sent by a live process is not touched (exit 4); a finished one (done or cancelled) is left as it is (exit 0). Asks on a terminal; needs --yes without one")
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<{ yes?: boolean }>(io, async (cli, [id], opts) => {
          const ctx = await cli.core();
          const b = await getBatch(ctx, id!);
          // A finished batch has nothing to cancel: no question asked (cancelBatch checks again in its transaction).
          if (b.status !== 'done' && b.status !== 'cancelled') await confirmOrYes(cli, opts.yes, `Cancel batch ${b.id} for good (${b.pending} pending rows will never be sent)?`);
          const r = await cancelBatch(ctx, b.id, { owner: leaseOwner(), ownerAlive });
          cli.out.result(
            { batchId: r.batchId, status: r.alreadyFinished ?? 'cancelled', alreadyFinished: r.alreadyFinished !== undefined, cancelledCount: r.cancelled, ...countsJson(r.counts) },
            () =>
              r.alreadyFinished
                ? `batch ${r.batchId} is already ${r.alreadyFinished}; nothing to cancel`
                : `Cancelled batch ${r.batchId}: ${r.cancelled} pending rows skipped (${r.counts.sent} sent, ${r.counts.failed} failed, ${r.counts.unknown} unknown stay as they are)`,
          );
        }),
      ),
    ['switchboard batch cancel b-20261123-1a2b3c4d', 'switchboard batch cancel b-20261123-1a2b3c4d --yes   # from a script'],
  );

  examples(
    batch
      .command('export <id>')
      .description(
        "write every input row of a batch to a CSV: its input columns, then state, provider, message_id, error. Safe to open in a spreadsheet: a value starting with =, +, -, @, TAB or CR gets a leading ' (see --raw)",
      )
      .option('--out <file>', 'the CSV file to write ("-" for stdout)')
      .option('--raw', "write values exactly as stored, without the ' before formula-like values (for programs, not spreadsheets)")
      .action(
        action<{ out?: string; raw?: boolean }>(io, async (cli, [id], opts) => {
          const out = required(opts.out, '--out', 'a file name, or - for stdout');
          const { columns, rows } = await exportBatch(await cli.core(), id!);
          let count = 0;
          const counted = Readable.from(
            (async function* () {
              for await (const r of rows) {
                count++;
                yield r;
              }
            })(),
            { objectMode: true },
          );
          const csv = csvWriter(columns, { raw: opts.raw });
          if (out === '-') {
            csv.on('data', (chunk: Buffer | string) => cli.io.stdout.write(chunk.toString()));
            await pipeline(counted, csv);
            return;
          }
          const file = path.resolve(out);
          try {
            await pipeline(counted, csv, fs.createWriteStream(file, { mode: 0o600 }));
          } catch (err) {
            throw new OperationFailed(`--out ${file}: ${(err as Error).message}`);
          }
          cli.out.result({ batchId: id, file, rowCount: count }, () => `Wrote ${count} rows of batch ${id} to ${file}`);
        }),
      ),
    [
      'switchboard batch export b-20261123-1a2b3c4d --out results.csv',
      'switchboard batch export b-20261123-1a2b3c4d --out - --raw | grep ,failed,',
    ],
  );
}

/** The flags `batch resume` and `batch work` share. */
interface ResumeFlags {
  concurrency: string;
  rate?: string;
  retryUnknown?: boolean;
}

/** Runs `resumeBatch` on batch `id` with the shared flags checked, showing progress under `label`. */
async function resumeWithFlags(cli: CliContext, ctx: CoreContext, id: string, opts: ResumeFlags, label: string): Promise<void> {
  const rate = intFlag(opts.rate, '--rate', 1, 100_000);
  const concurrency = intFlag(opts.concurrency, '--concurrency', 1, 1000);
  await runWithProgress(cli, label, (hooks) => resumeBatch(ctx, id, { concurrency, rate, retryUnknown: opts.retryUnknown, retry: retryFlags(cli) }, hooks));
}
