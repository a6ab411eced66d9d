/** Builds the store part of a core context for in-process tests: a real SQLite store file, migrated. */
import { openStore } from '../../src/store/db.js';
import { SqliteSql } from '../../src/store/sql.js';
import type { CoreContext } from '../../src/core/context.js';

/** Opens (creating) the SQLite store at `file`: `{ db, sql }` for a {@link CoreContext}. */
export function sqliteCore(file: string): Pick<CoreContext, 'db' | 'sql'> {
  const db = openStore(file);
  return { db, sql: new SqliteSql(db) };
}
