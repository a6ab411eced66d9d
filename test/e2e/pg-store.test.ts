// Choosing a PostgreSQL store (issue 14) through the built binary, against the run's private PostgreSQL server
// (test/helpers/postgres.ts): a password inside a --store URL is refused before anything connects (checked in the
// server's connection log), messages name the store without its password, the audit log (a ported repository)
// reads from PostgreSQL, `doctor` names the server, its version and the schema version, the SQLite-only commands
// say what to use instead, and a newer schema or an unreachable server are one-line errors.
// A role that logs in with a password (PGPASSWORD, ~/.pgpass) works end to end: tenant, provider, one send, doctor.
// The end-to-end files listed in test/vitest.config.ts (BOTH_STORES) run once more on PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describe as describeResult, makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import fs from 'node:fs';
import path from 'node:path';
import { connectionsTo, createPasswordRole, createTestDatabase, testPostgres } from '../helpers/postgres.js';
import { createPgSql } from '../../src/store/pg.js';
import { migratePg } from '../../src/store/pg-migrations.js';
import { SCHEMA_VERSION } from '../../src/store/db.js';
import { expectExit } from '../helpers/setup.js';

let ws: Workspace;
let url: string;
let database: string;
/** The store's URL with a password (trust authentication ignores it: a connection attempt would succeed). */
let withPassword: string;
const PASSWORD = 'Pw-never-shown-42';

beforeAll(async () => {
  ws = makeWorkspace();
  ({ url, database } = await createTestDatabase('e2e_store'));
  withPassword = url.replace('postgres://postgres@', `postgres://postgres:${PASSWORD}@`);
});
afterAll(() => ws?.cleanup());

describe('a PostgreSQL store', () => {
  it('refuses a password inside a --store URL on argv with exit 2 before connecting, never echoing it', async () => {
    for (const store of [withPassword, `${url}?password=${PASSWORD}`]) {
      const r = await ws.run(['--store', store, 'audit', 'list', '--json']);
      expect(r.exitCode, describeResult(r)).toBe(2);
      expect(r.stderr).toContain('--store: a password inside the URL on the command line is visible to every user of this host; nothing was connected');
      expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    }
    expect(connectionsTo(database)).toEqual([]);
    // The same URL in SWITCHBOARD_STORE is accepted: this time the server logs a connection (the check above could fail).
    const r = await ws.run(['audit', 'list', '--json'], { env: { SWITCHBOARD_STORE: withPassword } });
    expect(r.exitCode, describeResult(r)).toBe(2); // an empty database: no store yet
    expect(r.stderr).toContain(`no store at ${url}: create one with`);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    expect(connectionsTo(database).length).toBeGreaterThan(0);
  });

  it('reads the audit log from PostgreSQL and names server, version, schema and connection in doctor', async () => {
    const sql = createPgSql(url, 'test');
    try {
      await migratePg(sql);
      await sql.run("INSERT INTO audit_log (at, actor, action, target, tenant_id, fields) VALUES ('2026-01-02T03:04:05.000Z', 'ops@host', 'tenant.add', 'acme', 'acme', '[\"name\"]')");
    } finally {
      await sql.close();
    }
    const env = { SWITCHBOARD_STORE: withPassword };
    const audit = parseJson<Array<{ action: string; target: string; actor: string }>>(expectExit(await ws.run(['audit', 'list', '--json'], { env }), 0, 'audit'));
    expect(audit).toMatchObject([{ action: 'tenant.add', target: 'acme', actor: 'ops@host' }]);

    const r = await ws.run(['doctor', '--json'], { env });
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
    const doc = parseJson<{ checks: Array<{ check: string; status: string; detail: string }> }>(r);
    const byName = Object.fromEntries(doc.checks.map((c) => [c.check, c]));
    expect(byName['store connection']).toMatchObject({ status: 'pass' });
    expect(byName['store connection']!.detail).toMatch(new RegExp(`^PostgreSQL 15\\.\\d+.* at ${url.replace(/[.?]/g, '\\$&')}$`));
    expect(byName['store schema']).toMatchObject({ status: 'pass', detail: `version ${SCHEMA_VERSION}` });
    expect(byName['store writable']).toMatchObject({ status: 'pass' });

    // libpq conventions: what the URL leaves out comes from PGUSER and PGDATABASE.
    const { port } = testPostgres();
    const viaEnv = await ws.run(['audit', 'list', '--json'], { env: { SWITCHBOARD_STORE: `postgresql://127.0.0.1:${port}`, PGUSER: 'postgres', PGDATABASE: database } });
    expect(parseJson(expectExit(viaEnv, 0, 'audit via PGUSER/PGDATABASE'))).toHaveLength(1);
  });

  it("connects through the server's Unix socket with libpq's URL form without a host, shown as given", async () => {
    const { port, logFile } = testPostgres();
    const socketUrl = `postgres://postgres@/${database}?host=${path.dirname(logFile)}&port=${port}`;
    const audit = parseJson<Array<{ action: string }>>(expectExit(await ws.run(['--store', socketUrl, 'audit', 'list', '--json']), 0, 'audit over the socket'));
    expect(audit.map((a) => a.action)).toContain('tenant.add');
    const status = expectExit(await ws.run(['--store', socketUrl, 'doctor']), 0, 'doctor over the socket');
    expect(status.stdout).toContain(socketUrl);
  });

  it('says what to use instead of the SQLite-only commands (exit 2)', async () => {
    const env = { SWITCHBOARD_STORE: withPassword };
    const cases: Array<[string[], string]> = [
      [['store', 'backup', '--out', ws.file('b.db', '')], 'pg_dump'],
      [['store', 'vacuum'], 'autovacuum'],
      [['doctor', '--deep'], 'pg_amcheck'],
    ];
    for (const [args, instead] of cases) {
      const r = await ws.run(args, { env });
      expect(r.exitCode, describeResult(r)).toBe(2);
      expect(r.stderr).toContain(`works on a SQLite store file; ${url} is a PostgreSQL store`);
      expect(r.stderr).toContain(instead);
      expect(r.stderr).not.toContain(PASSWORD);
    }
  });

  it('refuses a schema newer than this switchboard and reports an unreachable server in one line without the password', async () => {
    const { url: newer } = await createTestDatabase('e2e_newer');
    const sql = createPgSql(newer, 'test');
    try {
      await migratePg(sql);
      await sql.run('UPDATE schema_version SET version = ?', SCHEMA_VERSION + 1);
    } finally {
      await sql.close();
    }
    const r = await ws.run(['audit', 'list'], { env: { SWITCHBOARD_STORE: newer } });
    expect(r.exitCode, describeResult(r)).toBe(2);
    expect(r.stderr).toContain(`store schema version ${SCHEMA_VERSION + 1} is newer than this switchboard understands (${SCHEMA_VERSION}); upgrade switchboard`);

    const down = await ws.run(['audit', 'list'], { env: { SWITCHBOARD_STORE: `postgres://someone:${PASSWORD}@127.0.0.1:1/nowhere` } });
    expect(down.exitCode, describeResult(down)).toBe(1);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toContain('store postgres://someone@127.0.0.1:1/nowhere cannot be reached (ECONNREFUSED');
    expect(down.stderr).not.toContain(PASSWORD);

    const other = await ws.run(['audit', 'list'], { env: { SWITCHBOARD_STORE: 'mysql://db.example/switchboard' } });
    expect(other.exitCode).toBe(2);
    expect(other.stderr).toContain('SWITCHBOARD_STORE: mysql:// URLs are not supported');
  });

  it('takes the password from PGPASSWORD or ~/.pgpass as libpq does; a refused login is exit 2 without the password', async () => {
    const { database: db } = await createTestDatabase('e2e_password');
    const secret = 'Pgpass-Secret-7';
    const role = await createPasswordRole(db, secret);
    const { port } = testPostgres();
    const store = `postgres://${role}@127.0.0.1:${port}/${db}`;
    const sql = createPgSql(`postgres://postgres@127.0.0.1:${port}/${db}`, 'test');
    try {
      await sql.run(`SET ROLE ${role}`); // the tables belong to the role, as a DBA would set it up
      await migratePg(sql);
    } finally {
      await sql.close();
    }
    const noPassword = await ws.run(['audit', 'list', '--json'], { env: { SWITCHBOARD_STORE: store } });
    expect(noPassword.exitCode, describeResult(noPassword)).toBe(2);
    expect(noPassword.stderr).toContain(`store ${store}: the server asks for a password and none was found`);

    const viaEnv = await ws.run(['audit', 'list', '--json'], { env: { SWITCHBOARD_STORE: store, PGPASSWORD: secret } });
    expect(parseJson(expectExit(viaEnv, 0, 'audit with PGPASSWORD'))).toEqual([]);

    const wrong = await ws.run(['audit', 'list', '--json'], { env: { SWITCHBOARD_STORE: store, PGPASSWORD: 'not-it' } });
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toContain(`store ${store}: the server refused the login (password authentication failed for user "${role}")`);
    expect(wrong.stderr).not.toContain('not-it');

    const home = path.join(ws.dir, 'pgpass-home');
    fs.mkdirSync(home, { recursive: true });
    fs.writeFileSync(path.join(home, '.pgpass'), `127.0.0.1:${port}:${db}:${role}:${secret}\n`, { mode: 0o600 });
    const viaFile = await ws.run(['audit', 'list', '--json'], { env: { SWITCHBOARD_STORE: store, HOME: home } });
    expect(parseJson(expectExit(viaFile, 0, 'audit with ~/.pgpass'))).toEqual([]);
    expect(viaFile.stderr).toBe(''); // no deprecation warning from pg's own lookup
    expect(viaFile.stdout + viaFile.stderr + viaEnv.stdout + viaEnv.stderr).not.toContain(secret);

    // End to end as that role (password from PGPASSWORD): a tenant, a provider with its key, one send, doctor.
    const env = { SWITCHBOARD_STORE: store, PGPASSWORD: secret };
    const outbox = path.join(ws.dir, 'pw-outbox');
    const steps = [
      await ws.run(['tenant', 'add', 'acme', '--name', 'Acme'], { env }),
      await ws.run(['provider', 'add', '--system', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${outbox}`, '--set', 'from=system@switchboard.test'], { env }),
      await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'pat@example.com', '--subject', 'Hi', '--body', 'B', '--json'], { env }),
    ];
    steps.forEach((r, i) => expectExit(r, 0, `step ${i + 1} as ${role}`));
    expect(parseJson<{ provider: string; status: string }>(steps[2]!)).toMatchObject({ provider: 'system/email/outbox' });
    expect(fs.readdirSync(outbox).filter((f) => f.endsWith('.eml'))).toHaveLength(1);
    const status = parseJson<{ store: Record<string, unknown> }>(expectExit(await ws.run(['key', 'status', '--json'], { env }), 0, 'key status'));
    expect(status.store).toMatchObject({ backend: 'postgres', location: store, schemaVersion: SCHEMA_VERSION });
    const doctor = parseJson<{ checks: Array<{ check: string; status: string }> }>(await ws.run(['doctor', '--json'], { env })).checks;
    expect(doctor.filter((c) => ['store connection', 'store writable', 'key source', 'key match'].includes(c.check)).map((c) => c.status)).toEqual(['pass', 'pass', 'pass', 'pass']);
    for (const r of steps) expect(r.stdout + r.stderr).not.toContain(secret);
  });

  it('names the backend and schema version in key status on a SQLite store', async () => {
    const local = makeWorkspace();
    try {
      // (SWITCHBOARD_MASTER_KEY unset: while it is set, `key init --file` is refused, since it would shadow the file.)
      expectExit(await local.run(['key', 'init', '--file', `${local.dir}/key`], { env: { SWITCHBOARD_MASTER_KEY: undefined } }), 0, 'key init');
      const r = await local.run(['key', 'status', '--json'], { env: { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: `${local.dir}/key` } });
      const status = parseJson<{ store: Record<string, unknown> }>(expectExit(r, 0, 'key status'));
      expect(status.store).toMatchObject({ backend: 'sqlite', location: local.store, schemaVersion: SCHEMA_VERSION });
      expect(status.store.serverVersion).toMatch(/^3\.\d+\.\d+$/);
    } finally {
      local.cleanup();
    }
  });
});
