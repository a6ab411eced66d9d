/**
 * The SQLite store (better-sqlite3): opening, pragmas, migrations, file permissions.
 * DESIGN §3: WAL, busy_timeout, foreign keys, numbered migrations in `PRAGMA user_version`,
 * applied in one transaction on open; the file is created with mode 0600.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';
import { migrations } from './migrations.js';
import { LockedError, SwitchboardError, UsageError } from '../errors.js';

/** An open store: the database handle plus facts about the file. */
export type Db = Database.Database;

/** How long (ms) a writer waits for another process's write lock before giving up. */
export const BUSY_TIMEOUT_MS = 10_000;

/** Schema version this build writes (the number of migrations). */
export const SCHEMA_VERSION = migrations.length;

/**
 * Driver options: better-sqlite3's documented `nativeBinding` option, set to its compiled addon where its npm
 * install puts it (`build/Release/better_sqlite3.node`), so opening the store skips the `bindings` package's
 * search through a dozen candidate paths (1-2 ms of every command, DESIGN §8 start-up). When the addon is
 * elsewhere (a debug build), no option: the driver searches as usual.
 */
function driverOptions(): Database.Options {
  try {
    return { nativeBinding: createRequire(import.meta.url).resolve('better-sqlite3/build/Release/better_sqlite3.node') };
  } catch {
    return {};
  }
}

/**
 * Resolves the store path: `--store`, then `SWITCHBOARD_STORE`, then
 * `$XDG_DATA_HOME/switchboard/switchboard.db` (default `~/.local/share/switchboard/switchboard.db`).
 */
export function resolveStorePath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag) return path.resolve(flag);
  if (env.SWITCHBOARD_STORE) return path.resolve(env.SWITCHBOARD_STORE);
  const dataHome = env.XDG_DATA_HOME || path.join(env.HOME || os.homedir(), '.local', 'share');
  return path.join(dataHome, 'switchboard', 'switchboard.db');
}

/**
 * Opens (creating if needed) the store at `file` and migrates it to {@link SCHEMA_VERSION}.
 * A new file is created with mode 0600 in a directory created with mode 0700.
 * @throws UsageError if the store was written by a newer switchboard (schema too new) or is not a SQLite file.
 * @throws LockedError if another process holds the write lock longer than {@link BUSY_TIMEOUT_MS}.
 */
export function openStore(file: string): Db {
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // Create the file ourselves so it never exists with a wider mode, whatever the umask.
    fs.closeSync(fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_WRONLY, 0o600));
  }
  fs.chmodSync(file, 0o600);
  let db: Db;
  try {
    db = new Database(file, driverOptions());
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
  } catch (err) {
    throw mapSqliteError(err, file);
  }
  try {
    migrate(db);
  } catch (err) {
    db.close();
    throw mapSqliteError(err, file);
  }
  return db;
}

/**
 * Opens an existing store read-only, without creating, migrating or changing it (shell completion reads ids from
 * it while the user types). Returns null when there is no store file or it cannot be opened.
 */
export function openStoreReadOnly(file: string): Db | null {
  if (!fs.existsSync(file)) return null;
  try {
    const db = new Database(file, { ...driverOptions(), readonly: true, fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    return db;
  } catch {
    return null;
  }
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new UsageError(
      `store schema version ${current} is newer than this switchboard understands (${SCHEMA_VERSION}); upgrade switchboard`,
    );
  }
  if (current === SCHEMA_VERSION) return;
  // IMMEDIATE: two processes opening a new store at once must not both migrate.
  const run = db.transaction(() => {
    const v = db.pragma('user_version', { simple: true }) as number;
    for (let i = v; i < SCHEMA_VERSION; i++) {
      db.exec(migrations[i]!);
      if (i === 0) {
        db.prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)').run(
          'store_id',
          randomUUID(),
          'created_at',
          new Date().toISOString(),
        );
      }
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
  run.immediate();
}

const statements = new WeakMap<Db, Map<string, Database.Statement>>();

/**
 * The prepared statement for `sql` on this store handle, prepared on first use and reused after (preparing
 * costs more than running a small statement; a bulk send runs the same few statements for every row).
 */
export function prepared(db: Db, sql: string): Database.Statement {
  let map = statements.get(db);
  if (!map) statements.set(db, (map = new Map()));
  let stmt = map.get(sql);
  if (!stmt) map.set(sql, (stmt = db.prepare(sql)));
  return stmt;
}

/** Maps SQLite errors to typed errors: busy/locked → LockedError (exit 4), not-a-database → UsageError. */
export function mapSqliteError(err: unknown, file: string): Error {
  if (err instanceof SwitchboardError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new LockedError(`store ${file} is locked by another process (waited ${BUSY_TIMEOUT_MS / 1000} s); try again`);
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new UsageError(`${file} is not a switchboard store (${code})`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** The store's random id (used as the keychain account name and shown by `key status`). */
export function storeId(db: Db): string {
  const row = db.prepare("SELECT value FROM meta WHERE key = 'store_id'").get() as { value: string } | undefined;
  return row?.value ?? '';
}

/** Facts about a store file read without changing it (for `doctor`). */
export interface StoreFacts {
  /** `PRAGMA user_version`. */
  schemaVersion: number;
  /** `PRAGMA journal_mode`, e.g. `wal`. */
  journalMode: string;
}

/**
 * Reads the schema version and journal mode of an existing store through a read-only connection: no migration,
 * no chmod, no file created.
 * @throws UsageError if the file is not a SQLite database.
 */
export function inspectStore(file: string): StoreFacts {
  let db: Db | undefined;
  try {
    db = new Database(file, { ...driverOptions(), readonly: true, fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    return {
      schemaVersion: db.pragma('user_version', { simple: true }) as number,
      journalMode: String(db.pragma('journal_mode', { simple: true })),
    };
  } catch (err) {
    throw mapSqliteError(err, file);
  } finally {
    db?.close();
  }
}
