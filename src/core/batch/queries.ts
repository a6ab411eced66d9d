/**
 * Reading stored batches: `batch list`, `batch show` (with `--items`) and `batch export`.
 */
import type { CoreContext } from '../context.js';
import { batchStats, getBatchRow, iterateExport, iterateItemRows, listBatchRows } from './ledger.js';
import type { BatchCounts, BatchInfo, BatchRow, RowEvent } from './types.js';

async function toInfo(ctx: CoreContext, b: BatchRow): Promise<BatchInfo> {
  return {
    id: b.id,
    tenantId: b.tenant_id,
    channel: b.channel,
    status: b.status,
    idempotencyKey: b.idempotency_key,
    keyExpiresAt: b.key_expires_at,
    inputPath: b.input_path,
    templatePath: b.template_path,
    leaseOwner: b.lease_owner,
    leaseExpiresAt: b.lease_expires_at,
    createdAt: b.created_at,
    startedAt: b.started_at,
    finishedAt: b.finished_at,
    pausedReason: b.paused_reason,
    pausedAt: b.paused_at,
    ...(await batchStats(ctx, b)),
  };
}

/** Stored batches, newest first, optionally for one tenant (at most `limit`, default 100). */
export async function listBatches(ctx: CoreContext, filter: { tenantId?: string; limit?: number } = {}): Promise<BatchInfo[]> {
  const rows = await listBatchRows(ctx, filter);
  const out: BatchInfo[] = [];
  for (const b of rows) out.push(await toInfo(ctx, b));
  return out;
}

/** One batch. @throws NotFoundError. */
export async function getBatch(ctx: CoreContext, id: string): Promise<BatchInfo> {
  return toInfo(ctx, await getBatchRow(ctx, id));
}

/** Counts of a batch's rows by state. @throws NotFoundError. */
export async function batchCounts(ctx: CoreContext, id: string): Promise<BatchCounts> {
  const { byProvider: _p, fallback: _f, ...counts } = await batchStats(ctx, await getBatchRow(ctx, id));
  return counts;
}

/**
 * A batch's ledger rows in CSV order (for `batch show --items`), read lazily as they are iterated, so memory
 * stays flat whatever the batch's size (on SQLite the read holds the store's connection until it ends: iterate it
 * to the end, or break, before other statements). @throws NotFoundError (when the batch does not exist).
 */
export async function batchItems(ctx: CoreContext, id: string): Promise<AsyncIterable<RowEvent>> {
  await getBatchRow(ctx, id);
  return iterateItemRows(ctx, id);
}

/** Columns `batch export` adds after the input columns. */
export const EXPORT_COLUMNS = ['state', 'provider', 'message_id', 'error'] as const;

/**
 * Every input row of a batch, in CSV order: its input columns (as read from the CSV), then `state`,
 * `provider`, `message_id` and `error`. Rows are read lazily from the store, so memory stays flat.
 * @throws NotFoundError.
 */
export async function exportBatch(ctx: CoreContext, batchId: string): Promise<{ columns: string[]; rows: AsyncIterable<string[]> }> {
  const b = await getBatchRow(ctx, batchId);
  const input = JSON.parse(b.columns) as string[];
  async function* rows(): AsyncIterable<string[]> {
    for await (const r of iterateExport(ctx, batchId)) {
      const vars = JSON.parse(r.vars) as Record<string, string>;
      yield [...input.map((c) => vars[c] ?? ''), r.state, r.provider ?? '', r.message_id ?? '', r.error ?? ''];
    }
  }
  return { columns: [...input, ...EXPORT_COLUMNS], rows: rows() };
}
