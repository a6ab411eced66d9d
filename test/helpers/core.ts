/** Builds the store part of a core context for in-process tests: a real SQLite store file, migrated. */
import { locateStore, openStore, type Db } from '../../src/store/db.js';
import { SqliteSql } from '../../src/store/sql.js';
import { openStoreHandle, sqliteStoreOps } from '../../src/store/open.js';
import { systemClock, type CoreContext } from '../../src/core/context.js';

/** A core context of a SQLite store, with its better-sqlite3 handle for the test's own reads and writes. */
export type SqliteTestCore = CoreContext & { db: Db };

/** Opens (creating) the SQLite store at `file`: `{ db, sql, store }` for a {@link SqliteTestCore}. */
export function sqliteCore(file: string): Pick<SqliteTestCore, 'db' | 'sql' | 'store'> {
  const db = openStore(file);
  return { db, sql: new SqliteSql(db), store: sqliteStoreOps(db, file) };
}

/**
 * Runs `fn` with a core context on the existing store `store` (a SQLite file or a postgres:// URL), environment
 * `env` (for the master key) and the real clock; closes the store after.
 */
export async function withCore<T>(store: string, env: NodeJS.ProcessEnv, fn: (ctx: CoreContext) => Promise<T>): Promise<T> {
  const handle = await openStoreHandle(locateStore(store, 'store'));
  try {
    return await fn({ sql: handle.sql, store: handle.ops, storePath: handle.location, clock: systemClock, env, actor: 'test@host' });
  } finally {
    await handle.close();
  }
}
