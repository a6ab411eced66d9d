/**
 * The batch ledger's tables (`batches`, `batch_items`, DESIGN §6): every statement outside a run's hot path
 * (which is the run ledger's, see `src/store/ledger.ts`). Dialect-neutral SQL (SQLite and PostgreSQL) unless it
 * branches on `sql.dialect`. Lease checks (whose lease is live) are the caller's; the statements here that act
 * under a lease name its owner and change nothing once another owner holds it.
 */
import type { BatchRow, BatchStatus, ItemState } from '../../core/batch/types.js';
import { byteOrder, inList, SqliteSql, type Sql } from '../sql.js';

/** The batch with this id, if any. */
export async function selectBatchRow(sql: Sql, id: string): Promise<BatchRow | undefined> {
  return sql.get<BatchRow>('SELECT * FROM batches WHERE id = ?', id);
}

/** The batch named by an idempotency key, if any. */
export async function selectBatchByKey(sql: Sql, key: string): Promise<BatchRow | undefined> {
  return sql.get<BatchRow>('SELECT * FROM batches WHERE idempotency_key = ?', key);
}

/** The newest batch made from a derived key (stores from before migration 6 kept it as the idempotency key). */
export async function selectBatchByDerivedKey(sql: Sql, derived: string): Promise<BatchRow | undefined> {
  // SQLite breaks a tie of creation times by insertion order (rowid); PostgreSQL has none, so by id.
  const tie = sql.dialect === 'sqlite' ? 'rowid' : 'id';
  return sql.get<BatchRow>(
    `SELECT * FROM batches WHERE derived_key = ? OR (derived_key IS NULL AND idempotency_key = ?) ORDER BY created_at DESC, ${tie} DESC LIMIT 1`,
    derived,
    derived,
  );
}

/** Stored batches, newest first, optionally of one tenant, at most `limit`. */
export async function selectBatchRows(sql: Sql, filter: { tenantId?: string; limit: number }): Promise<BatchRow[]> {
  return filter.tenantId
    ? sql.all<BatchRow>('SELECT * FROM batches WHERE tenant_id = ? ORDER BY created_at DESC, id LIMIT ?', filter.tenantId, filter.limit)
    : sql.all<BatchRow>('SELECT * FROM batches ORDER BY created_at DESC, id LIMIT ?', filter.limit);
}

/** Deletes a batch and its rows (the schema cascades to `batch_items`). */
export async function deleteBatchRow(sql: Sql, id: string): Promise<void> {
  await sql.run('DELETE FROM batches WHERE id = ?', id);
}

/** What a new batch row holds; times ISO 8601. */
export interface NewBatchRow {
  id: string;
  tenantId: string;
  channel: string;
  key: string;
  derivedKey: string | null;
  keyExpiresAt: string | null;
  inputPath: string;
  inputHash: string;
  templatePath: string;
  templateHash: string;
  /** The template source as JSON. */
  template: string;
  columns: string[];
  /** Lease owner and its end. */
  owner: string;
  leaseExpiresAt: string;
  createdAt: string;
}

/**
 * Stores a new batch in state `loading`, its lease held by `owner`.
 * @returns false (nothing stored) when a batch with the same id or idempotency key exists.
 */
export async function insertBatchRow(sql: Sql, b: NewBatchRow): Promise<boolean> {
  const got = await sql.get(
    `INSERT INTO batches (id, tenant_id, channel, idempotency_key, derived_key, key_expires_at, input_path, input_hash, template_path,
       template_hash, template, columns, status, total, lease_owner, lease_expires_at, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'loading', 0, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`,
    b.id, b.tenantId, b.channel, b.key, b.derivedKey, b.keyExpiresAt, b.inputPath, b.inputHash, b.templatePath, b.templateHash, b.template,
    JSON.stringify(b.columns), b.owner, b.leaseExpiresAt, b.createdAt,
  );
  return got !== undefined;
}

/** One ledger row to store: row number, CSV line, recipient, the row's values as JSON, and its first state. */
export type NewItem = [row: number, line: number, recipient: string, vars: string, state: ItemState, error: string | null];

/** Stores ledger rows of a loading batch in one transaction (`at`: ISO 8601). */
export async function insertBatchItems(sql: Sql, batchId: string, items: readonly NewItem[], at: string): Promise<void> {
  if (items.length === 0) return;
  const insert = 'INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, error, updated_at) VALUES ';
  const one = '(?, ?, ?, ?, ?, ?, ?, ?)';
  // PostgreSQL: a round trip per statement, so rows go 500 to a statement (4,000 parameters, under the protocol's
  // 65,535). SQLite: no round trips, but each statement run costs a call through the executor and a statement
  // lookup, so rows go 100 to a statement (800 parameters; statements of both sizes are prepared once).
  const per = sql.dialect === 'postgres' ? 500 : 100;
  await sql.tx(async (t) => {
    for (let i = 0; i < items.length; i += per) {
      const chunk = items.slice(i, i + per);
      const args: unknown[] = [];
      for (const [row, line, to, vars, state, error] of chunk) args.push(batchId, row, line, to, vars, state, error, at);
      await t.run(insert + Array(chunk.length).fill(one).join(', '), ...args);
    }
  });
}

/** Marks a loaded batch `ready` with its row count. */
export async function updateBatchReady(sql: Sql, batchId: string, total: number): Promise<void> {
  await sql.run("UPDATE batches SET status = 'ready', total = ? WHERE id = ?", total, batchId);
}

/**
 * Gives the batch's lease to `owner` until `until` and sets it `running` (run it in the transaction that checked
 * no other live owner holds it). Rows left `sending` become `unknown`; with `retryUnknown` every `unknown` row
 * becomes `pending`. `now`, `until`: ISO 8601.
 */
export async function takeBatchLease(sql: Sql, batchId: string, owner: string, now: string, until: string, retryUnknown: boolean): Promise<void> {
  await sql.run(
    "UPDATE batches SET lease_owner = ?, lease_expires_at = ?, status = 'running', paused_reason = NULL, paused_at = NULL, started_at = COALESCE(started_at, ?) WHERE id = ?",
    owner, until, now, batchId,
  );
  await sql.run(
    "UPDATE batch_items SET state = 'unknown', error = 'interrupted while sending; outcome unknown', updated_at = ? WHERE batch_id = ? AND state = 'sending'",
    now, batchId,
  );
  if (retryUnknown) await sql.run("UPDATE batch_items SET state = 'pending', error = NULL, error_kind = NULL, worker = NULL WHERE batch_id = ? AND state = 'unknown'", batchId);
}

/** Extends the lease to `until` (ISO 8601). @returns false when `owner` no longer holds it (taken over). */
export async function renewBatchLease(sql: Sql, batchId: string, owner: string, until: string): Promise<boolean> {
  return (await sql.run('UPDATE batches SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?', until, batchId, owner)).changes === 1;
}

/** How a run leaves its batch: its state, its stats (JSON), and the pause reason when paused. */
export interface BatchRunEnd {
  status: BatchStatus;
  stats: string;
  pausedReason: string | null;
}

/**
 * Records the end of a run and gives up the lease, only if `owner` still holds it (`now`: ISO 8601).
 * @returns whether it did.
 */
export async function endBatchRun(sql: Sql, batchId: string, owner: string, end: BatchRunEnd, now: string): Promise<boolean> {
  const paused = end.status === 'paused';
  const r = await sql.run(
    `UPDATE batches SET status = ?, stats = ?, lease_owner = NULL, lease_expires_at = NULL,
       paused_reason = ?, paused_at = ?,
       finished_at = CASE WHEN ? = 'done' THEN ? ELSE finished_at END WHERE id = ? AND lease_owner = ?`,
    end.status, end.stats, paused ? end.pausedReason : null, paused ? now : null, end.status, now, batchId, owner,
  );
  return r.changes === 1;
}

/**
 * Marks rows still `sending` `unknown` with `error`, only while `owner` holds the lease (`now`: ISO 8601).
 * @returns how many rows it marked.
 */
export async function abandonBatchSending(sql: Sql, batchId: string, owner: string, error: string, now: string): Promise<number> {
  const r = await sql.run(
    `UPDATE batch_items SET state = 'unknown', error = ?, updated_at = ?
     WHERE batch_id = ? AND state = 'sending' AND EXISTS (SELECT 1 FROM batches WHERE id = ? AND lease_owner = ?)`,
    error, now, batchId, batchId, owner,
  );
  return r.changes;
}

/** A batch's rows counted by state and provider (one scan of them by primary key); `fallback`: how many of them went through a fallback. */
export async function selectBatchStateCounts(sql: Sql, batchId: string): Promise<Array<{ state: ItemState; provider: string | null; n: number; fallback: number }>> {
  const rows = await sql.all<{ state: ItemState; provider: string | null; n: number; fallback: number | null }>(
    `SELECT state, provider, count(*) AS n, sum(fallback) AS fallback FROM batch_items WHERE batch_id = ? GROUP BY state, provider ORDER BY ${byteOrder(sql, 'provider')}`,
    batchId,
  );
  // (PostgreSQL's count and sum come as bigint/numeric.)
  return rows.map((r) => ({ state: r.state, provider: r.provider, n: Number(r.n), fallback: Number(r.fallback ?? 0) }));
}

/** One ledger row as `batch show --items` lists it. */
export interface BatchItemListRow {
  row_no: number;
  line_no: number;
  recipient: string;
  state: ItemState;
  provider: string | null;
  message_id: string | null;
  fallback: number;
  error: string | null;
}

/** Rows per page when a large result is read in pages (PostgreSQL; SQLite streams a statement). */
const PAGE = 1000;

/**
 * The rows of `select` (columns including `row_no`, `FROM batch_items WHERE batch_id = ?` and `cond`), in row
 * order, lazily: on SQLite one statement stepped row by row (better-sqlite3 `iterate`, memory stays flat); on
 * PostgreSQL pages of {@link PAGE} row numbers (`row_no > a AND row_no <= a + PAGE`; a batch's rows are numbered
 * 1…n). A page bounded by row number reads only its own rows whatever plan the planner picks: paged by
 * `row_no > a ORDER BY row_no LIMIT n` on a batch the table's statistics did not know yet (no ANALYZE since it
 * was sent or copied in), the planner estimated a few hundred rows and read and sorted every row after `a` for
 * each page (measured: 74 ms a page half-way through 200,000 rows; `batch show --items` of those rows took 10 s, now 1.0 s).
 * The SQLite statement holds the connection while it is read: read it to the end (or break) before other
 * statements of this process run.
 */
async function* iterateItems<T extends { row_no: number }>(sql: Sql, columns: string, cond: string, batchId: string): AsyncIterable<T> {
  if (sql instanceof SqliteSql) {
    yield* sql.iterate<T>(`SELECT ${columns} FROM batch_items WHERE batch_id = ?${cond} ORDER BY row_no`, batchId);
    return;
  }
  // The highest row number, read backwards from the end of the primary key (as `max(row_no)`, estimated on one
  // row, the planner read every row of the batch).
  const top = (await sql.get<{ row_no: number }>('SELECT row_no FROM batch_items WHERE batch_id = ? ORDER BY row_no DESC LIMIT 1', batchId))?.row_no ?? 0;
  for (let after = 0; after < top; after += PAGE) {
    yield* await sql.all<T>(`SELECT ${columns} FROM batch_items WHERE batch_id = ?${cond} AND row_no > ? AND row_no <= ? ORDER BY row_no`, batchId, after, after + PAGE);
  }
}

/** A batch's rows with their outcomes, lazily, in CSV order (see `iterateItems` for how they stream). */
export function iterateBatchItems(sql: Sql, batchId: string): AsyncIterable<BatchItemListRow> {
  return iterateItems(sql, 'row_no, line_no, recipient, state, provider, message_id, fallback, error', '', batchId);
}

/** A batch's rows for export, lazily, in CSV order (see `iterateItems` for how they stream). */
export function iterateBatchExport(sql: Sql, batchId: string): AsyncIterable<{ row_no: number; vars: string; state: string; provider: string | null; message_id: string | null; error: string | null }> {
  return iterateItems(sql, 'row_no, vars, state, provider, message_id, error', '', batchId);
}

/** The CSV values (JSON) of a batch's sent rows, lazily, in CSV order. */
export function iterateBatchSentValues(sql: Sql, batchId: string): AsyncIterable<{ row_no: number; line_no: number; vars: string }> {
  return iterateItems(sql, 'row_no, line_no, vars', " AND state = 'sent'", batchId);
}

/** Skips a batch's pending rows as `cancelled` (`now`: ISO 8601). @returns how many. */
export async function cancelBatchItems(sql: Sql, batchId: string, now: string): Promise<number> {
  return (await sql.run("UPDATE batch_items SET state = 'skipped', error = 'cancelled', updated_at = ? WHERE batch_id = ? AND state = 'pending'", now, batchId)).changes;
}

/** Marks a batch `cancelled` with its stats (JSON), lease given up, finished at `now`. */
export async function updateBatchCancelled(sql: Sql, batchId: string, stats: string, now: string): Promise<void> {
  await sql.run(
    "UPDATE batches SET status = 'cancelled', stats = ?, lease_owner = NULL, lease_expires_at = NULL, paused_reason = NULL, paused_at = NULL, finished_at = ? WHERE id = ?",
    stats, now, batchId,
  );
}

/** Which rows a retry picks: these states, optionally only with this error class. */
export interface BatchRetryRows {
  states: ReadonlyArray<'failed' | 'unknown'>;
  errorKind?: string;
}

function retryWhere(sel: BatchRetryRows): { cond: string; args: string[] } {
  const cond = `batch_id = ? AND state IN (${sel.states.map(() => '?').join(', ')})${sel.errorKind ? ' AND error_kind = ?' : ''}`;
  return { cond, args: [...sel.states, ...(sel.errorKind ? [sel.errorKind] : [])] };
}

/** How many rows a retry would put back to `pending`. */
export async function countBatchRetryItems(sql: Sql, batchId: string, sel: BatchRetryRows): Promise<number> {
  const w = retryWhere(sel);
  return Number((await sql.get<{ n: number }>(`SELECT count(*) AS n FROM batch_items WHERE ${w.cond}`, batchId, ...w.args))!.n);
}

/** Puts the chosen rows back to `pending` (`now`: ISO 8601). @returns how many. */
export async function retryBatchItems(sql: Sql, batchId: string, sel: BatchRetryRows, now: string): Promise<number> {
  const w = retryWhere(sel);
  return (await sql.run(`UPDATE batch_items SET state = 'pending', error = NULL, error_kind = NULL, worker = NULL, updated_at = ? WHERE ${w.cond}`, now, batchId, ...w.args)).changes;
}

/** Marks a batch `interrupted` with its stats (JSON): `batch resume` then sends its pending rows. */
export async function updateBatchInterrupted(sql: Sql, batchId: string, stats: string): Promise<void> {
  await sql.run("UPDATE batches SET status = 'interrupted', stats = ?, finished_at = NULL WHERE id = ?", stats, batchId);
}

/** Line and recipient of chosen rows of a batch. */
export async function selectBatchRecipients(sql: Sql, batchId: string, rows: readonly number[]): Promise<Array<{ row_no: number; line_no: number; recipient: string }>> {
  const l = inList(sql, 'row_no', rows);
  return sql.all(`SELECT row_no, line_no, recipient FROM batch_items WHERE batch_id = ? AND ${l.cond}`, batchId, l.arg);
}

/** Marks rows `skipped` with their own error text (`[row, error]`), if still pending, in one transaction. */
export async function skipBatchItems(sql: Sql, batchId: string, rows: ReadonlyArray<readonly [row: number, error: string]>, now: string): Promise<void> {
  if (rows.length === 0) return;
  await sql.tx(async (t) => {
    for (const [row, error] of rows) {
      await t.run("UPDATE batch_items SET state = 'skipped', error = ?, updated_at = ? WHERE batch_id = ? AND row_no = ? AND state = 'pending'", error, now, batchId, row);
    }
  });
}

// ---- Workers (PostgreSQL: several workers per batch, each under a `batch_workers` lease; see ledger-pg.ts) ----

/**
 * Ends the leases of a batch's workers that expired before `now` (ISO 8601), or whose process `alive` says is
 * gone (a worker of this host whose pid is dead): their rows left `sending` become
 * `unknown` (as after a crash), the pending rows reserved to them go back to every worker; rows of workers no
 * longer registered are treated alike. Run it in the transaction that holds the batch row (`FOR UPDATE`).
 * @returns how many workers it ended.
 */
export async function reapBatchWorkers(sql: Sql, batchId: string, now: string, alive: (worker: string) => boolean = () => true): Promise<number> {
  const gone = (await sql.all<{ worker: string; lease_expires_at: string }>('SELECT worker, lease_expires_at FROM batch_workers WHERE batch_id = ?', batchId))
    .filter((w) => w.lease_expires_at <= now || !alive(w.worker))
    .map((w) => w.worker);
  const dead = gone.length === 0 ? [] : await sql.all<{ worker: string }>(`DELETE FROM batch_workers WHERE batch_id = ? AND ${inList(sql, 'worker', gone).cond} RETURNING worker`, batchId, inList(sql, 'worker', gone).arg);
  const orphan = `batch_id = ? AND worker IS NOT NULL AND NOT EXISTS (SELECT 1 FROM batch_workers w WHERE w.batch_id = batch_items.batch_id AND w.worker = batch_items.worker)`;
  await sql.run(`UPDATE batch_items SET state = 'unknown', error = 'interrupted while sending; outcome unknown', updated_at = ? WHERE state = 'sending' AND ${orphan}`, now, batchId);
  await sql.run(`UPDATE batch_items SET worker = NULL WHERE state = 'pending' AND ${orphan}`, batchId);
  return dead.length;
}

/** The batch row, locked until the end of the transaction (`FOR UPDATE`; PostgreSQL). */
export async function lockBatchRow(sql: Sql, batchId: string): Promise<BatchRow | undefined> {
  return sql.get<BatchRow>('SELECT * FROM batches WHERE id = ? FOR UPDATE', batchId);
}

/** How many workers hold a lease on the batch. */
export async function countBatchWorkers(sql: Sql, batchId: string): Promise<number> {
  return Number((await sql.get<{ n: number }>('SELECT count(*) AS n FROM batch_workers WHERE batch_id = ?', batchId))!.n);
}

/**
 * Registers `worker` on a running batch whose other workers are live: its lease until `until`, the batch's lease
 * shown as held by it (`batch show`); with `retryUnknown` every `unknown` row becomes `pending`. Times ISO 8601.
 */
export async function joinBatchWorker(sql: Sql, batchId: string, worker: string, now: string, until: string, retryUnknown: boolean): Promise<void> {
  await sql.run('UPDATE batches SET lease_owner = ?, lease_expires_at = ? WHERE id = ?', worker, until, batchId);
  if (retryUnknown) await sql.run("UPDATE batch_items SET state = 'pending', error = NULL, error_kind = NULL, worker = NULL WHERE batch_id = ? AND state = 'unknown'", batchId);
  await sql.run('INSERT INTO batch_workers (batch_id, worker, lease_expires_at, joined_at) VALUES (?, ?, ?, ?)', batchId, worker, until, now);
}

/**
 * Extends `worker`'s lease (and the batch's, which shows the last renewing worker) to `until` (ISO 8601).
 * @returns false when the worker's lease was ended (it expired and another worker reaped it).
 */
export async function renewBatchWorker(sql: Sql, batchId: string, worker: string, until: string): Promise<boolean> {
  const held = (await sql.run('UPDATE batch_workers SET lease_expires_at = ? WHERE batch_id = ? AND worker = ?', until, batchId, worker)).changes === 1;
  if (held) await sql.run('UPDATE batches SET lease_owner = ?, lease_expires_at = ? WHERE id = ?', worker, until, batchId);
  return held;
}

/**
 * Ends `worker`'s lease: with `abandon` (a stopped run) its rows still `sending` become `unknown` with that error;
 * its reserved pending rows go back to every worker. Run in the transaction holding the batch row.
 * @returns null when the worker held no lease any more, else how many rows it marked `unknown`.
 */
export async function leaveBatchWorker(sql: Sql, batchId: string, worker: string, abandon: string | null, now: string): Promise<number | null> {
  const held = await sql.get('DELETE FROM batch_workers WHERE batch_id = ? AND worker = ? RETURNING worker', batchId, worker);
  if (!held) return null;
  const abandoned = abandon === null ? 0 : (await sql.run("UPDATE batch_items SET state = 'unknown', error = ?, updated_at = ? WHERE batch_id = ? AND worker = ? AND state = 'sending'", abandon, now, batchId, worker)).changes;
  await sql.run("UPDATE batch_items SET worker = NULL WHERE batch_id = ? AND worker = ? AND state = 'pending'", batchId, worker);
  return abandoned;
}

/** Rows no worker holds yet (`free`: pending, unreserved) and rows other workers hold (`held`: reserved or sending). */
export async function selectBatchRowsLeft(sql: Sql, batchId: string, worker: string): Promise<{ free: number; held: number }> {
  const r = await sql.get<{ free: number | null; held: number | null }>(
    `SELECT sum(CASE WHEN worker IS NULL THEN 1 ELSE 0 END) AS free, sum(CASE WHEN worker IS NOT NULL AND worker <> ? THEN 1 ELSE 0 END) AS held
     FROM batch_items WHERE batch_id = ? AND state IN ('pending', 'sending')`,
    worker, batchId,
  );
  return { free: Number(r?.free ?? 0), held: Number(r?.held ?? 0) };
}

/** Records the end of the batch's last worker: its state, stats (JSON), pause reason; the batch's lease cleared. */
export async function endBatchWorkers(sql: Sql, batchId: string, end: BatchRunEnd, now: string): Promise<void> {
  const paused = end.status === 'paused';
  await sql.run(
    `UPDATE batches SET status = ?, stats = ?, lease_owner = NULL, lease_expires_at = NULL, paused_reason = ?, paused_at = ?,
       finished_at = CASE WHEN ? = 'done' THEN ? ELSE finished_at END WHERE id = ?`,
    end.status, end.stats, paused ? end.pausedReason : null, paused ? now : null, end.status, now, batchId,
  );
}
