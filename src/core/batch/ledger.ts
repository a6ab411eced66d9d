/**
 * The batch ledger: every SQL statement on `batches` and `batch_items` (DESIGN §6). The other parts of
 * `src/core/batch/` say what to record; this module says how it is stored.
 */
import { randomBytes } from 'node:crypto';
import type { CoreContext } from '../context.js';
import { LockedError, NotFoundError } from '../../errors.js';
import { prepared, retryBusy } from '../../store/db.js';
import type { BatchRow, BatchStats, BatchStatus, ErrorClass, ItemRow, ItemState, LeaseHolder, RowEvent } from './types.js';

/** Lease length in ms; renewed every third of it while the batch is worked. */
export const LEASE_MS = 30_000;

/** Row counts all zero, `rows` given. */
export function emptyStats(rows = 0): BatchStats {
  return { rows, pending: 0, sending: 0, sent: 0, failed: 0, skipped: 0, unknown: 0, byProvider: {}, fallback: 0 };
}

/** A batch by id. @throws NotFoundError. */
export function getBatchRow(ctx: CoreContext, id: string): BatchRow {
  const row = findBatchRow(ctx, id);
  if (!row) throw new NotFoundError(`no batch ${id} in store ${ctx.storePath} (see \`switchboard batch list\`)`);
  return row;
}

/** The batch with this id, if any. */
export function findBatchRow(ctx: CoreContext, id: string): BatchRow | undefined {
  return prepared(ctx.db, 'SELECT * FROM batches WHERE id = ?').get(id) as BatchRow | undefined;
}

/** The batch named by an idempotency key, if any. */
export function findByKey(ctx: CoreContext, key: string): BatchRow | undefined {
  return prepared(ctx.db, 'SELECT * FROM batches WHERE idempotency_key = ?').get(key) as BatchRow | undefined;
}

/** The newest batch made from a derived key (stores from before migration 6 kept it as the idempotency key). */
export function findByDerivedKey(ctx: CoreContext, derived: string): BatchRow | undefined {
  return prepared(
    ctx.db,
    'SELECT * FROM batches WHERE derived_key = ? OR (derived_key IS NULL AND idempotency_key = ?) ORDER BY created_at DESC, rowid DESC LIMIT 1',
  ).get(derived, derived) as BatchRow | undefined;
}

/** Deletes a batch and its rows (a load that died before anything was sent). */
export function deleteBatch(ctx: CoreContext, id: string): void {
  prepared(ctx.db, 'DELETE FROM batches WHERE id = ?').run(id);
}

/** A new batch id: `b-YYYYMMDD-<8 hex>`. */
export function newBatchId(ctx: CoreContext): string {
  const d = ctx.clock.now().toISOString().slice(0, 10).replace(/-/g, '');
  return `b-${d}-${randomBytes(4).toString('hex')}`;
}

/** What a new batch row holds. */
export interface NewBatch {
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
  template: string;
  columns: string[];
}

/**
 * Stores a new batch in state `loading`, its lease held by `owner`.
 * @throws LockedError if another process stored a batch with the same key just now.
 */
export function insertBatch(ctx: CoreContext, b: NewBatch, owner: string): void {
  const now = ctx.clock.now();
  try {
    ctx.db
      .prepare(
        `INSERT INTO batches (id, tenant_id, channel, idempotency_key, derived_key, key_expires_at, input_path, input_hash, template_path,
           template_hash, template, columns, status, total, lease_owner, lease_expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'loading', 0, ?, ?, ?)`,
      )
      .run(b.id, b.tenantId, b.channel, b.key, b.derivedKey, b.keyExpiresAt, b.inputPath, b.inputHash, b.templatePath, b.templateHash, b.template,
        JSON.stringify(b.columns), owner, new Date(now.getTime() + LEASE_MS).toISOString(), now.toISOString());
  } catch (err) {
    if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
      throw new LockedError(`another process started the same batch (idempotency key ${b.key}) just now; run \`switchboard batch list\``);
    }
    throw err;
  }
}

/** One ledger row to store: row number, CSV line, recipient, the row's values as JSON, and its first state. */
export type NewItem = [row: number, line: number, recipient: string, vars: string, state: ItemState, error: string | null];

/** Stores ledger rows of a loading batch in one transaction. */
export function insertItems(ctx: CoreContext, batchId: string, items: readonly NewItem[]): void {
  const insert = prepared(ctx.db, 'INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  ctx.db
    .transaction(() => {
      const t = ctx.clock.now().toISOString();
      for (const [row, line, to, vars, state, error] of items) insert.run(batchId, row, line, to, vars, state, error, t);
    })
    .immediate();
}

/** Marks a loaded batch `ready` with its row count. */
export function markReady(ctx: CoreContext, batchId: string, total: number): void {
  prepared(ctx.db, "UPDATE batches SET status = 'ready', total = ? WHERE id = ?").run(total, batchId);
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
export function acquireLease(ctx: CoreContext, batchId: string, holder: LeaseHolder, retryUnknown: boolean): void {
  ctx.db
    .transaction(() => {
      const b = getBatchRow(ctx, batchId);
      if (leaseHeldByOther(ctx, b, holder)) {
        throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); not starting a second run`);
      }
      const now = ctx.clock.now();
      ctx.db
        .prepare(
          "UPDATE batches SET lease_owner = ?, lease_expires_at = ?, status = 'running', paused_reason = NULL, paused_at = NULL, started_at = ifnull(started_at, ?) WHERE id = ?",
        )
        .run(holder.owner, new Date(now.getTime() + LEASE_MS).toISOString(), now.toISOString(), batchId);
      ctx.db
        .prepare("UPDATE batch_items SET state = 'unknown', error = 'interrupted while sending; outcome unknown', updated_at = ? WHERE batch_id = ? AND state = 'sending'")
        .run(now.toISOString(), batchId);
      if (retryUnknown) ctx.db.prepare("UPDATE batch_items SET state = 'pending', error = NULL, error_kind = NULL WHERE batch_id = ? AND state = 'unknown'").run(batchId);
    })
    .immediate();
}

/** Extends the lease by {@link LEASE_MS}. @returns false when `owner` no longer holds it (taken over). */
export function renewLease(ctx: CoreContext, batchId: string, owner: string): boolean {
  const r = prepared(ctx.db, 'UPDATE batches SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?').run(
    new Date(ctx.clock.now().getTime() + LEASE_MS).toISOString(),
    batchId,
    owner,
  );
  return r.changes === 1;
}

/** How a run leaves its batch: its state, its stats, and the pause reason when paused. */
export interface RunEnd {
  status: BatchStatus;
  stats: BatchStats;
  pausedReason?: string;
}

/** Records the end of a run and gives up the lease (only if `owner` still holds it). @returns whether it did. */
export function endRun(ctx: CoreContext, batchId: string, owner: string, end: RunEnd): boolean {
  const now = ctx.clock.now().toISOString();
  const paused = end.status === 'paused';
  return retryBusy(
    () => ctx.db
      .prepare(
        `UPDATE batches SET status = ?, stats = ?, lease_owner = NULL, lease_expires_at = NULL,
           paused_reason = ?, paused_at = ?,
           finished_at = CASE WHEN ? = 'done' THEN ? ELSE finished_at END WHERE id = ? AND lease_owner = ?`,
      )
      .run(end.status, JSON.stringify(end.stats), paused ? (end.pausedReason ?? null) : null, paused ? now : null, end.status, now, batchId, owner).changes === 1,
  );
}

/**
 * Records the rows of requests a stopped run gave up waiting for (still `sending` after its wait for requests on
 * the wire) as `unknown`: the provider may or may not have taken them. Only while `owner` holds the lease.
 * @returns how many rows it marked.
 */
export function abandonSending(ctx: CoreContext, batchId: string, owner: string): number {
  const now = ctx.clock.now().toISOString();
  return retryBusy(
    () => ctx.db
      .prepare(
        `UPDATE batch_items SET state = 'unknown', error = 'no answer before the run was stopped; outcome unknown', updated_at = ?
         WHERE batch_id = ? AND state = 'sending' AND EXISTS (SELECT 1 FROM batches WHERE id = ? AND lease_owner = ?)`,
      )
      .run(now, batchId, batchId, owner).changes,
  );
}

/** A batch's stats read from its rows: one scan of them by primary key. */
export function liveStats(ctx: CoreContext, batchId: string): BatchStats {
  const rows = prepared(
    ctx.db,
    'SELECT state, provider, count(*) AS n, sum(fallback) AS fb FROM batch_items WHERE batch_id = ? GROUP BY state, provider ORDER BY provider',
  ).all(batchId) as Array<{ state: ItemState; provider: string | null; n: number; fb: number }>;
  const stats = emptyStats();
  for (const r of rows) {
    stats[r.state] += r.n;
    stats.rows += r.n;
    if (r.state === 'sent' && r.provider !== null) {
      stats.byProvider[r.provider] = r.n;
      stats.fallback += r.fb;
    }
  }
  return stats;
}

/**
 * A batch's stats: the kept ones while no run works it (its rows change only in a run, which sets it
 * `running`, or in a cancel or retry, which keep them anew), else read from its rows.
 */
export function batchStats(ctx: CoreContext, b: Pick<BatchRow, 'id' | 'status' | 'stats'>): BatchStats {
  if (b.stats && (b.status === 'done' || b.status === 'interrupted' || b.status === 'cancelled' || b.status === 'paused')) return JSON.parse(b.stats) as BatchStats;
  return liveStats(ctx, b.id);
}

/** Stored batches, newest first, optionally for one tenant. */
export function listBatchRows(ctx: CoreContext, filter: { tenantId?: string; limit?: number }): BatchRow[] {
  return (
    filter.tenantId
      ? ctx.db.prepare('SELECT * FROM batches WHERE tenant_id = ? ORDER BY created_at DESC, id LIMIT ?').all(filter.tenantId, filter.limit ?? 100)
      : ctx.db.prepare('SELECT * FROM batches ORDER BY created_at DESC, id LIMIT ?').all(filter.limit ?? 100)
  ) as BatchRow[];
}

/** A batch's ledger rows in CSV order. */
export function itemRows(ctx: CoreContext, batchId: string): RowEvent[] {
  const rows = ctx.db
    .prepare('SELECT row_no, line_no, recipient, state, provider, message_id, fallback, error FROM batch_items WHERE batch_id = ? ORDER BY row_no')
    .all(batchId) as Array<{ row_no: number; line_no: number; recipient: string; state: ItemState; provider: string | null; message_id: string | null; fallback: number; error: string | null }>;
  return rows.map((r) => ({ row: r.row_no, line: r.line_no, recipient: r.recipient, state: r.state, provider: r.provider, messageId: r.message_id, fallback: r.fallback === 1, error: r.error }));
}

/** A batch's rows for export, lazily, in CSV order. */
export function iterateExport(ctx: CoreContext, batchId: string): Iterable<{ vars: string; state: string; provider: string | null; message_id: string | null; error: string | null }> {
  return ctx.db
    .prepare('SELECT vars, state, provider, message_id, error FROM batch_items WHERE batch_id = ? ORDER BY row_no')
    .iterate(batchId) as Iterable<{ vars: string; state: string; provider: string | null; message_id: string | null; error: string | null }>;
}

/** The CSV values (JSON) of a batch's sent rows, lazily, in CSV order: for the segment totals of a real send. */
export function iterateSentValues(ctx: CoreContext, batchId: string): Iterable<{ row_no: number; line_no: number; vars: string }> {
  return ctx.db.prepare("SELECT row_no, line_no, vars FROM batch_items WHERE batch_id = ? AND state = 'sent' ORDER BY row_no").iterate(batchId) as Iterable<{
    row_no: number;
    line_no: number;
    vars: string;
  }>;
}

/**
 * Cancels a batch in one transaction: pending rows become `skipped` ("cancelled"), the batch `cancelled`.
 * A finished batch (`done` or already `cancelled`) is left as it is, unaudited: `finished` is then its status.
 * @returns the rows cancelled and the stats after. @throws LockedError if another live process holds the lease.
 */
export function cancelRows(ctx: CoreContext, batchId: string, holder: LeaseHolder, audit: (b: BatchRow) => void): { cancelled: number; stats: BatchStats; finished?: 'done' | 'cancelled' } {
  return ctx.db
    .transaction(() => {
      const b = getBatchRow(ctx, batchId);
      if (b.status === 'done' || b.status === 'cancelled') return { cancelled: 0, stats: batchStats(ctx, b), finished: b.status };
      if (leaseHeldByOther(ctx, b, holder)) {
        throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); stop that run first (Ctrl-C or SIGTERM), then cancel`);
      }
      const now = ctx.clock.now().toISOString();
      const cancelled = ctx.db
        .prepare("UPDATE batch_items SET state = 'skipped', error = 'cancelled', updated_at = ? WHERE batch_id = ? AND state = 'pending'")
        .run(now, batchId).changes;
      const stats = liveStats(ctx, batchId);
      ctx.db
        .prepare("UPDATE batches SET status = 'cancelled', stats = ?, lease_owner = NULL, lease_expires_at = NULL, paused_reason = NULL, paused_at = NULL, finished_at = ? WHERE id = ?")
        .run(JSON.stringify(stats), now, batchId);
      audit(b);
      return { cancelled, stats };
    })
    .immediate();
}

/** Which rows `batch retry` picks. */
export interface RetrySelection {
  failed: boolean;
  unknown: boolean;
  errorClass?: ErrorClass;
}

function retryWhere(sel: RetrySelection): { sql: string; args: string[] } {
  const states = [sel.failed ? 'failed' : '', sel.unknown ? 'unknown' : ''].filter(Boolean);
  const sql = `batch_id = ? AND state IN (${states.map(() => '?').join(', ')})${sel.errorClass ? ' AND error_kind = ?' : ''}`;
  return { sql, args: [...states, ...(sel.errorClass ? [sel.errorClass] : [])] };
}

/** How many rows `batch retry` would put back to `pending`. */
export function countRetryRows(ctx: CoreContext, batchId: string, sel: RetrySelection): number {
  const w = retryWhere(sel);
  return (ctx.db.prepare(`SELECT count(*) AS n FROM batch_items WHERE ${w.sql}`).get(batchId, ...w.args) as { n: number }).n;
}

/**
 * Puts the chosen rows back to `pending` and the batch to `interrupted` (so `batch resume` and the same
 * `send batch` send them), in one transaction. @returns the rows changed and the stats after.
 * @throws LockedError if another live process holds the lease.
 */
export function retryRows(ctx: CoreContext, batchId: string, sel: RetrySelection, holder: LeaseHolder, audit: (b: BatchRow, n: number) => void): { changed: number; stats: BatchStats } {
  return ctx.db
    .transaction(() => {
      const b = getBatchRow(ctx, batchId);
      if (leaseHeldByOther(ctx, b, holder)) {
        throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); wait for that run to end`);
      }
      const w = retryWhere(sel);
      const changed = ctx.db
        .prepare(`UPDATE batch_items SET state = 'pending', error = NULL, error_kind = NULL, updated_at = ? WHERE ${w.sql}`)
        .run(ctx.clock.now().toISOString(), batchId, ...w.args).changes;
      const stats = liveStats(ctx, batchId);
      if (changed > 0) {
        ctx.db.prepare("UPDATE batches SET status = 'interrupted', stats = ?, finished_at = NULL WHERE id = ?").run(JSON.stringify(stats), batchId);
      }
      audit(b, changed);
      return { changed, stats };
    })
    .immediate();
}

/** A recipient that appears on more than one row: its first line, then the later rows. */
export interface DuplicateRecipient {
  recipient: string;
  firstLine: number;
  later: Array<{ row: number; line: number }>;
}

/** Line and recipient of chosen rows of a batch. */
export function rowRecipients(ctx: CoreContext, batchId: string, rows: readonly number[]): Map<number, { line: number; recipient: string }> {
  const got = ctx.db
    .prepare('SELECT row_no, line_no, recipient FROM batch_items WHERE batch_id = ? AND row_no IN (SELECT value FROM json_each(?))')
    .all(batchId, JSON.stringify(rows)) as Array<{ row_no: number; line_no: number; recipient: string }>;
  return new Map(got.map((r) => [r.row_no, { line: r.line_no, recipient: r.recipient }]));
}

/** Marks the later rows of each duplicate recipient `skipped` ("duplicate of line N"), in one transaction. */
export function skipDuplicates(ctx: CoreContext, batchId: string, dups: readonly DuplicateRecipient[]): void {
  const stmt = ctx.db.prepare("UPDATE batch_items SET state = 'skipped', error = ?, updated_at = ? WHERE batch_id = ? AND row_no = ? AND state = 'pending'");
  ctx.db
    .transaction(() => {
      const t = ctx.clock.now().toISOString();
      for (const d of dups) for (const l of d.later) stmt.run(`duplicate of line ${d.firstLine}`, t, batchId, l.row);
    })
    .immediate();
}

/** What the ledger records for a row once it is done (or handed back). */
export interface Outcome {
  state: ItemState;
  provider: string | null;
  messageId: string | null;
  fallback: boolean;
  error: string | null;
  /** The error class of a failed row (`recipient`, `render`, …), else null. */
  errorKind: string | null;
}

/**
 * The statements one run uses on its batch's rows, prepared once. Rows are named by a JSON array of row
 * numbers, so a request's rows (up to 1000) take one statement, not one per row; a single row (every request
 * of a provider that cannot batch) is named by its number, which spares SQLite the JSON parse and the
 * temporary table of `IN (SELECT value FROM json_each(?))` on every row.
 */
export class RunLedger {
  private readonly pageStmt;
  private readonly claimStmt;
  private readonly claimOneStmt;
  private readonly finishStmt;
  private readonly finishOneStmt;
  private readonly releaseStmt;

  constructor(
    private readonly ctx: CoreContext,
    readonly batchId: string,
    private readonly owner: string,
  ) {
    this.pageStmt = ctx.db.prepare(
      "SELECT row_no, line_no, recipient, vars, state FROM batch_items WHERE batch_id = ? AND state = 'pending' AND row_no > ? ORDER BY row_no LIMIT ?",
    );
    // Only while this process holds the lease: a run whose lease was taken over claims nothing.
    const claim = `UPDATE batch_items SET state = 'sending', attempts = attempts + 1, updated_at = ?
       WHERE batch_id = ? AND row_no %s AND state = 'pending'
         AND EXISTS (SELECT 1 FROM batches WHERE id = ? AND lease_owner = ?)`;
    this.claimStmt = ctx.db.prepare(`${claim.replace('%s', 'IN (SELECT value FROM json_each(?))')} RETURNING row_no`);
    this.claimOneStmt = ctx.db.prepare(claim.replace('%s', '= ?'));
    // Outcomes and hand-backs too only while this process holds the lease: a run whose lease was taken over
    // (it was stopped past the lease) never writes rows another run now owns.
    const held = 'AND EXISTS (SELECT 1 FROM batches WHERE id = ? AND lease_owner = ?)';
    const finish = `UPDATE batch_items SET state = ?, provider = ?, message_id = ?, fallback = ?, error = ?, error_kind = ?, updated_at = ? WHERE batch_id = ? AND row_no %s ${held}`;
    this.finishStmt = ctx.db.prepare(finish.replace('%s', 'IN (SELECT value FROM json_each(?))'));
    this.finishOneStmt = ctx.db.prepare(finish.replace('%s', '= ?'));
    this.releaseStmt = ctx.db.prepare(
      `UPDATE batch_items SET state = 'pending', updated_at = ? WHERE batch_id = ? AND row_no IN (SELECT value FROM json_each(?)) AND state = 'sending' ${held}`,
    );
  }

  /** Up to `limit` pending rows after row `cursor`, in order. */
  page(cursor: number, limit: number): ItemRow[] {
    return this.pageStmt.all(this.batchId, cursor, limit) as ItemRow[];
  }

  /** Marks pending rows `sending` (run inside a transaction). @returns the row numbers claimed. */
  claim(rows: readonly number[]): Set<number> {
    const now = this.ctx.clock.now().toISOString();
    if (rows.length === 1) {
      const row = rows[0]!;
      return this.claimOneStmt.run(now, this.batchId, row, this.batchId, this.owner).changes === 1 ? new Set([row]) : new Set();
    }
    const got = this.claimStmt.all(now, this.batchId, JSON.stringify(rows), this.batchId, this.owner) as Array<{ row_no: number }>;
    return new Set(got.map((g) => g.row_no));
  }

  /** Records one outcome for rows (run inside a transaction); nothing once the lease is lost. */
  finish(rows: readonly number[], o: Outcome): void {
    const args = [o.state, o.provider, o.messageId, o.fallback ? 1 : 0, o.error, o.errorKind, this.ctx.clock.now().toISOString(), this.batchId] as const;
    if (rows.length === 1) this.finishOneStmt.run(...args, rows[0], this.batchId, this.owner);
    else this.finishStmt.run(...args, JSON.stringify(rows), this.batchId, this.owner);
  }

  /** Hands `sending` rows back to `pending`: their request never reached a provider that took it. Nothing once the lease is lost. */
  release(rows: readonly number[]): void {
    this.releaseStmt.run(this.ctx.clock.now().toISOString(), this.batchId, JSON.stringify(rows), this.batchId, this.owner);
  }
}
