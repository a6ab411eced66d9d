/**
 * Opening a store by where it is (DESIGN §3): a path is a SQLite file (created 0600, migrated on open); a
 * `postgres://` URL names the shared PostgreSQL store. Both give the same {@link StoreHandle}: the executor that
 * repositories run on, plus facts for `key status` and `doctor`.
 */
import { backupStore, checkpointStore, openStore, mapSqliteError, vacuumStore, type BackupResult, type Db, type OpenOptions, type StoreLocation, type VacuumResult } from './db.js';
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
  /** Care of the store itself, per engine (the store's write check, checkpoint, backup, vacuum). */
  ops: StoreOps;
  /** Closes the connection(s). */
  close(): Promise<void>;
  /** The engine's version and the store's schema version (for `key status` and `doctor`). */
  describe(): Promise<StoreDescription>;
}

/**
 * What core and the `store` commands do to the store itself, where the engines differ (DESIGN §3): core reaches
 * the store only through repositories over `Sql` and through these.
 */
export interface StoreOps {
  /**
   * Takes the write lock and releases it (SQLite `BEGIN IMMEDIATE`/`ROLLBACK`), or begins and commits a
   * transaction that takes a transaction id (PostgreSQL: a read-only standby refuses it).
   * @returns what was done, one line. @throws the engine's error when the store cannot be written.
   */
  checkWritable(): Promise<string>;
  /**
   * After rows holding secrets were removed (zeroed in place by `secure_delete`): SQLite empties its write-ahead
   * log of their old copies (`wal_checkpoint(TRUNCATE)`); nothing to do on PostgreSQL.
   * @returns false when a reader kept the log from being emptied (never throws).
   */
  checkpoint(): Promise<boolean>;
  /**
   * SQLite only (undefined on PostgreSQL, which is backed up with pg_dump): the online backup to a new file
   * `out`, mode 0600 (see `backupStore`). @throws UsageError if `out` exists and `overwrite` is false.
   */
  backup?: (out: string, overwrite: boolean) => Promise<BackupResult>;
  /** SQLite only (undefined on PostgreSQL: autovacuum): rebuilds the file without free pages (see `vacuumStore`). */
  vacuum?: () => Promise<VacuumResult>;
}

/** The {@link StoreOps} of the SQLite store `file` open as `db`. */
export function sqliteStoreOps(db: Db, file: string): StoreOps {
  return {
    checkWritable: async () => {
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      return 'took and released the write lock';
    },
    checkpoint: async () => checkpointStore(db),
    backup: (out, overwrite) => backupStore(db, file, out, overwrite),
    vacuum: async () => vacuumStore(db, file),
  };
}

/** What `key status` and `doctor` say about the store. */
export interface StoreDescription {
  /** `sqlite` or `postgres`. */
  backend: Dialect;
  /** The file path, or the URL without its password. */
  location: string;
  /** The engine's version: SQLite's library version (`3.53.2`), or PostgreSQL's `server_version` (`15.8 (Debian …)`). */
  serverVersion: string;
  /** The store's schema version (`PRAGMA user_version`, or PostgreSQL's `schema_version` table). */
  schemaVersion: number;
}

/**
 * Opens the store at `location` (see `resolveStore`): a SQLite file (see {@link openSqliteHandle}) or a PostgreSQL
 * database (connected through a pool and migrated; `pg` is loaded only then). With `create: false` a missing file,
 * or a database without a switchboard schema, is the "no store at …" error (exit 2).
 * @throws UsageError, LockedError, OperationFailed: one line naming the store without its password.
 */
export async function openStoreHandle(location: StoreLocation, opts: OpenOptions = {}): Promise<StoreHandle> {
  if (location.backend === 'sqlite') return openSqliteHandle(location.path, opts);
  const { openPgHandle } = await import('./pg.js');
  return openPgHandle(location.url, location.display, opts);
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
    ops: sqliteStoreOps(db, file),
    close: async () => {
      db.close();
    },
    describe: async () => ({
      backend: 'sqlite',
      location: file,
      serverVersion: (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v,
      schemaVersion: db.pragma('user_version', { simple: true }) as number,
    }),
  };
}
