/**
 * The statement executor every repository in `src/store/` runs on (DESIGN §3): one async interface over the
 * SQLite store (better-sqlite3, synchronous underneath) and the shared PostgreSQL store (pg). Repositories write
 * SQL once with `?` placeholders; the PostgreSQL executor numbers them (`$1`, `$2`, …). Where the dialects
 * differ (a list parameter, a lock clause), a repository branches on {@link Sql.dialect}.
 *
 * Conventions both schemas keep so that rows read the same on both: booleans are INTEGER 0/1, times are ISO 8601
 * text (UTC, so they sort as text), JSON is text, blobs are BLOB/BYTEA (read as Buffer), and 64-bit integers
 * are read as JavaScript numbers (ids and counts stay far below 2^53).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { prepared, isBusy, type Db } from './db.js';

/** Statement texts the PostgreSQL executor runs as named prepared statements (see {@link named}): their names. */
const statementNames = new Map<string, string>();

/**
 * Marks `sql` (a fixed text with `?` placeholders) to run on PostgreSQL as a named prepared statement
 * (https://node-postgres.com/features/queries#prepared-statements): each pooled connection parses and plans it
 * once, then only binds and executes it, so the server skips parsing and planning (measured: 20-25 % of the run
 * ledger's statements' server time). For the few hot texts of a bulk run only: a connection keeps every statement
 * it prepared until it closes, so texts built from varying parts (an `IN` list of any length) must not be marked.
 * After five runs the server may keep a generic plan (one for any argument values): a marked statement must bound
 * what it reads whatever the plan (the run ledger's statements name their rows' range, see `ledger-pg.ts`).
 * SQLite ignores the mark (its executor prepares every statement once anyway).
 * @returns `sql` itself.
 */
export function named(sql: string): string {
  if (!statementNames.has(sql)) statementNames.set(sql, `sb${statementNames.size + 1}`);
  return sql;
}

/** The name `sql` runs under as a prepared statement on PostgreSQL (see {@link named}), or undefined. */
export function statementName(sql: string): string | undefined {
  return statementNames.get(sql);
}

/** Which engine a store runs on. */
export type Dialect = 'sqlite' | 'postgres';

/** What a write statement changed. */
export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
}

/**
 * Runs SQL on a store. Every method is async (pg is); on SQLite they run synchronously and resolve at once.
 * Statements outside {@link Sql.tx} are each their own transaction.
 */
export interface Sql {
  /** The engine: repositories branch on it only where the SQL differs. */
  readonly dialect: Dialect;
  /** All rows of a query. `args` bind to `?` placeholders in order. */
  all<T = Record<string, unknown>>(sql: string, ...args: unknown[]): Promise<T[]>;
  /** The first row of a query, or undefined. */
  get<T = Record<string, unknown>>(sql: string, ...args: unknown[]): Promise<T | undefined>;
  /** Runs a write statement. */
  run(sql: string, ...args: unknown[]): Promise<RunResult>;
  /**
   * The rows of a query, read as the loop asks for them, for results too large to hold at once (a tenant's whole
   * suppression list): memory stays flat whatever their number. SQLite steps one statement: the connection is
   * held until the rows are read to the end or the loop breaks, so run no other statement of this process inside
   * the loop. PostgreSQL reads them through a cursor, 1,000 rows a fetch, in a read-only transaction of its own
   * (or in the open one). @throws (rejects with) the store's error.
   */
  iterate<T = Record<string, unknown>>(sql: string, ...args: unknown[]): AsyncIterable<T>;
  /**
   * Runs `fn` in one transaction (SQLite `BEGIN IMMEDIATE`, so two writers never deadlock on an upgrade;
   * PostgreSQL `BEGIN` on a connection of its own) and commits when it resolves, rolls back when it rejects.
   * `fn` must run its statements on the handle it is given. A `tx` inside a `tx` joins the outer one.
   * @throws whatever `fn` throws; a busy store's error (see `isBusy`) when the lock is held past the busy timeout.
   */
  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
}

/**
 * The SQLite executor: better-sqlite3 statements (prepared once per handle, see `prepared`) behind the async
 * interface. One connection serves the whole process, so while a transaction is open (its `fn` may await) every
 * other caller waits for it to end: no statement of another caller can land inside it.
 */
export class SqliteSql implements Sql {
  readonly dialect = 'sqlite' as const;
  /** Resolves when the open transaction ends; null when none is open. */
  private open: Promise<void> | null = null;

  constructor(
    /** The better-sqlite3 handle (for the SQLite-only paths: backup, vacuum, the ledger's group commit). */
    readonly db: Db,
  ) {}

  async all<T>(sql: string, ...args: unknown[]): Promise<T[]> {
    while (this.open) await this.open;
    return prepared(this.db, sql).all(...args) as T[];
  }

  async get<T>(sql: string, ...args: unknown[]): Promise<T | undefined> {
    while (this.open) await this.open;
    return prepared(this.db, sql).get(...args) as T | undefined;
  }

  async run(sql: string, ...args: unknown[]): Promise<RunResult> {
    while (this.open) await this.open;
    return { changes: prepared(this.db, sql).run(...args).changes };
  }

  async *iterate<T>(sql: string, ...args: unknown[]): AsyncIterable<T> {
    while (this.open) await this.open;
    yield* prepared(this.db, sql).iterate(...args) as Iterable<T>;
  }

  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    while (this.open) await this.open;
    let release!: () => void;
    this.open = new Promise((resolve) => (release = resolve));
    try {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const value = await fn(new SqliteTx(this.db));
        this.db.exec('COMMIT');
        return value;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      this.open = null;
      release();
    }
  }

  /**
   * Runs synchronous work on the handle once no transaction of this executor is open, with nothing able to
   * interleave: for SQLite-only hot paths (the ledger's group commit) that keep better-sqlite3's own
   * `db.transaction`. @returns what `fn` returns.
   */
  async exclusive<T>(fn: (db: Db) => T): Promise<T> {
    while (this.open) await this.open;
    return fn(this.db);
  }

  /** True while a transaction of this executor is open (a synchronous caller must then wait, see {@link exclusive}). */
  get busy(): boolean {
    return this.open !== null;
  }
}

/** The handle a SQLite transaction's `fn` runs on: statements go straight to the connection that holds it. */
class SqliteTx implements Sql {
  readonly dialect = 'sqlite' as const;
  constructor(private readonly db: Db) {}

  async all<T>(sql: string, ...args: unknown[]): Promise<T[]> {
    return prepared(this.db, sql).all(...args) as T[];
  }

  async get<T>(sql: string, ...args: unknown[]): Promise<T | undefined> {
    return prepared(this.db, sql).get(...args) as T | undefined;
  }

  async run(sql: string, ...args: unknown[]): Promise<RunResult> {
    return { changes: (prepared(this.db, sql) as BetterSqlite3.Statement).run(...args).changes };
  }

  async *iterate<T>(sql: string, ...args: unknown[]): AsyncIterable<T> {
    yield* prepared(this.db, sql).iterate(...args) as Iterable<T>;
  }

  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return fn(this);
  }
}

/**
 * Runs a whole transaction again while it meets a lock held past the busy timeout, up to `attempts` times in all,
 * waiting asynchronously between attempts (each attempt itself waits the busy timeout, `BUSY_TIMEOUT_MS`) (timers and signals keep running, unlike a synchronous retry):
 * for writes a bulk send must not lose to a long reader or writer elsewhere. `fn` must be a whole transaction.
 * @param pauseMs wait between attempts (ms)
 * @throws the last busy error, or any other error at once.
 */
export async function retryBusyAsync<T>(fn: () => Promise<T>, attempts = 30, pauseMs = 50): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await fn();
    } catch (err) {
      if (!isBusy(err) || n >= attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
}

/**
 * A condition "`column` is one of `values`" with one placeholder, for either dialect: SQLite
 * `column IN (SELECT value FROM json_each(?))` bound to a JSON array, PostgreSQL `column = ANY(?)` bound to an
 * array. @returns the SQL fragment and its one argument.
 */
export function inList(sql: Sql, column: string, values: readonly unknown[]): { cond: string; arg: unknown } {
  return sql.dialect === 'postgres'
    ? { cond: `${column} = ANY(?)`, arg: [...values] }
    : { cond: `${column} IN (SELECT value FROM json_each(?))`, arg: JSON.stringify(values) };
}

/**
 * `expr` for an ORDER BY that must sort text in byte order on both engines, as SQLite's default BINARY collation
 * does: on PostgreSQL `expr COLLATE "C"` (a database's default collation, e.g. en-US, orders `b_x`, `b-x`, `b@`
 * otherwise). @param expr a column or expression of the query (SQL text, never user input).
 */
export function byteOrder(sql: Sql, expr: string): string {
  return sql.dialect === 'postgres' ? `${expr} COLLATE "C"` : expr;
}
