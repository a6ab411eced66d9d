/**
 * The PostgreSQL executor (DESIGN §3, issue 14): {@link PgSql} runs the repositories' SQL on a `pg` connection
 * pool (https://node-postgres.com/apis/pool). Repositories write `?` placeholders; this executor numbers them
 * (`$1`, `$2`, …) once per statement text. Counts and 64-bit ids (int8, numeric) are read as JavaScript numbers
 * through the pool's own type parsers (the global `pg.types` is left alone). A transaction runs on a connection of
 * its own and is run again as a whole on a serialization failure or deadlock.
 *
 * This module is imported lazily (`await import('./pg.js')`): a SQLite store never loads `pg`.
 */
import { createRequire } from 'node:module';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import type { Pool, PoolClient, PoolConfig, QueryResult } from 'pg';
import { LockedError, OperationFailed, SwitchboardError, UsageError } from '../errors.js';
import { noStoreError, type OpenOptions } from './db.js';
import type { StoreHandle } from './open.js';
import { migratePg, pgSchemaVersion } from './pg-migrations.js';
import { statementName, type RunResult, type Sql } from './sql.js';

/** PostgreSQL type OIDs read as numbers instead of strings: int8 (20) and numeric (1700). */
const NUMBER_OIDS = new Set([20, 1700]);

/**
 * The pool's type parsers (pg's `types` pool option): int8 and numeric as `Number`, everything else as pg's
 * defaults (bytea as Buffer, int4 as number, text as string). Ids and counts stay far below 2^53.
 */
const poolTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (NUMBER_OIDS.has(oid) && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as unknown as NonNullable<PoolConfig['types']>;

const translations = new Map<string, string>();

/**
 * Numbers the `?` placeholders of `sql` as `$1`, `$2`, … in order, leaving alone every `?` inside a
 * single-quoted string (`'…'`, `''` escaped; `E'…'` with backslash escapes), a double-quoted identifier, a
 * dollar-quoted string (`$$…$$`, `$tag$…$tag$`) or a comment (`-- …`, `/* … *\/`). The translation of each text
 * is cached (repositories run the same few statements many times).
 * @returns the statement with numbered placeholders.
 */
export function numberPlaceholders(sql: string): string {
  const cached = translations.get(sql);
  if (cached !== undefined) return cached;
  let out = '';
  let n = 0;
  let i = 0;
  const len = sql.length;
  while (i < len) {
    const c = sql[i]!;
    if (c === '?') {
      out += `$${++n}`;
      i++;
    } else if (c === "'") {
      const escapes = i > 0 && /[eE]/.test(sql[i - 1]!) && (i < 2 || !/[\w$]/.test(sql[i - 2]!));
      let j = i + 1;
      while (j < len) {
        if (escapes && sql[j] === '\\') j += 2;
        else if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j++;
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '"') {
      let j = i + 1;
      while (j < len && !(sql[j] === '"' && sql[j + 1] !== '"')) j += sql[j] === '"' ? 2 : 1;
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      const end = j < 0 ? len : j;
      out += sql.slice(i, end);
      i = end;
    } else if (c === '/' && sql[i + 1] === '*') {
      const j = sql.indexOf('*/', i + 2);
      const end = j < 0 ? len : j + 2;
      out += sql.slice(i, end);
      i = end;
    } else if (c === '$' && (i === 0 || !/[\w$]/.test(sql[i - 1]!))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))?.[0];
      if (!tag) {
        out += c;
        i++;
        continue;
      }
      const j = sql.indexOf(tag, i + tag.length);
      const end = j < 0 ? len : j + tag.length;
      out += sql.slice(i, end);
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  translations.set(sql, out);
  return out;
}

/** SQLSTATEs after which a whole transaction is run again: serialization_failure, deadlock_detected. */
const RETRY_CODES = new Set(['40001', '40P01']);

/** How many times in all {@link PgSql.tx} runs a transaction that keeps meeting {@link RETRY_CODES}. */
const TX_ATTEMPTS = 10;

/** The `pg` error's SQLSTATE (or Node's system error code such as ECONNREFUSED), or ''. */
function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** Whether `err` means the whole transaction may succeed when run again (serialization failure, deadlock). */
export function isRetryablePg(err: unknown): boolean {
  return RETRY_CODES.has(errCode(err));
}

/**
 * Maps an error from the server or the connection to a one-line typed error naming the store by `location`
 * (which never holds the password); errors of a statement (constraint violations, …) and our own errors pass
 * through unchanged so repositories can read their codes. Exit codes (README, "Stores"):
 * - 2 (UsageError): the store is not usable as given: authentication failed (28P01, 28000), no such database
 *   (3D000), a URL or sslmode pg cannot use;
 * - 4 (LockedError): the server is busy: too many connections (53300), starting up or shutting down (57P03), a
 *   transaction still failing serialization after {@link TX_ATTEMPTS} attempts;
 * - 1 (OperationFailed): the server cannot be reached (refused, unknown host, timed out, connection lost).
 */
export function mapPgError(err: unknown, location: string): Error {
  if (err instanceof SwitchboardError) return err;
  const code = errCode(err);
  const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  if (code === '28P01' || code === '28000') {
    return new UsageError(`store ${location}: the server refused the login (${message}); give the password in PGPASSWORD or ~/.pgpass, or the URL in SWITCHBOARD_STORE`);
  }
  if (code === '3D000') return new UsageError(`store ${location}: ${message}; create the database first (createdb) or fix the URL`);
  if (code === '53300' || code === '57P03') return new LockedError(`store ${location} is busy (${message}); try again`);
  if (RETRY_CODES.has(code)) return new LockedError(`store ${location}: a transaction kept conflicting with others (${message}); try again`);
  if (/^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|EPIPE|ENOENT)$/.test(code) || /^08/.test(code) || /^57P0[12]$/.test(code)) {
    return new OperationFailed(`store ${location} cannot be reached (${code}: ${message})`);
  }
  if (/Connection terminated|timeout exceeded when trying to connect/i.test(message)) {
    return new OperationFailed(`store ${location} cannot be reached (${message})`);
  }
  if (/SSL|sslmode|self.signed|certificate/i.test(message) && !code.match(/^[0-9A-Z]{5}$/)) {
    return new UsageError(`store ${location}: ${message}`);
  }
  return err instanceof Error ? err : new Error(message);
}

/** Whether `err` came from reaching the server rather than from a statement (see {@link mapPgError}). */
function isConnectionError(err: unknown): boolean {
  const mapped = mapPgError(err, '');
  return mapped !== err;
}

/** One statement on `client` with numbered placeholders; plain multi-statement text (the simple protocol) when there are no arguments and no placeholders. */
async function query(client: Pool | PoolClient, sql: string, args: unknown[]): Promise<QueryResult> {
  if (args.length === 0 && !sql.includes('?')) return client.query(sql);
  const name = statementName(sql);
  if (name !== undefined) return client.query({ name, text: numberPlaceholders(sql), values: args });
  return client.query(numberPlaceholders(sql), args);
}

/** Rows a cursor fetches at a time (see {@link Sql.iterate}). */
const CURSOR_FETCH = 1000;

/** Cursor names in use on a connection are numbered, so that two reads open in one transaction do not clash. */
let cursors = 0;

/**
 * The rows of `sql` through a cursor on `client` (inside a transaction the caller holds), {@link CURSOR_FETCH}
 * at a time; the cursor is closed however the loop ends. See https://www.postgresql.org/docs/current/sql-declare.html.
 */
async function* cursorRows<T>(client: PoolClient, sql: string, args: unknown[]): AsyncIterable<T> {
  const name = `sb_rows_${++cursors}`;
  await client.query(`DECLARE ${name} NO SCROLL CURSOR FOR ${numberPlaceholders(sql)}`, args);
  let open = true;
  try {
    for (;;) {
      const page = await client.query(`FETCH ${CURSOR_FETCH} FROM ${name}`);
      yield* page.rows as T[];
      if (page.rows.length < CURSOR_FETCH) break;
    }
    await client.query(`CLOSE ${name}`);
    open = false;
  } finally {
    // A loop that broke off (or failed) leaves the cursor open: closed here, unless the connection itself failed.
    if (open) await client.query(`CLOSE ${name}`).catch(() => undefined);
  }
}

/**
 * The PostgreSQL executor over a `pg` Pool. Statements outside {@link tx} each take a pooled connection for
 * themselves. `location` (the URL without its password) names the store in messages.
 */
export class PgSql implements Sql {
  readonly dialect = 'postgres' as const;

  constructor(
    /** The pool (closed by {@link close}). */
    readonly pool: Pool,
    /** Where the store is, without the password, for messages. */
    readonly location: string,
  ) {}

  async all<T>(sql: string, ...args: unknown[]): Promise<T[]> {
    return (await this.exec(sql, args)).rows as T[];
  }

  async get<T>(sql: string, ...args: unknown[]): Promise<T | undefined> {
    return (await this.exec(sql, args)).rows[0] as T | undefined;
  }

  async run(sql: string, ...args: unknown[]): Promise<RunResult> {
    return { changes: (await this.exec(sql, args)).rowCount ?? 0 };
  }

  private async exec(sql: string, args: unknown[]): Promise<QueryResult> {
    try {
      return await query(this.pool, sql, args);
    } catch (err) {
      throw mapPgError(err, this.location);
    }
  }

  async *iterate<T>(sql: string, ...args: unknown[]): AsyncIterable<T> {
    const client = await this.connect();
    let done = false;
    try {
      await client.query('BEGIN READ ONLY');
      yield* cursorRows<T>(client, sql, args);
      await client.query('COMMIT');
      done = true;
    } catch (err) {
      throw mapPgError(err, this.location);
    } finally {
      // A loop that broke off (or failed) ends the read-only transaction before the connection goes back; a
      // connection whose rollback failed is discarded rather than reused.
      const broken = !done && (await client.query('ROLLBACK').then(() => false, () => true));
      client.release(broken || undefined);
    }
  }

  /** A connection of the pool for a transaction. @throws a mapped connection error (see {@link mapPgError}). */
  private async connect(): Promise<PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw mapPgError(err, this.location);
    }
  }

  /**
   * Runs `fn` in one transaction (`BEGIN` … `COMMIT`, READ COMMITTED) on a connection of its own; a rejection of
   * `fn` rolls it back. On a serialization failure (40001) or deadlock (40P01) the whole transaction, `fn`
   * included, runs again (up to {@link TX_ATTEMPTS} times, with a short random pause): `fn` must have no effect
   * outside the transaction. A `tx` inside `fn` joins this one.
   * @throws whatever `fn` throws; LockedError (exit 4) when conflicts persist; a mapped connection error.
   */
  async tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        const value = await fn(new PgTx(client));
        await client.query('COMMIT');
        return value;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr;
        }
        if (isRetryablePg(err) && attempt < TX_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, 5 + Math.floor(Math.random() * 20 * attempt)));
          continue;
        }
        throw isRetryablePg(err) || isConnectionError(err) ? mapPgError(err, this.location) : err;
      } finally {
        // A connection whose rollback failed is discarded rather than reused.
        client.release(broken instanceof Error ? broken : broken === undefined ? undefined : true);
      }
    }
  }

  /** The server's version, e.g. `15.8 (Debian 15.8-0+deb12u1)` (`SHOW server_version`). */
  async serverVersion(): Promise<string> {
    const row = await this.get<{ server_version: string }>('SHOW server_version');
    return row?.server_version ?? '';
  }

  /** Closes every connection of the pool. */
  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** The handle a transaction's `fn` runs on: every statement on the transaction's own connection. */
class PgTx implements Sql {
  readonly dialect = 'postgres' as const;
  constructor(private readonly client: PoolClient) {}

  async all<T>(sql: string, ...args: unknown[]): Promise<T[]> {
    return (await query(this.client, sql, args)).rows as T[];
  }

  async get<T>(sql: string, ...args: unknown[]): Promise<T | undefined> {
    return (await query(this.client, sql, args)).rows[0] as T | undefined;
  }

  async run(sql: string, ...args: unknown[]): Promise<RunResult> {
    return { changes: (await query(this.client, sql, args)).rowCount ?? 0 };
  }

  iterate<T>(sql: string, ...args: unknown[]): AsyncIterable<T> {
    return cursorRows<T>(this.client, sql, args);
  }

  tx<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return fn(this);
  }
}

/** The `pgpass` package (CommonJS, no types): looks a password up in ~/.pgpass (or PGPASSFILE) for the connection's host, port, database and user. */
const pgpass = createRequire(import.meta.url)('pgpass') as (params: unknown, cb: (password: string | undefined) => void) => void;

/**
 * The password of a connection whose URL holds none, as libpq finds it: `PGPASSWORD`, else the matching line of
 * ~/.pgpass (PGPASSFILE; ignored, with a warning on stderr, when group or others can read it). Given to pg as a
 * function (called only when the server asks for a password) so that pg's own ~/.pgpass lookup (deprecated: it
 * prints a warning on every use) is not used.
 * @throws UsageError naming the store (without password) when the server asks for a password and none is found.
 */
function libpqPassword(location: string): (params: unknown) => Promise<string> {
  return async (params) => {
    if (process.env.PGPASSWORD !== undefined) return process.env.PGPASSWORD;
    const found = await new Promise<string | undefined>((resolve) => pgpass(params, resolve));
    if (found) return found;
    throw new UsageError(`store ${location}: the server asks for a password and none was found; give it in PGPASSWORD or ~/.pgpass, or the URL in SWITCHBOARD_STORE`);
  };
}

/**
 * pg's client, closing its socket when connecting fails: pg leaves it open after an error during authentication
 * (e.g. no password), which keeps the process alive until the server's authentication timeout.
 */
class ClosingClient extends pg.Client {}
const superConnect = pg.Client.prototype.connect as (this: pg.Client, callback?: (err: Error | null) => void) => unknown;
Object.defineProperty(ClosingClient.prototype, 'connect', {
  value: function connect(this: pg.Client, callback?: (err: Error | null) => void): unknown {
    if (!callback) return superConnect.call(this);
    return superConnect.call(this, (err) => {
      if (err) (this as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      callback(err);
    });
  },
});

/**
 * A pool for the store at `url` (a `postgres://` or `postgresql://` URL, libpq conventions through pg:
 * PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE fill what the URL leaves out, ~/.pgpass supplies a missing
 * password, `sslmode` in the URL). `location` names it in messages.
 * @param max most connections at once (default 10)
 */
export function createPgSql(url: string, location: string, max = 10): PgSql {
  // The URL parsed here (pg's own parser) rather than given as `connectionString`: pg would apply the parsed URL
  // over the options, and its empty password would replace the lookup function.
  const fromUrl = parseIntoClientConfig(url);
  const pool = new pg.Pool({
    ...fromUrl,
    password: fromUrl.password || (libpqPassword(location) as unknown as () => Promise<string>),
    Client: ClosingClient as unknown as PoolConfig['Client'],
    types: poolTypes,
    max,
    connectionTimeoutMillis: 10_000,
    application_name: 'switchboard',
  });
  // An idle connection the server drops (restart, idle timeout) must not crash the process: the next query reconnects.
  pool.on('error', () => {});
  return new PgSql(pool, location);
}

/**
 * Opens the PostgreSQL store at `url` as a {@link StoreHandle}: connects (the first query), refuses a database
 * without a switchboard schema unless `opts.create` is true (then creates it), and migrates it to the current
 * schema (see `migratePg`). `location` is the URL without its password, for messages.
 * @throws UsageError (no store, schema too new, login refused, no such database), LockedError (server busy),
 * OperationFailed (server unreachable): one line, no password.
 */
export async function openPgHandle(url: string, location: string, opts: OpenOptions = {}): Promise<StoreHandle> {
  let sql: PgSql;
  try {
    sql = createPgSql(url, location);
  } catch (err) {
    throw new UsageError(`store ${location}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  try {
    if (opts.create === false && (await pgSchemaVersion(sql)) === 0) throw noStoreError(location);
    await migratePg(sql);
  } catch (err) {
    await sql.close().catch(() => {});
    throw mapPgError(err, location);
  }
  return {
    backend: 'postgres',
    location,
    sql,
    ops: {
      checkWritable: async () => {
        await sql.tx(async (t) => t.get('SELECT txid_current() AS xid'));
        return 'began and committed a transaction';
      },
      checkpoint: async () => true,
    },
    close: () => sql.close(),
    describe: async () => ({ backend: 'postgres', location, serverVersion: await sql.serverVersion(), schemaVersion: await pgSchemaVersion(sql) }),
  };
}
