/** Builds the store part of a core context for in-process tests: a real SQLite store file, migrated. */
import { openStore, type Db } from '../../src/store/db.js';
import { SqliteSql } from '../../src/store/sql.js';
import { sqliteStoreOps } from '../../src/store/open.js';
import type { CoreContext } from '../../src/core/context.js';

/** A core context of a SQLite store, with its better-sqlite3 handle for the test's own reads and writes. */
export type SqliteTestCore = CoreContext & { db: Db };

/** Opens (creating) the SQLite store at `file`: `{ db, sql, store }` for a {@link SqliteTestCore}. */
export function sqliteCore(file: string): Pick<SqliteTestCore, 'db' | 'sql' | 'store'> {
  const db = openStore(file);
  return { db, sql: new SqliteSql(db), store: sqliteStoreOps(db, file) };
}
