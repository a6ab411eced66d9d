/**
 * Opening a store by where it is (DESIGN §3): a path is a SQLite file (created 0600, migrated on open); a
 * `postgres://` URL names the shared PostgreSQL store. Both give the same {@link StoreHandle}: the executor that
 * repositories run on, plus facts for `key status` and `doctor`.
 */
import { openStore, mapSqliteError, type Db, type OpenOptions } from './db.js';
import { SqliteSql, type Dialect, type Sql } from './sql.js';

/** An open store. */
export interface StoreHandle {
  /** The engine. */
  backend: Dialect;
  /** Where it is, for messages: the file path, or the URL without its password. */
  location: string;
  /** The executor repositories run on. */
  sql: Sql;
  /** The better-sqlite3 handle of a SQLite store (backup, vacuum, the ledger's group commit); undefined on PostgreSQL. */
  db?: Db;
  /** Closes the connection(s). */
  close(): Promise<void>;
}

/**
 * Opens the SQLite store at `file` (see `openStore` for creation, modes and migration).
 * @throws UsageError, LockedError as `openStore` does, mapped by `mapSqliteError`.
 */
export function openSqliteHandle(file: string, opts: OpenOptions = {}): StoreHandle {
  let db: Db;
  try {
    db = openStore(file, opts);
  } catch (err) {
    throw mapSqliteError(err, file);
  }
  return {
    backend: 'sqlite',
    location: file,
    sql: new SqliteSql(db),
    db,
    close: async () => {
      db.close();
    },
  };
}
