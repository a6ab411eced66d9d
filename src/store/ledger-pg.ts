/**
 * The PostgreSQL run ledger (see `ledger.ts` for the interface and its guarantees). Several workers (processes,
 * on one host or several) may work one batch, each under a lease of its own (a `batch_workers` row, see
 * `repos/batches.ts`): every write here holds only while that row exists, so a worker whose lease expired and was
 * reaped by another writes nothing more.
 *
 * - {@link PgRunLedger.page} reserves pending rows to this worker (`batch_items.worker`) with
 *   `FOR UPDATE SKIP LOCKED`: two workers never get the same row, and neither waits for the other's rows.
 * - {@link PgRunLedger.claim} marks reserved rows `sending` as their request leaves (after the rate slot).
 * - A row handed back (`pending`) stays reserved to this worker until the run ends, so this run does not page it
 *   again (as the SQLite run's cursor does); the run's end gives its reserved rows back to the others.
 *
 * Writes queue and commit in one transaction per event-loop turn (group commit, as the SQLite ledger): one round
 * trip per statement, one transaction for all writes of a turn; commits run one after another, in order.
 */
import type { ItemRow } from '../core/batch/types.js';
import type { Outcome, OutcomeGroup, RunLedger } from './ledger.js';
import { MESSAGE_INSERT_SQL, messageAttemptArgs, type MessageAttempt } from './repos/messages.js';
import type { Sql } from './sql.js';

/** The condition "this worker still holds its lease" (two `?`: batch id, worker). */
export const WORKER_HELD = 'EXISTS (SELECT 1 FROM batch_workers w WHERE w.batch_id = ? AND w.worker = ?)';

/** A write of a group commit: statements on the commit's transaction. */
type Write = (t: Sql) => Promise<void>;

/**
 * Group commit over an async executor: writes queued during one event-loop turn commit together in one
 * transaction (`sql.tx`) when the turn ends; commits run in order. A transaction run again (serialization
 * failure) runs its writes again: each write must leave the same effect when run twice in a fresh transaction.
 */
export class AsyncGroupCommit {
  private writes: Write[] = [];
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  private failure: unknown;
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly sql: Sql) {}

  /** Queues `write`; resolves once it is committed. @throws (rejects with) the store's error. */
  commit(write: Write): Promise<void> {
    return new Promise((resolve, reject) => {
      this.defer(write);
      this.waiters.push({ resolve, reject });
    });
  }

  /** Queues `write` without waiting for it; a failure rejects the next {@link commit} and {@link flush}. */
  defer(write: Write): void {
    if (this.failure !== undefined) throw this.failure;
    this.writes.push(write);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.run());
    }
  }

  /** Commits everything queued now. @throws (rejects with) the store's error (also of an earlier deferred write). */
  async flush(): Promise<void> {
    await this.run();
    if (this.failure !== undefined) throw this.failure;
  }

  private run(): Promise<void> {
    this.scheduled = false;
    const writes = this.writes;
    const waiters = this.waiters;
    if (writes.length === 0) return this.tail;
    this.writes = [];
    this.waiters = [];
    this.tail = this.tail.then(async () => {
      try {
        if (this.failure !== undefined) throw this.failure;
        await this.sql.tx(async (t) => {
          for (const w of writes) await w(t);
        });
      } catch (err) {
        this.failure ??= err;
        for (const w of waiters) w.reject(err);
        return;
      }
      for (const w of waiters) w.resolve();
    });
    return this.tail;
  }
}

/** The PostgreSQL {@link RunLedger} of one worker (`owner`) of a batch. */
export class PgRunLedger implements RunLedger {
  private readonly journal: AsyncGroupCommit;

  constructor(
    private readonly sql: Sql,
    readonly batchId: string,
    readonly owner: string,
    private readonly now: () => Date,
  ) {
    this.journal = new AsyncGroupCommit(sql);
  }

  /**
   * Reserves up to `limit` pending rows no worker holds to this worker and returns them in row order (`cursor`
   * is not needed: rows this run already had stay reserved to it). Nothing once the worker's lease is gone.
   */
  async page(_cursor: number, limit: number): Promise<ItemRow[]> {
    const rows = await this.sql.all<ItemRow>(
      `UPDATE batch_items SET worker = ? WHERE batch_id = ? AND row_no IN (
         SELECT row_no FROM batch_items WHERE batch_id = ? AND state = 'pending' AND worker IS NULL ORDER BY row_no LIMIT ? FOR UPDATE SKIP LOCKED)
         AND ${WORKER_HELD}
       RETURNING row_no, line_no, recipient, vars, state`,
      this.owner, this.batchId, this.batchId, limit, this.batchId, this.owner,
    );
    return rows.sort((a, b) => a.row_no - b.row_no);
  }

  async claim(rows: readonly number[]): Promise<boolean> {
    let ok = false;
    await this.journal.commit(async (t) => {
      const now = this.now().toISOString();
      const got = await t.all<{ row_no: number }>(
        `UPDATE batch_items SET state = 'sending', attempts = attempts + 1, updated_at = ?
         WHERE batch_id = ? AND row_no = ANY(?::int[]) AND state = 'pending' AND worker = ? AND ${WORKER_HELD} RETURNING row_no`,
        now, this.batchId, rows, this.owner, this.batchId, this.owner,
      );
      ok = got.length === rows.length;
      // All or none: rows claimed of a request that cannot leave go back at once.
      if (!ok && got.length > 0) await this.release(t, got.map((g) => g.row_no), now);
    });
    return ok;
  }

  settle(groups: readonly OutcomeGroup[]): Promise<void> {
    return this.journal.commit(async (t) => {
      const now = this.now().toISOString();
      for (const g of groups) {
        if (g.outcome.state === 'pending') await this.release(t, g.rows, now);
        else await this.finish(t, g.rows, g.outcome, now);
      }
    });
  }

  logAttempts(rows: readonly MessageAttempt[]): void {
    if (rows.length === 0) return;
    this.journal.defer(async (t) => {
      // One statement for all of a turn's attempts: a multi-row VALUES list.
      const one = MESSAGE_INSERT_SQL.slice(MESSAGE_INSERT_SQL.lastIndexOf('VALUES') + 'VALUES'.length).trim();
      const head = MESSAGE_INSERT_SQL.slice(0, MESSAGE_INSERT_SQL.lastIndexOf('VALUES') + 'VALUES'.length);
      await t.run(`${head} ${rows.map(() => one).join(', ')}`, ...rows.flatMap((r) => messageAttemptArgs(r)));
    });
  }

  flush(): Promise<void> {
    return this.journal.flush();
  }

  private async finish(t: Sql, rows: readonly number[], o: Outcome, now: string): Promise<void> {
    await t.run(
      `UPDATE batch_items SET state = ?, provider = ?, message_id = ?, fallback = ?, error = ?, error_kind = ?, updated_at = ?
       WHERE batch_id = ? AND row_no = ANY(?::int[]) AND worker = ? AND ${WORKER_HELD}`,
      o.state, o.provider, o.messageId, o.fallback ? 1 : 0, o.error, o.errorKind, now, this.batchId, rows, this.owner, this.batchId, this.owner,
    );
  }

  private async release(t: Sql, rows: readonly number[], now: string): Promise<void> {
    await t.run(
      `UPDATE batch_items SET state = 'pending', updated_at = ?
       WHERE batch_id = ? AND row_no = ANY(?::int[]) AND state = 'sending' AND worker = ? AND ${WORKER_HELD}`,
      now, this.batchId, rows, this.owner, this.batchId, this.owner,
    );
  }
}
