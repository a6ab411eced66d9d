/**
 * The SQLite store (better-sqlite3): opening, pragmas, migrations, file permissions.
 * DESIGN §3: WAL, busy_timeout, foreign keys, numbered migrations in `PRAGMA user_version`,
 * applied in one transaction on open; the file is created with mode 0600.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
// better-sqlite3's JavaScript is bundled into the CLI's main.cjs (.esbuild.mjs), so it is read, compiled (from the
// code cache) and run with switchboard's own code instead of as 12 CommonJS files from node_modules (issue 15,
// start-up); its native addon is loaded from node_modules (see driverOptions).
import Database from 'better-sqlite3';
import type BetterSqlite3 from 'better-sqlite3';
import { migrations } from './migrations.js';
import { LockedError, OperationFailed, SwitchboardError, UsageError } from '../errors.js';
import { nodeCrypto } from '../lazy-node.js';

/** An open store: the database handle plus facts about the file. */
export type Db = BetterSqlite3.Database;

/**
 * How long (ms) a writer waits for another process's write lock before giving up: 10 s, or
 * `SWITCHBOARD_BUSY_TIMEOUT_MS` (a test hook: a lock held past the timeout without waiting that long).
 */
export const BUSY_TIMEOUT_MS = Number(process.env.SWITCHBOARD_BUSY_TIMEOUT_MS) > 0 ? Number(process.env.SWITCHBOARD_BUSY_TIMEOUT_MS) : 10_000;

/** Whether an error is SQLite's "database is busy/locked" (another connection held the lock past the timeout). */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  // Also the extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_RECOVERY, SQLITE_LOCKED_SHAREDCACHE, …).
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)(_|$)/.test(code);
}

/** Schema version this build writes (the number of migrations). */
export const SCHEMA_VERSION = migrations.length;

/**
 * Driver options: better-sqlite3's documented `nativeBinding` option, set to its compiled addon where its npm
 * install puts it (`build/Release/better_sqlite3.node`), so opening the store skips the `bindings` package's
 * search through a dozen candidate paths (1-2 ms of every command, DESIGN §8 start-up), and which would look
 * beside the bundle rather than in node_modules (its JavaScript is bundled, see the import). A debug build
 * (`build/Debug`) is taken when there is no release one; neither: no option, the driver searches itself.
 */
function driverOptions(): BetterSqlite3.Options {
  const require = createRequire(import.meta.url);
  for (const build of ['Release', 'Debug']) {
    try {
      return { nativeBinding: require.resolve(`better-sqlite3/build/${build}/better_sqlite3.node`) };
    } catch {
      // Not this build: the next.
    }
  }
  return {};
}

/**
 * Where the store is (DESIGN §3): a SQLite file, or a PostgreSQL server named by a `postgres://` /
 * `postgresql://` URL (libpq conventions through pg: what the URL leaves out comes from PGHOST, PGPORT, PGUSER,
 * PGPASSWORD, PGDATABASE and ~/.pgpass; `sslmode` in the URL's query).
 */
export type StoreLocation =
  | {
      backend: 'sqlite';
      /** Absolute path of the store file. */
      path: string;
      /** For messages: the path. */
      display: string;
    }
  | {
      backend: 'postgres';
      /** The URL as given (may hold a password when it came from SWITCHBOARD_STORE): only for connecting. */
      url: string;
      /** For messages: the URL without its password. */
      display: string;
    };

/**
 * Resolves the store: `--store`, then `SWITCHBOARD_STORE`, then the SQLite file
 * `$XDG_DATA_HOME/switchboard/switchboard.db` (default `~/.local/share/switchboard/switchboard.db`). A
 * `postgres://` / `postgresql://` URL names a PostgreSQL store; nothing is connected here.
 * @throws UsageError (exit 2) for another URL scheme, a URL that does not parse, a libpq `key=value` connection
 * string (not echoed), or a password inside a URL given with `--store` (argv is visible to every user of the host;
 * the message never holds the password).
 */
export function resolveStore(flag: string | undefined, env: NodeJS.ProcessEnv): StoreLocation {
  if (flag) return locate(flag, '--store');
  if (env.SWITCHBOARD_STORE) return locate(env.SWITCHBOARD_STORE, 'SWITCHBOARD_STORE');
  const dataHome = env.XDG_DATA_HOME || path.join(env.HOME || os.homedir(), '.local', 'share');
  const file = path.join(dataHome, 'switchboard', 'switchboard.db');
  return { backend: 'sqlite', path: file, display: file };
}

/**
 * Resolves the path of a SQLite store as {@link resolveStore} does.
 * @throws UsageError as {@link resolveStore}, and for a PostgreSQL URL (callers that only read a file).
 */
export function resolveStorePath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const loc = resolveStore(flag, env);
  if (loc.backend !== 'sqlite') throw new UsageError(`${loc.display} is a PostgreSQL store, not a SQLite file`);
  return loc.path;
}

/**
 * Where a store named by another flag is (`store copy --to`): a path or a `postgres://` URL, checked as
 * {@link resolveStore} checks `--store`, a password inside the URL included (argv: refused, naming `flag`).
 * @throws UsageError (exit 2) naming `flag` for another URL scheme, a URL that does not parse, or a password.
 */
export function locateStore(value: string, flag: string): StoreLocation {
  return locate(value, flag);
}

/** The start of a libpq keyword/value connection string (`host=db dbname=sb …`), which is not a store path. */
const LIBPQ_KEYWORD_VALUE = /^\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode|connect_timeout|application_name|options)\s*=/i;

/** A path, or a URL checked as {@link resolveStore} says; `source` (the flag or variable) names it in errors. */
function locate(value: string, source: string): StoreLocation {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]?.toLowerCase();
  // libpq's other form, `host=… dbname=… password=…`, would otherwise be a file name: a new SQLite file named after
  // the connection string (its password included) and messages that print it. Refused without echoing it.
  if (!scheme && LIBPQ_KEYWORD_VALUE.test(value)) {
    throw new UsageError(`${source}: a libpq key=value connection string is not supported (nothing was connected or created); give a postgres:// URL, e.g. postgres://user@host:5432/dbname, with the password in PGPASSWORD or ~/.pgpass`);
  }
  if (!scheme) {
    const file = path.resolve(value);
    return { backend: 'sqlite', path: file, display: file };
  }
  if (scheme !== 'postgres' && scheme !== 'postgresql') {
    throw new UsageError(`${source}: ${scheme}:// URLs are not supported; give the path of a SQLite store file or a postgres:// URL`);
  }
  // A flag is on the command line (argv: readable by every user of the host); an environment variable is not.
  const onArgv = source.startsWith('--');
  const refusePassword = () =>
    new UsageError(
      `${source}: a password inside the URL on the command line is visible to every user of this host; nothing was connected. Give it in PGPASSWORD or ~/.pgpass${source === '--store' ? ', or put the whole URL in SWITCHBOARD_STORE' : ''}`,
    );
  // libpq's form for a user on the default host or a Unix socket has no host between `@` and `/`
  // (`postgres://sb@/switchboard?host=/run/postgresql`), which URL parsing refuses: it is checked with a stand-in
  // host, and shown as given (without the password).
  const noHost = /^([^:]+:\/\/[^/?#]*@)([/?#].*)?$/.exec(value);
  let url: URL;
  try {
    url = new URL(noHost ? `${noHost[1]}${NO_HOST}${noHost[2] ?? ''}` : value);
  } catch {
    // A password with a character a URL must escape (`/`, `#`) makes the URL unparsable: still refused as a password.
    if (onArgv && /^[^:]+:\/\/[^/?#@:]*:[^@]*@/.test(value)) throw refusePassword();
    throw new UsageError(`${source}: not a valid ${scheme}:// URL`);
  }
  const hasPassword = url.password !== '' || url.searchParams.has('password');
  if (hasPassword && onArgv) throw refusePassword();
  return { backend: 'postgres', url: value, display: redactUrl(url) };
}

/** The stand-in host of a URL given without one (see `locate`); never connected to. */
const NO_HOST = 'no-host.invalid';

/** The URL without its password (userinfo or `password` query parameter), for messages. */
export function redactUrl(url: URL): string {
  const copy = new URL(url.href);
  copy.password = '';
  // (Touched only when present: any change re-encodes the whole query, `host=/run/postgresql` as `%2F…`.)
  if (copy.searchParams.has('password')) copy.searchParams.delete('password');
  return copy.href.replace(`@${NO_HOST}`, '@');
}

/** Options of {@link openStore}. */
export interface OpenOptions {
  /**
   * Create the store when there is none (default true). Commands that only read pass false, so a mistyped
   * `--store` path is an error instead of a new empty store.
   */
  create?: boolean;
}

/**
 * The exit-2 error for a store file that does not exist: says how to create one or point at one (DESIGN §2).
 */
export function noStoreError(file: string): UsageError {
  return new UsageError(
    `no store at ${file}: create one with \`switchboard tenant add <id> --name <name>\` (or \`switchboard key init\`), or point --store / SWITCHBOARD_STORE at an existing store`,
  );
}

/**
 * Opens the store at `file` (creating it unless `opts.create` is false) and migrates it to
 * {@link SCHEMA_VERSION}. A new file is created with mode 0600 in a directory created with mode 0700.
 * Every connection runs with `secure_delete` on: deleted rows are overwritten with zeros, so removed tenants
 * and batches leave no readable bytes in free pages (once the WAL is checkpointed).
 * @throws UsageError if there is no store and `opts.create` is false ({@link noStoreError}), if the store was
 * written by a newer switchboard (schema too new), or if it is not a SQLite file.
 * @throws LockedError if another process holds the write lock longer than {@link BUSY_TIMEOUT_MS}.
 */
export function openStore(file: string, opts: OpenOptions = {}): Db {
  if (!fs.existsSync(file)) {
    if (opts.create === false) throw noStoreError(file);
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
    db.pragma('secure_delete = ON');
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
          nodeCrypto().randomUUID(),
          'created_at',
          new Date().toISOString(),
        );
      }
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
  run.immediate();
}

const statements = new WeakMap<Db, Map<string, BetterSqlite3.Statement>>();

/**
 * The prepared statement for `sql` on this store handle, prepared on first use and reused after (preparing
 * costs more than running a small statement; a bulk send runs the same few statements for every row).
 */
export function prepared(db: Db, sql: string): BetterSqlite3.Statement {
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
  if (isBusy(err)) {
    return new LockedError(`store ${file} is locked by another process (waited ${BUSY_TIMEOUT_MS / 1000} s; a \`send batch\` or \`store vacuum\` may hold it); try again`);
  }
  if (code === 'SQLITE_NOTADB') {
    return new UsageError(`${file} is not a switchboard store (${code})`);
  }
  if (code.startsWith('SQLITE_CORRUPT')) {
    return new OperationFailed(`store ${file} is damaged (${(err as Error).message}); run \`switchboard doctor --deep\` for what is wrong and how to recover`);
  }
  return err instanceof Error ? err : new Error(String(err));
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

/** What {@link checkStore} found. */
export interface StoreCheck {
  /** True when SQLite reports no problem. */
  ok: boolean;
  /** `quick_check` or `integrity_check`. */
  pragma: 'quick_check' | 'integrity_check';
  /** SQLite's descriptions of what is wrong (at most 20), e.g. `Tree 7 page 12 cell 0: …`; empty when ok. */
  problems: string[];
}

/**
 * Checks the store file for damage through a read-only connection: `PRAGMA quick_check` (O(N), checks pages and
 * records but not that indexes match their tables), or `PRAGMA integrity_check` with `deep` (also indexes;
 * slower on large stores). See https://www.sqlite.org/pragma.html#pragma_quick_check.
 * A file too damaged to be opened at all counts as a problem, not an exception.
 */
export function checkStore(file: string, deep: boolean): StoreCheck {
  const pragma = deep ? 'integrity_check' : 'quick_check';
  let db: Db | undefined;
  try {
    db = new Database(file, { ...driverOptions(), readonly: true, fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const rows = db.pragma(`${pragma}(20)`) as Array<Record<string, string>>;
    const problems = rows.map((r) => String(Object.values(r)[0])).filter((t) => t !== 'ok');
    return { ok: problems.length === 0, pragma, problems };
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_IOERR')) {
      return { ok: false, pragma, problems: [`${(err as Error).message} (${code})`] };
    }
    throw mapSqliteError(err, file);
  } finally {
    db?.close();
  }
}

/** What {@link backupStore} wrote. */
export interface BackupResult {
  /** Absolute path of the copy. */
  file: string;
  /** Size of the copy in bytes. */
  bytes: number;
  /** Database pages copied. */
  pages: number;
}

/**
 * Copies the open store to `out` with SQLite's online backup API (better-sqlite3 `db.backup`,
 * https://www.sqlite.org/backup.html): a consistent snapshot while other processes keep reading and writing.
 * The copy is written to a temporary file (mode 0600) in the same folder and renamed into place when complete,
 * so `out` is never a partial copy.
 * @throws UsageError if `out` exists and `overwrite` is false, or is the store itself.
 */
export async function backupStore(db: Db, storeFile: string, out: string, overwrite: boolean): Promise<BackupResult> {
  const file = path.resolve(out);
  if (file === path.resolve(storeFile)) throw new UsageError(`--out ${file} is the store itself`);
  if (fs.existsSync(file) && !overwrite) throw new UsageError(`--out ${file} already exists; refusing to overwrite it (use --force)`);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.closeSync(fs.openSync(tmp, fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_WRONLY, 0o600));
  fs.chmodSync(tmp, 0o600);
  let pages = 0;
  try {
    const r = await db.backup(tmp);
    pages = r.totalPages;
    const fd = fs.openSync(tmp, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw mapSqliteError(err, storeFile);
  }
  return { file, bytes: fs.statSync(file).size, pages };
}

/**
 * Moves every committed page from the write-ahead log into the store file and empties the log
 * (`PRAGMA wal_checkpoint(TRUNCATE)`), so rows just deleted (zeroed by `secure_delete`) leave no copy in the log.
 * Best effort: while another process reads, SQLite checkpoints what it can and the rest goes at a later
 * checkpoint. Returns true when the log was emptied.
 */
export function checkpointStore(db: Db): boolean {
  try {
    const [r] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    return r?.busy === 0;
  } catch {
    return false;
  }
}

/** What {@link vacuumStore} did. Sizes in bytes of the main file. */
export interface VacuumResult {
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * Rebuilds the store file without free pages (`VACUUM`), then truncates the WAL. Needs the write lock for as
 * long as the rebuild takes (other writers wait up to {@link BUSY_TIMEOUT_MS}).
 * @throws LockedError when another process holds the store.
 */
export function vacuumStore(db: Db, file: string): VacuumResult {
  const bytesBefore = fs.statSync(file).size;
  try {
    db.exec('VACUUM');
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch (err) {
    throw mapSqliteError(err, file);
  }
  return { bytesBefore, bytesAfter: fs.statSync(file).size };
}

/**
 * A `WHERE` clause from optional filters: each `[sql, value]` whose value is not undefined becomes one
 * `AND`-ed condition (`sql` with one `?`). @returns the clause (empty when no filter applies) and its arguments.
 */
export function whereAll(filters: ReadonlyArray<readonly [string, unknown]>): { where: string; args: unknown[] } {
  const given = filters.filter(([, v]) => v !== undefined);
  return { where: given.length ? `WHERE ${given.map(([sql]) => sql).join(' AND ')}` : '', args: given.map(([, v]) => v) };
}
