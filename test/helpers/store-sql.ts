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
 * A logical dump of every table of `store` (either engine), for "nothing was written" checks: per table its rows
 * as sorted JSON lines, blobs in hex, numbers as numbers (PostgreSQL's bigint text made a number).
 */
export async function dumpAnyStore(store: string): Promise<string> {
  return withStoreSql(store, async (sql) => {
    const tables =
      sql.dialect === 'postgres'
        ? await sql.all<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1")
        : await sql.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name");
    const out: Record<string, string[]> = {};
    for (const { name } of tables) {
      const rows = await sql.all(`SELECT * FROM "${name.replace(/"/g, '""')}"`);
      out[name] = rows
        .map((r) => JSON.stringify(r, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : typeof v === 'string' && /^-?\d{1,15}$/.test(v) ? Number(v) : v)))
        .sort();
    }
    return JSON.stringify(out);
  });
}
