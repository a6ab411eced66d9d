// SQL on a test's store, whichever engine it is (a SQLite file or a postgres:// URL): for tests that read rows
// the CLI does not show, or change a row behind switchboard's back (tamper tests). Statements use `?`
// placeholders (the PostgreSQL executor numbers them); dialect differences are the caller's (see `storeDialect`).
import Database from 'better-sqlite3';
import { SqliteSql, type Sql } from '../../src/store/sql.js';
import { createPgSql } from '../../src/store/pg.js';

/** The engine of `store`: `postgres` for a postgres:// URL, else `sqlite`. */
export function storeDialect(store: string): 'sqlite' | 'postgres' {
  return /^postgres(ql)?:\/\//.test(store) ? 'postgres' : 'sqlite';
}

/**
 * Runs `fn` on an executor of `store` (opened for this call, without migrating: the store must exist) and closes it.
 * Numbers come back as numbers on SQLite and as PostgreSQL gives them (bigint and count(*) as strings): compare
 * with `Number(…)`.
 */
export async function withStoreSql<T>(store: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
  if (storeDialect(store) === 'postgres') {
    const sql = createPgSql(store, 'test');
    try {
      return await fn(sql);
    } finally {
      await sql.close();
    }
  }
  const db = new Database(store, { fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  try {
    return await fn(new SqliteSql(db));
  } finally {
    db.close();
  }
}

/** The rows of one query on `store`. */
export function storeAll<T = Record<string, unknown>>(store: string, text: string, ...args: unknown[]): Promise<T[]> {
  return withStoreSql(store, (sql) => sql.all<T>(text, ...args));
}

/** Runs one statement (an UPDATE, DELETE, INSERT) on `store`; resolves with the rows it changed. */
export async function storeRun(store: string, text: string, ...args: unknown[]): Promise<number> {
  return (await withStoreSql(store, (sql) => sql.run(text, ...args))).changes;
}

/**
 * Every table of a store read through an executor, for comparing stores (the same one before and after, or two
 * across engines): per table its rows as JSON with sorted keys (blobs as hex), sorted; PostgreSQL's own
 * `schema_version` left out, and audit rows whose action is `skipAction` (e.g. `store.copy`).
 */
export async function dumpTables(sql: Sql, opts: { skipAction?: string } = {}): Promise<Record<string, string[]>> {
  const names =
    sql.dialect === 'sqlite'
      ? await sql.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
      : await sql.all<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'");
  const out: Record<string, string[]> = {};
  for (const { name } of names) {
    if (name === 'schema_version') continue;
    const rows = await sql.all<Record<string, unknown>>(`SELECT * FROM ${name}`);
    out[name] = rows
      .filter((r) => opts.skipAction === undefined || r.action !== opts.skipAction)
      .map((r) => JSON.stringify(Object.fromEntries(Object.keys(r).sort().map((k) => [k, Buffer.isBuffer(r[k]) ? (r[k] as Buffer).toString('hex') : r[k]]))))
      .sort();
  }
  return out;
}

/** {@link dumpTables} of the store at `store` (either engine) as one string, for "nothing was written" checks. */
export async function dumpAnyStore(store: string): Promise<string> {
  return JSON.stringify(await withStoreSql(store, (sql) => dumpTables(sql)));
}
