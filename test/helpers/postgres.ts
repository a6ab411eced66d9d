// A private PostgreSQL 15 server for the test run (issue 14): ONE server per `vitest run`, started by
// test/helpers/postgres-global.ts (vitest globalSetup) and stopped at the end; each test file gets a database of
// its own from `createTestDatabase`. The server runs as the `postgres` user when the tests run as root (the
// server refuses root): initdb in a temporary folder, trust authentication, a loopback high port, its Unix socket
// in the same folder (`-k`), every connection logged (`log_connections`) so a test can check that nothing
// connected. Binaries: Debian's `postgresql` package (.ci/system-deps installs it), /usr/lib/postgresql/<major>/bin (the newest installed).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { inject } from 'vitest';

/** What the global setup provides to every test file. */
export interface TestPostgres {
  /** Superuser URL of the server's `postgres` database (no password: trust authentication). */
  adminUrl: string;
  /** 127.0.0.1 port. */
  port: number;
  /** The server's log file (every connection is logged there). */
  logFile: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    postgres: TestPostgres;
  }
}

/** The run's server (from the global setup). */
export function testPostgres(): TestPostgres {
  return inject('postgres');
}

/**
 * Creates a new empty database for one test file (named `sb_<name>_<random>`, owned by the superuser) on the
 * run's server. @returns its URL (no password) and name.
 */
export async function createTestDatabase(name: string): Promise<{ url: string; database: string }> {
  const { adminUrl, port } = testPostgres();
  const database = databaseName(name);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${database}`);
  } finally {
    await client.end();
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/${database}`, database };
}

/** The engine the end-to-end workspaces use: `postgres` when SWITCHBOARD_TEST_BACKEND says so (the `postgres` project). */
export function testBackend(): 'sqlite' | 'postgres' {
  return process.env.SWITCHBOARD_TEST_BACKEND === 'postgres' ? 'postgres' : 'sqlite';
}

/**
 * Whether bulk sends (`send batch`, `batch …`) run on a PostgreSQL store in this build: yes, since the PostgreSQL
 * run ledger and `batch work`. Tests of the both-stores files that need a batch check {@link bulkSends}.
 */
export const BULK_ON_POSTGRES = true;

/** Whether a test may run bulk sends on a store of `backend` (see {@link BULK_ON_POSTGRES}). */
export function bulkSends(backend: 'sqlite' | 'postgres'): boolean {
  return backend === 'sqlite' || BULK_ON_POSTGRES;
}

/** {@link createTestDatabase} without waiting on a promise (for synchronous workspace set-up; `psql` runs the CREATE), with an en-US collation. */
export function createTestDatabaseSync(name: string): { url: string; database: string } {
  const { adminUrl, port } = testPostgres();
  const database = databaseName(name);
  // A server's usual default collation (ICU en-US, as an initdb in an English locale gives) rather than the run's
  // "C": text ordered by ORDER BY alone would differ from SQLite's byte order, which the end-to-end files check.
  const create = `CREATE DATABASE ${database} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`;
  execFileSync('psql', [adminUrl, '-q', '-v', 'ON_ERROR_STOP=1', '-c', create], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { url: `postgres://postgres@127.0.0.1:${port}/${database}`, database };
}

/** A new database's name: `sb_<name>_<random>`. */
function databaseName(name: string): string {
  return `sb_${name.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30)}_${randomBytes(4).toString('hex')}`;
}

/**
 * Creates the role `sb_pw` (the one role the server asks a password of, scram-sha-256) with `password`, allowed to
 * connect to `database` and own its objects. @returns the role's name.
 */
export async function createPasswordRole(database: string, password: string): Promise<string> {
  const client = new pg.Client({ connectionString: testPostgres().adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE ROLE sb_pw LOGIN PASSWORD '${password.replace(/'/g, "''")}'`);
    await client.query(`ALTER DATABASE ${database} OWNER TO sb_pw`);
  } finally {
    await client.end();
  }
  return 'sb_pw';
}

/** Lines of the server's log that record a connection to `database` (`connection authorized: … database=<name>`). */
export function connectionsTo(database: string): string[] {
  const log = fs.readFileSync(testPostgres().logFile, 'utf8');
  return log.split('\n').filter((l) => l.includes('connection authorized') && l.includes(`database=${database}`));
}
