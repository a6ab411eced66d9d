/**
 * The batch ledger as the rest of `src/core/batch/` sees it (DESIGN §6): lease rules, stats, and the
 * transactions that change a batch outside a run. The SQL is in `src/store/repos/batches.ts`; a run's own row
 * writes go through the run ledger (`src/store/ledger.ts`).
 */
import { randomBytes } from 'node:crypto';
import type { CoreContext } from '../context.js';
import { recordAudit } from '../audit.js';
import { LockedError, NotFoundError } from '../../errors.js';
import { retryBusyAsync } from '../../store/sql.js';
import {
  abandonBatchSending,
  cancelBatchItems,
  countBatchRetryItems,
  deleteBatchRow,
  endBatchRun,
  insertBatchItems,
  insertBatchRow,
  iterateBatchExport,
  iterateBatchItems,
  iterateBatchSentValues,
  renewBatchLease,
  retryBatchItems,
  selectBatchByDerivedKey,
  selectBatchByKey,
  selectBatchRecipients,
  selectBatchRow,
  lockBatchRow,
  selectBatchRows,
  selectBatchStateCounts,
  skipBatchItems,
  takeBatchLease,
  updateBatchCancelled,
  updateBatchInterrupted,
  updateBatchReady,
  type BatchRetryRows,
  type NewBatchRow,
  type NewItem,
} from '../../store/repos/batches.js';
import type { Sql } from '../../store/sql.js';
import type { BatchRow, BatchStats, BatchStatus, ErrorClass, LeaseHolder, RowEvent } from './types.js';

export type { NewItem } from '../../store/repos/batches.js';
export type { Outcome } from '../../store/ledger.js';

/** Lease length in ms; renewed every third of it while the batch is worked. */
export const LEASE_MS = 30_000;

/** Row counts all zero, `rows` given. */
export function emptyStats(rows = 0): BatchStats {
  return { rows, pending: 0, sending: 0, sent: 0, failed: 0, skipped: 0, unknown: 0, byProvider: {}, fallback: 0 };
}

function notFound(ctx: CoreContext, id: string): NotFoundError {
  return new NotFoundError(`no batch ${id} in store ${ctx.storePath} (see \`switchboard batch list\`)`);
}

/**
 * A batch by id (read on `sql`, a transaction's handle when given). With `lock`, on PostgreSQL the row is locked
 * until the transaction ends (`FOR UPDATE`), so a check of its lease or state and the write that follows are not
 * interleaved with another process's (on SQLite the transaction's write lock already does that).
 * @throws NotFoundError.
 */
export async function getBatchRow(ctx: CoreContext, id: string, sql: Sql = ctx.sql, lock = false): Promise<BatchRow> {
  const row = lock && sql.dialect === 'postgres' ? await lockBatchRow(sql, id) : await selectBatchRow(sql, id);
  if (!row) throw notFound(ctx, id);
  return row;
}

/** The batch with this id, if any. */
export function findBatchRow(ctx: CoreContext, id: string): Promise<BatchRow | undefined> {
  return selectBatchRow(ctx.sql, id);
}

/** The batch named by an idempotency key, if any. */
export function findByKey(ctx: CoreContext, key: string): Promise<BatchRow | undefined> {
  return selectBatchByKey(ctx.sql, key);
}

/** The newest batch made from a derived key (stores from before migration 6 kept it as the idempotency key). */
export function findByDerivedKey(ctx: CoreContext, derived: string): Promise<BatchRow | undefined> {
  return selectBatchByDerivedKey(ctx.sql, derived);
}

/** Deletes a batch and its rows (a load that died before anything was sent). */
export function deleteBatch(ctx: CoreContext, id: string): Promise<void> {
  return deleteBatchRow(ctx.sql, id);
}

/** A new batch id: `b-YYYYMMDD-<8 hex>`. */
export function newBatchId(ctx: CoreContext): string {
  const d = ctx.clock.now().toISOString().slice(0, 10).replace(/-/g, '');
  return `b-${d}-${randomBytes(4).toString('hex')}`;
}

/** What a new batch row holds (its lease and creation time are set when it is stored). */
export type NewBatch = Omit<NewBatchRow, 'owner' | 'leaseExpiresAt' | 'createdAt'>;

/**
 * Stores a new batch in state `loading`, its lease held by `owner`.
 * @throws LockedError if another process stored a batch with the same key just now.
 */
export async function insertBatch(ctx: CoreContext, b: NewBatch, owner: string): Promise<void> {
  const now = ctx.clock.now();
  const stored = await insertBatchRow(ctx.sql, { ...b, owner, leaseExpiresAt: new Date(now.getTime() + LEASE_MS).toISOString(), createdAt: now.toISOString() });
  if (!stored) throw new LockedError(`another process started the same batch (idempotency key ${b.key}) just now; run \`switchboard batch list\``);
}

/** Stores ledger rows of a loading batch in one transaction. */
export function insertItems(ctx: CoreContext, batchId: string, items: readonly NewItem[]): Promise<void> {
  return insertBatchItems(ctx.sql, batchId, items, ctx.clock.now().toISOString());
}

/** Marks a loaded batch `ready` with its row count. */
export function markReady(ctx: CoreContext, batchId: string, total: number): Promise<void> {
  return updateBatchReady(ctx.sql, batchId, total);
}

/** Whether another live process holds the batch's lease. */
export function leaseHeldByOther(ctx: CoreContext, b: Pick<BatchRow, 'lease_owner' | 'lease_expires_at'>, holder: LeaseHolder): boolean {
  if (!b.lease_owner || b.lease_owner === holder.owner) return false;
  if (!b.lease_expires_at || Date.parse(b.lease_expires_at) <= ctx.clock.now().getTime()) return false;
  return holder.ownerAlive(b.lease_owner);
}

/**
 * Takes the batch's lease and sets it `running`; rows left `sending` become `unknown` (their request may have
 * reached the provider), and with `retryUnknown` every `unknown` row becomes `pending`.
 * @throws LockedError naming the holder when another live process holds the lease.
 */
export async function acquireLease(ctx: CoreContext, batchId: string, holder: LeaseHolder, retryUnknown: boolean): Promise<void> {
  await ctx.sql.tx(async (t) => {
    const b = await getBatchRow(ctx, batchId, t, true);
    if (leaseHeldByOther(ctx, b, holder)) {
      throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); not starting a second run`);
    }
    const now = ctx.clock.now();
    await takeBatchLease(t, batchId, holder.owner, now.toISOString(), new Date(now.getTime() + LEASE_MS).toISOString(), retryUnknown);
  });
}

/** Extends the lease by {@link LEASE_MS}. @returns false when `owner` no longer holds it (taken over). */
export function renewLease(ctx: CoreContext, batchId: string, owner: string): Promise<boolean> {
  return renewBatchLease(ctx.sql, batchId, owner, new Date(ctx.clock.now().getTime() + LEASE_MS).toISOString());
}

/** How a run leaves its batch: its state, its stats, and the pause reason when paused. */
export interface RunEnd {
  status: BatchStatus;
  stats: BatchStats;
  pausedReason?: string;
}

/**
 * Records the end of a run and gives up the lease (only if `owner` still holds it); a lock held past the busy
 * timeout delays it (asynchronously), not fails it. @returns whether it did.
 */
export function endRun(ctx: CoreContext, batchId: string, owner: string, end: RunEnd): Promise<boolean> {
  const now = ctx.clock.now().toISOString();
  return retryBusyAsync(() => endBatchRun(ctx.sql, batchId, owner, { status: end.status, stats: JSON.stringify(end.stats), pausedReason: end.pausedReason ?? null }, now));
}

/**
 * Records the rows of requests a stopped run gave up waiting for (still `sending` after its wait for requests on
 * the wire) as `unknown`: the provider may or may not have taken them. Only while `owner` holds the lease.
 * @returns how many rows it marked.
 */
export function abandonSending(ctx: CoreContext, batchId: string, owner: string): Promise<number> {
  const now = ctx.clock.now().toISOString();
  return retryBusyAsync(() => abandonBatchSending(ctx.sql, batchId, owner, 'no answer before the run was stopped; outcome unknown', now));
}

/** A batch's stats read from its rows (on `sql`, a transaction's handle when given). */
export async function liveStats(ctx: CoreContext, batchId: string, sql: Sql = ctx.sql): Promise<BatchStats> {
  const stats = emptyStats();
  for (const r of await selectBatchStateCounts(sql, batchId)) {
    stats[r.state] += r.n;
    stats.rows += r.n;
    if (r.state === 'sent' && r.provider !== null) {
      stats.byProvider[r.provider] = r.n;
      stats.fallback += r.fallback;
    }
  }
  return stats;
}

/**
 * A batch's stats: the kept ones while no run works it (its rows change only in a run, which sets it
 * `running`, or in a cancel or retry, which keep them anew), else read from its rows.
 */
export async function batchStats(ctx: CoreContext, b: Pick<BatchRow, 'id' | 'status' | 'stats'>, sql: Sql = ctx.sql): Promise<BatchStats> {
  if (b.stats && (b.status === 'done' || b.status === 'interrupted' || b.status === 'cancelled' || b.status === 'paused')) return JSON.parse(b.stats) as BatchStats;
  return liveStats(ctx, b.id, sql);
}

/** Stored batches, newest first, optionally for one tenant. */
export function listBatchRows(ctx: CoreContext, filter: { tenantId?: string; limit?: number }): Promise<BatchRow[]> {
  return selectBatchRows(ctx.sql, { tenantId: filter.tenantId, limit: filter.limit ?? 100 });
}

/** A batch's ledger rows in CSV order, lazily (memory stays flat whatever the batch's size). */
export async function* iterateItemRows(ctx: CoreContext, batchId: string): AsyncIterable<RowEvent> {
  for await (const r of iterateBatchItems(ctx.sql, batchId)) {
    yield { row: r.row_no, line: r.line_no, recipient: r.recipient, state: r.state, provider: r.provider, messageId: r.message_id, fallback: r.fallback === 1, error: r.error };
  }
}

/** A batch's rows for export, lazily, in CSV order. */
export function iterateExport(ctx: CoreContext, batchId: string): AsyncIterable<{ vars: string; state: string; provider: string | null; message_id: string | null; error: string | null }> {
  return iterateBatchExport(ctx.sql, batchId);
}

/** The CSV values (JSON) of a batch's sent rows, lazily, in CSV order: for the segment totals of a real send. */
export function iterateSentValues(ctx: CoreContext, batchId: string): AsyncIterable<{ row_no: number; line_no: number; vars: string }> {
  return iterateBatchSentValues(ctx.sql, batchId);
}

/**
 * Cancels a batch in one transaction: pending rows become `skipped` ("cancelled"), the batch `cancelled`, and
 * the change is audited (`batch.cancel`) in the same transaction.
 * A finished batch (`done` or already `cancelled`) is left as it is, unaudited: `finished` is then its status.
 * @returns the rows cancelled and the stats after. @throws NotFoundError; LockedError if another live process holds the lease.
 */
export function cancelRows(ctx: CoreContext, batchId: string, holder: LeaseHolder): Promise<{ cancelled: number; stats: BatchStats; finished?: 'done' | 'cancelled' }> {
  return ctx.sql.tx(async (t) => {
    const b = await getBatchRow(ctx, batchId, t, true);
    if (b.status === 'done' || b.status === 'cancelled') return { cancelled: 0, stats: await batchStats(ctx, b, t), finished: b.status };
    if (leaseHeldByOther(ctx, b, holder)) {
      throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); stop that run first (Ctrl-C or SIGTERM), then cancel`);
    }
    const now = ctx.clock.now().toISOString();
    const cancelled = await cancelBatchItems(t, batchId, now);
    const stats = await liveStats(ctx, batchId, t);
    await updateBatchCancelled(t, batchId, JSON.stringify(stats), now);
    await recordAudit(ctx, t, 'batch.cancel', batchId, b.tenant_id, ['status']);
    return { cancelled, stats };
  });
}

/** Which rows `batch retry` picks. */
export interface RetrySelection {
  failed: boolean;
  unknown: boolean;
  errorClass?: ErrorClass;
}

function retryRowsOf(sel: RetrySelection): BatchRetryRows {
  return { states: [...(sel.failed ? (['failed'] as const) : []), ...(sel.unknown ? (['unknown'] as const) : [])], errorKind: sel.errorClass };
}

/** How many rows `batch retry` would put back to `pending`. */
export function countRetryRows(ctx: CoreContext, batchId: string, sel: RetrySelection): Promise<number> {
  return countBatchRetryItems(ctx.sql, batchId, retryRowsOf(sel));
}

/**
 * Puts the chosen rows back to `pending` and the batch to `interrupted` (so `batch resume` and the same
 * `send batch` send them), audited (`batch.retry`, with `fields(b, changed)`) in the same transaction.
 * @returns the rows changed and the stats after. @throws NotFoundError; LockedError if another live process holds the lease.
 */
export function retryRows(
  ctx: CoreContext,
  batchId: string,
  sel: RetrySelection,
  holder: LeaseHolder,
  fields: (changed: number) => string[],
): Promise<{ changed: number; stats: BatchStats }> {
  return ctx.sql.tx(async (t) => {
    const b = await getBatchRow(ctx, batchId, t, true);
    if (leaseHeldByOther(ctx, b, holder)) {
      throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); wait for that run to end`);
    }
    const changed = await retryBatchItems(t, batchId, retryRowsOf(sel), ctx.clock.now().toISOString());
    const stats = await liveStats(ctx, batchId, t);
    if (changed > 0) await updateBatchInterrupted(t, batchId, JSON.stringify(stats));
    await recordAudit(ctx, t, 'batch.retry', batchId, b.tenant_id, fields(changed));
    return { changed, stats };
  });
}

/** A recipient that appears on more than one row: its first line, then the later rows. */
export interface DuplicateRecipient {
  recipient: string;
  firstLine: number;
  later: Array<{ row: number; line: number }>;
}

/** Line and recipient of chosen rows of a batch. */
export async function rowRecipients(ctx: CoreContext, batchId: string, rows: readonly number[]): Promise<Map<number, { line: number; recipient: string }>> {
  const got = await selectBatchRecipients(ctx.sql, batchId, rows);
  return new Map(got.map((r) => [r.row_no, { line: r.line_no, recipient: r.recipient }]));
}

/** Marks the later rows of each duplicate recipient `skipped` ("duplicate of line N"), in one transaction. */
export function skipDuplicates(ctx: CoreContext, batchId: string, dups: readonly DuplicateRecipient[]): Promise<void> {
  const rows = dups.flatMap((d) => d.later.map((l) => [l.row, `duplicate of line ${d.firstLine}`] as const));
  return skipBatchItems(ctx.sql, batchId, rows, ctx.clock.now().toISOString());
}
