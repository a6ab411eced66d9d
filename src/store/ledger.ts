/**
 * The run ledger (DESIGN §6): what one bulk-send run does to its batch's rows while it holds the batch's lease.
 * The runner says what to record; an implementation per store says how. The SQLite one
 * (`ledger-sqlite.ts`) keeps the measured hot path: one transaction per event-loop turn for every write of
 * that turn (group commit), one statement per request's rows, statements prepared once.
 *
 * Guarantees every implementation keeps:
 * - {@link RunLedger.claim} resolves only once the rows are durably `sending` (the caller sends the request
 *   after it): a crash from then on leaves them `sending`, which the next lease-taker turns `unknown`.
 * - Claims, outcomes and hand-backs change rows only while this run's owner holds the batch's lease: a run whose
 *   lease was taken over writes nothing more.
 * - Writes are applied in the order they were made (PostgreSQL: each row's writes, and the outcomes among
 *   themselves; claims of other rows may commit beside them).
 *
 * On PostgreSQL several worker processes may work one batch, each under a lease of its own (`ledger-pg.ts`):
 * {@link RunLedger.page} reserves rows to the worker (`FOR UPDATE SKIP LOCKED`), so workers get disjoint rows,
 * and every write holds only while the worker's own lease does.
 */
import type { ItemRow, ItemState } from '../core/batch/types.js';
import type { AttemptJournal } from './repos/messages.js';
import { SqliteSql, type Sql } from './sql.js';
import { SqliteRunLedger } from './ledger-sqlite.js';
import { PgRunLedger } from './ledger-pg.js';

/** What the ledger records for a row once a request for it ended (or it was skipped). */
export interface Outcome {
  /** `pending` hands the row back (its request never reached a provider that took it): see {@link RunLedger.settle}. */
  state: ItemState;
  provider: string | null;
  messageId: string | null;
  fallback: boolean;
  error: string | null;
  /** The error class of a failed row (`recipient`, `render`, …), else null. */
  errorKind: string | null;
}

/** Rows (row numbers) that share one outcome: written with one statement. */
export interface OutcomeGroup {
  rows: readonly number[];
  outcome: Outcome;
}

/** One run's writes to its batch's rows, under the lease of `owner` (see the module's guarantees). */
export interface RunLedger extends AttemptJournal {
  readonly batchId: string;
  /** The lease owner this run writes as (e.g. `4242@host`). */
  readonly owner: string;
  /** Up to `limit` pending rows after row number `cursor`, in row order. */
  page(cursor: number, limit: number): Promise<ItemRow[]>;
  /**
   * Claims the rows one request carries: marks them all `sending` (attempts + 1), or none when any of them is
   * no longer pending or the lease is lost. Resolves once that is committed. @returns whether all were claimed.
   * @throws (rejects with) the store's error.
   */
  claim(rows: readonly number[]): Promise<boolean>;
  /**
   * Records outcomes: each group's rows get its outcome; a group with state `pending` hands its `sending` rows
   * back to `pending`. Resolves once committed; nothing is written once the lease is lost.
   * @throws (rejects with) the store's error.
   */
  settle(groups: readonly OutcomeGroup[]): Promise<void>;
  /** Commits everything queued (attempt records included). @throws the store's error, also of an earlier queued write. */
  flush(): Promise<void>;
}

/**
 * The run ledger for a store: the SQLite one (one run per batch, under the batch's lease) or the PostgreSQL one
 * (one of several workers, each under its own lease: see `ledger-pg.ts`).
 * @param owner the lease owner (SQLite) or worker id (PostgreSQL) the run writes as
 * @param now the run's clock (times written are its ISO 8601 form)
 */
export function openRunLedger(sql: Sql, batchId: string, owner: string, now: () => Date): RunLedger {
  if (sql instanceof SqliteSql) return new SqliteRunLedger(sql, batchId, owner, now);
  return new PgRunLedger(sql, batchId, owner, now);
}
