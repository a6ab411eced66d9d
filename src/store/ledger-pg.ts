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
 * Writes queue and commit in one transaction per event-loop turn (group commit, as the SQLite ledger), with one
 * statement per kind of write whatever the number of rows; commits run one after another, in order.
 */
import type { ItemRow } from '../core/batch/types.js';
import type { Outcome, OutcomeGroup, RunLedger } from './ledger.js';
import { MESSAGE_INSERT_SQL, messageAttemptArgs, type MessageAttempt } from './repos/messages.js';
import type { Sql } from './sql.js';

/** The condition "this worker still holds its lease" (two `?`: batch id, worker). */
export const WORKER_HELD = 'EXISTS (SELECT 1 FROM batch_workers w WHERE w.batch_id = ? AND w.worker = ?)';

/** Hands rows back to `pending` (args: now, batch id, row numbers, worker, batch id, worker). */
const RELEASE_SQL = `UPDATE batch_items SET state = 'pending', updated_at = ?
  WHERE batch_id = ? AND row_no = ANY(?::int[]) AND state = 'sending' AND worker = ? AND ${WORKER_HELD}`;

/** The PostgreSQL types of the columns of {@link MESSAGE_INSERT_SQL}, in the order of {@link messageAttemptArgs}. */
const ATTEMPT_TYPES = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'int', 'int', 'text', 'int'] as const;

/** The writes queued during one event-loop turn, applied as one statement per kind in one transaction. */
interface Turn {
  /** Claims in the order made: each request's rows, told whether all of them were claimed. */
  claims: Array<{ rows: readonly number[]; tell: (ok: boolean) => void }>;
  /** Outcomes: one entry per row. */
  finishes: Array<{ row: number; o: Outcome }>;
  /** Rows handed back to `pending`. */
  releases: number[];
  /** Attempt records. */
  attempts: MessageAttempt[];
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

/** Whether a turn has nothing to commit. */
function idle(turn: Turn): boolean {
  return turn.waiters.length === 0 && turn.attempts.length === 0;
}

function emptyTurn(): Turn {
  return { claims: [], finishes: [], releases: [], attempts: [], waiters: [] };
}

/**
 * The PostgreSQL {@link RunLedger} of one worker (`owner`) of a batch. A turn's writes commit in one transaction
 * of at most four statements whatever their number (one UPDATE for all claims, one for all outcomes through
 * `unnest` of arrays, one for all hand-backs, one INSERT for all attempt records): a round trip costs far more
 * than the rows it carries, so the many small writes of one turn must not each take one. Within a turn the order
 * does not matter: a row's outcome is written only after its claim committed, in a later turn; turns commit in
 * order.
 */
export class PgRunLedger implements RunLedger {
  private turn: Turn = emptyTurn();
  private scheduled = false;
  /** The first failed commit; every later write throws it. */
  private failure: unknown;
  private tail: Promise<void> = Promise.resolve();
  /** A commit is in flight. */
  private committing = false;

  constructor(
    private readonly sql: Sql,
    readonly batchId: string,
    readonly owner: string,
    private readonly now: () => Date,
  ) {}

  /**
   * Reserves up to `limit` pending rows no worker holds to this worker and returns them in row order (`cursor`
   * is not needed: rows this run already had stay reserved to it). Nothing once the worker's lease is gone.
   */
  async page(_cursor: number, limit: number): Promise<ItemRow[]> {
    // The pick in a CTE, run once: as `row_no IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` the planner may run
    // the subquery again for every row, and each run skips the rows the previous ones locked (measured: LIMIT 64
    // reserved all 3,000 rows).
    const rows = await this.sql.all<ItemRow>(
      `WITH picked AS MATERIALIZED (
         SELECT row_no FROM batch_items WHERE batch_id = ? AND state = 'pending' AND worker IS NULL ORDER BY row_no LIMIT ? FOR UPDATE SKIP LOCKED)
       UPDATE batch_items b SET worker = ? FROM picked WHERE b.batch_id = ? AND b.row_no = picked.row_no AND ${WORKER_HELD}
       RETURNING b.row_no, b.line_no, b.recipient, b.vars, b.state`,
      this.batchId, limit, this.owner, this.batchId, this.batchId, this.owner,
    );
    return rows.sort((a, b) => a.row_no - b.row_no);
  }

  claim(rows: readonly number[]): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let ok = false;
      const turn = this.queue();
      turn.claims.push({ rows, tell: (v) => (ok = v) });
      turn.waiters.push({ resolve: () => resolve(ok), reject });
    });
  }

  settle(groups: readonly OutcomeGroup[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const turn = this.queue();
      for (const g of groups) {
        if (g.outcome.state === 'pending') turn.releases.push(...g.rows);
        else for (const row of g.rows) turn.finishes.push({ row, o: g.outcome });
      }
      turn.waiters.push({ resolve, reject });
    });
  }

  logAttempts(rows: readonly MessageAttempt[]): void {
    if (rows.length === 0) return;
    this.queue().attempts.push(...rows);
  }

  async flush(): Promise<void> {
    await this.run();
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * The turn writes go to; schedules its commit at the end of the event-loop turn (or after the commit in
   * flight). @throws an earlier failure.
   */
  private queue(): Turn {
    if (this.failure !== undefined) throw this.failure;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.run());
    }
    return this.turn;
  }

  /**
   * Commits the queued writes, unless a commit is in flight: then that commit, once it ended, commits everything
   * queued meanwhile in one statement (one commit, one WAL flush, for all the writes that waited for it).
   * Resolves when the commit (and those it started) ended.
   */
  private run(): Promise<void> {
    this.scheduled = false;
    const turn = this.turn;
    if (this.committing || idle(turn)) return this.tail;
    this.turn = emptyTurn();
    this.committing = true;
    this.tail = (async () => {
      try {
        if (this.failure !== undefined) throw this.failure;
        await this.write(this.sql, turn);
        for (const w of turn.waiters) w.resolve();
      } catch (err) {
        this.failure ??= err;
        for (const w of turn.waiters) w.reject(err);
      } finally {
        this.committing = false;
      }
      // (Only with writes waiting: with none, run() returns this very promise.)
      if (!idle(this.turn)) await this.run();
    })();
    return this.tail;
  }

  /**
   * One turn's writes as one statement (data-modifying CTEs: atomic, one round trip): the claims' UPDATE, the
   * outcomes' UPDATE, the hand-backs' UPDATE and the attempts' INSERT. They touch disjoint rows (a row's outcome
   * comes in a later turn than its claim; a row handed back stays reserved to this worker, so it is not claimed
   * again in this run). Claims of a request that got only part of its rows are handed back by a second statement.
   */
  private async write(t: Sql, turn: Turn): Promise<void> {
    const now = this.now().toISOString();
    const parts: string[] = [];
    const args: unknown[] = [];
    if (turn.claims.length > 0) {
      parts.push(`c AS (UPDATE batch_items SET state = 'sending', attempts = attempts + 1, updated_at = ?
        WHERE batch_id = ? AND row_no = ANY(?::int[]) AND state = 'pending' AND worker = ? AND ${WORKER_HELD} RETURNING row_no)`);
      args.push(now, this.batchId, turn.claims.flatMap((c) => c.rows), this.owner, this.batchId, this.owner);
    }
    if (turn.finishes.length > 0) {
      const f = turn.finishes;
      parts.push(`f AS (UPDATE batch_items b SET state = v.state, provider = v.provider, message_id = v.message_id, fallback = v.fallback,
          error = v.error, error_kind = v.error_kind, updated_at = ?
        FROM unnest(?::int[], ?::text[], ?::text[], ?::text[], ?::int[], ?::text[], ?::text[]) AS v(row_no, state, provider, message_id, fallback, error, error_kind)
        WHERE b.batch_id = ? AND b.row_no = v.row_no AND b.worker = ? AND ${WORKER_HELD})`);
      args.push(
        now,
        f.map((x) => x.row), f.map((x) => x.o.state), f.map((x) => x.o.provider), f.map((x) => x.o.messageId), f.map((x) => (x.o.fallback ? 1 : 0)),
        f.map((x) => x.o.error), f.map((x) => x.o.errorKind),
        this.batchId, this.owner, this.batchId, this.owner,
      );
    }
    if (turn.releases.length > 0) {
      parts.push(`r AS (${RELEASE_SQL})`);
      args.push(now, this.batchId, turn.releases, this.owner, this.batchId, this.owner);
    }
    if (turn.attempts.length > 0) {
      const cols = turn.attempts.map((a) => messageAttemptArgs(a));
      parts.push(`a AS (${MESSAGE_INSERT_SQL.slice(0, MESSAGE_INSERT_SQL.lastIndexOf('VALUES'))}
        SELECT * FROM unnest(${ATTEMPT_TYPES.map((ty) => `?::${ty}[]`).join(', ')}))`);
      args.push(...ATTEMPT_TYPES.map((_, k) => cols.map((c) => c[k])));
    }
    const got = await t.all<{ row_no: number }>(`WITH ${parts.join(',\n')} SELECT ${turn.claims.length > 0 ? 'row_no FROM c' : '1 AS row_no'}`, ...args);
    if (turn.claims.length === 0) return;
    const claimed = new Set(got.map((g) => g.row_no));
    const back: number[] = [];
    for (const c of turn.claims) {
      const ok = c.rows.every((r) => claimed.has(r));
      c.tell(ok);
      // All or none: rows claimed of a request that cannot leave go back at once.
      if (!ok) back.push(...c.rows.filter((r) => claimed.has(r)));
    }
    if (back.length > 0) await t.run(RELEASE_SQL, now, this.batchId, back, this.owner, this.batchId, this.owner);
  }
}
