/**
 * Changing a stored batch outside a run: `batch cancel` and `batch retry`. Both respect the lease (a batch being
 * sent by a live process is not touched) and are audited.
 */
import type { CoreContext } from '../context.js';
import { UsageError } from '../../errors.js';
import { cancelRows, countRetryRows, getBatchRow, retryRows, type RetrySelection } from './ledger.js';
import type { BatchCounts, BatchStats, LeaseHolder } from './types.js';

function countsOf(stats: BatchStats): BatchCounts {
  const { byProvider: _p, fallback: _f, ...counts } = stats;
  return counts;
}

/** What `batch cancel` did. */
export interface CancelResult {
  batchId: string;
  /** Pending rows now `skipped` with error `cancelled`. */
  cancelled: number;
  counts: BatchCounts;
  /** The batch's status when it was already finished (`done` or `cancelled`) and so left alone; else undefined. */
  alreadyFinished?: 'done' | 'cancelled';
}

/**
 * Stops a batch for good: its pending rows become `skipped` (error `cancelled`) and the batch `cancelled`, so
 * neither `batch resume` nor the same `send batch` sends them. Rows already sent, failed or unknown stay as
 * they are. A batch already `done` or `cancelled` is left alone (no change, no audit): `alreadyFinished` says which.
 * @throws NotFoundError; LockedError (another live process holds the lease: stop it first, e.g. Ctrl-C).
 */
export async function cancelBatch(ctx: CoreContext, batchId: string, holder: LeaseHolder): Promise<CancelResult> {
  const { cancelled, stats, finished } = await cancelRows(ctx, batchId, holder);
  return { batchId, cancelled, counts: countsOf(stats), ...(finished ? { alreadyFinished: finished } : {}) };
}

export type { RetrySelection } from './ledger.js';

/** What `batch retry` did. */
export interface RetryResult {
  batchId: string;
  /** Rows put back to `pending`. */
  retried: number;
  counts: BatchCounts;
}

/**
 * How many rows {@link retryBatch} would put back to `pending`.
 * @throws NotFoundError; UsageError (a cancelled batch, or neither failed nor unknown chosen).
 */
export async function retryCount(ctx: CoreContext, batchId: string, sel: RetrySelection): Promise<number> {
  const b = await getBatchRow(ctx, batchId);
  if (!sel.failed && !sel.unknown) throw new UsageError('choose the rows to retry: failed and/or unknown');
  if (b.status === 'cancelled') throw new UsageError(`batch ${batchId} was cancelled; send its rows with \`send batch … --new-batch\``);
  return countRetryRows(ctx, batchId, sel);
}

/**
 * Puts chosen rows (failed and/or unknown, optionally of one error class) back to `pending`, audited with the
 * count; `batch resume` (or the same `send batch`) then sends them.
 * @throws NotFoundError, UsageError (see {@link retryCount}), LockedError (another live process sends it).
 */
export async function retryBatch(ctx: CoreContext, batchId: string, sel: RetrySelection, holder: LeaseHolder): Promise<RetryResult> {
  await retryCount(ctx, batchId, sel);
  const { changed, stats } = await retryRows(ctx, batchId, sel, holder, (n) => [
    `${n} rows`,
    ...(sel.failed ? ['failed'] : []),
    ...(sel.unknown ? ['unknown'] : []),
    ...(sel.errorClass ? [`class ${sel.errorClass}`] : []),
  ]);
  return { batchId, retried: changed, counts: countsOf(stats) };
}
