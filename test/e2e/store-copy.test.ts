// e2e: `store copy --to` (issue 14): every table of a filled store into an empty one, byte for byte (dumps of
// every table compared), counts printed, the copy usable with the same master key (tenants, provider show, a send
// through a provider whose password is sealed, a send through the outbox), audited on both sides; a non-empty
// target refused with exit 2 and left as it was.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, randomKey, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { sqliteCore } from '../helpers/core.js';
import { startKeyring, type TestKeyring } from '../helpers/keyring.js';
import { connectionsTo, createTestDatabase } from '../helpers/postgres.js';
import { createPgSql, type PgSql } from '../../src/store/pg.js';
import type { Sql } from '../../src/store/sql.js';
import { dumpTables } from '../helpers/store-sql.js';
import { addSmtpProvider, addSystemOutbox, addTenant, dumpStore, expectExit, readOutbox, type SendTestJson } from '../helpers/setup.js';

interface CopyJson {
  source: string;
  target: string;
  storeId: string;
  tables: Array<{ table: string; rowCount: number }>;
  rowCount: number;
  verifiedConfigCount: number;
  completedAt: string;
}

/** Every table of a SQLite store with its rows, `store.copy` audit rows left out (each store gets its own). */
function tablesOf(store: string): Record<string, string[]> {
  const dump = JSON.parse(dumpStore(store)) as Record<string, string[]>;
  dump.audit_log = dump.audit_log!.filter((r) => !r.includes('"action":"store.copy"'));
  return dump;
}

/** Row counts per table read straight from the file (`store.copy` audit rows left out of `uncopied` tables). */
function countsOf(store: string, uncopied: string[] = []): Record<string, number> {
  const db = new Database(store, { readonly: true, fileMustExist: true });
  try {
    const names = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>;
    const count = (name: string) =>
      (db.prepare(`SELECT count(*) AS n FROM "${name}"${uncopied.includes(name) ? " WHERE action <> 'store.copy'" : ''}`).get() as { n: number }).n;
    return Object.fromEntries(names.map(({ name }) => [name, count(name)]));
  } finally {
    db.close();
  }
}

/** The `store.copy` audit rows of a store. */
function copyAudits(store: string): Array<{ target: string; fields: string; actor: string }> {
  const db = new Database(store, { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT target, fields, actor FROM audit_log WHERE action = 'store.copy' ORDER BY id").all() as Array<{ target: string; fields: string; actor: string }>;
  } finally {
    db.close();
  }
}

/**
 * Fills `ws`'s store so that every table has rows: two tenants, an smtp provider with a sealed password, the system
 * outbox, a fallback switch, a template, a suppression, a sent batch with its messages; the tables no command
 * fills without a provider's servers (domains, delivery events) written as the event and domain code would, with
 * NULLs, non-ASCII text and large integers.
 */
async function fillStore(ws: Workspace, srv: TestSmtpServer, outbox: string): Promise<void> {
  await addTenant(ws, 'acme', 'Acme Ünïcode “quotes”');
  await addTenant(ws, 'beta');
  await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: 'copy-secret-pw', from: 'hello@acme.test' });
  await addSystemOutbox(ws, outbox);
  expectExit(await ws.run(['tenant', 'update', 'acme', '--fallback', 'sms=off']), 0, 'tenant update');
  const html = ws.file('tpl.html', '<p>Hello {{name}}</p>');
  expectExit(await ws.run(['template', 'add', 'hello', '--tenant', 'beta', '--subject', 'Hi {{name}}', '--html-file', html]), 0, 'template add');
  expectExit(await ws.run(['suppress', 'add', 'nope@example.com', '--tenant', 'beta', '--reason', 'asked by phone']), 0, 'suppress add');
  const csv = ws.file('rows.csv', 'email,name\nann@example.com,Ann\nnope@example.com,No\nbob@example.com,Bob\n');
  expectExit(await ws.run(['send', 'batch', '--tenant', 'beta', '--csv', csv, '--template', 'hello', '--json']), 0, 'send batch');
  // The tables no command above fills (domains, delivery events), written as the event and domain code would,
  // with NULLs, non-ASCII text and large integers, so every table has rows to carry.
  const db = new Database(ws.store);
  try {
    const now = '2026-01-02T03:04:05.678Z';
    db.prepare(
      "INSERT INTO domains (tenant_id, domain, provider_id, provider_kind, external_id, records, status, detail, checked_at, created_at, updated_at) VALUES ('acme', 'acme.test', (SELECT id FROM provider_configs WHERE tenant_id = 'acme'), 'smtp', NULL, '[{\"type\":\"TXT\",\"host\":\"acme.test\",\"value\":\"v=spf1 -all\"}]', 'pending', 'wäiting', NULL, ?, NULL)",
    ).run(now);
    db.prepare(
      "INSERT INTO events (id, event_key, received_at, occurred_at, tenant_id, channel, provider, provider_kind, type, provider_type, recipient, message_id, batch_id, row_no, detail, payload) VALUES (9007199254740000, 'sendgrid:ev-1', ?, NULL, 'beta', 'email', 'system/email/outbox', 'outbox', 'bounced', 'bounce', 'ann@example.com', 'm-1', NULL, NULL, 'soft ✉', '{\"x\":1}')",
    ).run(now);
    db.prepare(
      "INSERT INTO deliveries (message_id, recipient, tenant_id, channel, provider, batch_id, row_no, status, rank, status_at, delivered, bounced, complained, events, first_at, updated_at) VALUES ('m-1', 'ann@example.com', 'beta', 'email', 'system/email/outbox', NULL, 1, 'bounced', 5, ?, 0, 1, 0, 1, ?, ?)",
    ).run(now, now, now);
    db.prepare("INSERT INTO soft_bounces (tenant_id, channel, address, event_id, at) VALUES ('beta', 'email', 'ann@example.com', 9007199254740000, ?)").run(now);
    // A worker's lease and a share of a provider's rate, as the PostgreSQL workers write them.
    db.prepare("INSERT INTO batch_workers (batch_id, worker, lease_expires_at, joined_at) VALUES ((SELECT id FROM batches LIMIT 1), '42@host-b/0a1b2c3d', ?, ?)").run(now, now);
    db.prepare("INSERT INTO rate_grants (rate_key, batch_id, worker, n, granted_ms, done_ms) VALUES ('7|b-1', 'b-1', '42@host-b/0a1b2c3d', 3, 1767322800123, NULL)").run();
  } finally {
    db.close();
  }
}

/** A workspace whose store {@link fillStore} filled, with its SMTP server (password `copy-secret-pw`) and outbox folder. */
async function filledWorkspace(): Promise<{ ws: Workspace; srv: TestSmtpServer; outbox: string }> {
  const ws = makeWorkspace();
  const srv = await startSmtpServer({ users: { mailer: 'copy-secret-pw' } });
  const outbox = path.join(ws.dir, 'outbox');
  await fillStore(ws, srv, outbox);
  return { ws, srv, outbox };
}

describe('store copy', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;
  let outbox: string;

  beforeAll(async () => {
    ({ ws, srv, outbox } = await filledWorkspace());
  });

  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  test('copies every table into a new SQLite store, prints the counts, and the copy works with the same key', async () => {
    const before = countsOf(ws.store);
    for (const [table, n] of Object.entries(before)) expect(n, `source table ${table} has rows to copy`).toBeGreaterThan(0);
    const target = path.join(ws.dir, 'copies', 'copy.db');
    const r = await ws.run(['store', 'copy', '--to', target, '--json']);
    expect(r.exitCode, show(r)).toBe(0);
    const out = parseJson<CopyJson>(r);
    expect(out.source).toBe(ws.store);
    expect(out.target).toBe(target);
    expect(Object.fromEntries(out.tables.map((t) => [t.table, t.rowCount]))).toEqual(before);
    expect(out.rowCount).toBe(Object.values(before).reduce((a, b) => a + b, 0));
    expect(out.verifiedConfigCount).toBe(before.provider_configs);
    // Parents before children: every table after the tables it references.
    const order = out.tables.map((t) => t.table);
    expect(order.indexOf('tenants')).toBeLessThan(order.indexOf('provider_configs'));
    expect(order.indexOf('keys')).toBeLessThan(order.indexOf('provider_configs'));
    expect(order.indexOf('provider_configs')).toBeLessThan(order.indexOf('domains'));
    expect(order.indexOf('batches')).toBeLessThan(order.indexOf('batch_items'));

    // Every table, every row, every byte (sealed secrets included), the store id too.
    expect(tablesOf(target)).toEqual(tablesOf(ws.store));
    expect(fs.statSync(target).mode & 0o777).toBe(0o600);

    // One store.copy audit row on each side, naming both stores and the tables, no values.
    for (const store of [ws.store, target]) {
      const rows = copyAudits(store);
      expect(rows, store).toHaveLength(1);
      expect(rows[0]!.target).toBe(`${ws.store} -> ${target}`);
      expect(JSON.parse(rows[0]!.fields)).toEqual(Object.keys(before).sort());
      expect(JSON.stringify(rows)).not.toContain('copy-secret-pw');
    }

    // The copy is a working store with the same master key.
    const inCopy = (args: string[]) => ws.run(args, { env: { SWITCHBOARD_STORE: target } });
    expect(parseJson<Array<{ id: string }>>(await inCopy(['tenant', 'list', '--json'])).map((t) => t.id)).toEqual(['acme', 'beta']);
    const shown = await inCopy(['provider', 'show', 'acme/email/smtp', '--json']);
    expect(shown.exitCode, show(shown)).toBe(0);
    expect(shown.stdout).not.toContain('copy-secret-pw');
    const viaSmtp = await inCopy(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'ana@example.com', '--subject', 'From the copy', '--body', 'Hi', '--json']);
    expect(viaSmtp.exitCode, show(viaSmtp)).toBe(0);
    expect(parseJson<SendTestJson>(viaSmtp)).toMatchObject({ status: 'sent', provider: 'acme/email/smtp' });
    expect(srv.messages.map((m) => m.subject)).toContain('From the copy');
    const viaOutbox = await inCopy(['send', 'test', '--tenant', 'beta', '--channel', 'email', '--to', 'cy@example.com', '--subject', 'Outbox from the copy', '--body', 'Hi', '--json']);
    expect(viaOutbox.exitCode, show(viaOutbox)).toBe(0);
    expect(parseJson<SendTestJson>(viaOutbox)).toMatchObject({ status: 'sent', provider: 'system/email/outbox' });
    expect((await readOutbox(outbox)).map((m) => m.subject)).toContain('Outbox from the copy');
  });

  test('prints a table of rows per table', async () => {
    const target = path.join(ws.dir, 'human.db');
    const r = await ws.run(['store', 'copy', '--to', target]);
    expect(r.exitCode, show(r)).toBe(0);
    expect(r.stdout).toContain(`Copied ${ws.store} to ${target}`);
    const counts = countsOf(ws.store);
    // The source got one more store.copy audit row after this copy read it.
    counts.audit_log! -= 1;
    for (const [table, n] of Object.entries(counts)) expect(r.stdout, table).toMatch(new RegExp(`^${table}\\s+${n}$`, 'm'));
    expect(r.stdout).toContain('2 provider configs verified');
  });

  test('a target that is not empty is refused with exit 2 and left as it was', async () => {
    const other = makeWorkspace();
    try {
      // A store with one tenant.
      expectExit(await other.run(['tenant', 'add', 'zed', '--name', 'Zed']), 0, 'tenant add');
      const before = dumpStore(other.store);
      const r = await ws.run(['store', 'copy', '--to', other.store]);
      expect(r.exitCode, show(r)).toBe(2);
      expect(r.stderr).toMatch(/is not empty \(table \w+ has \d+ rows?\).*nothing was written/);
      expect(r.stdout).toBe('');
      expect(dumpStore(other.store)).toBe(before);

      // A new store whose only row is a delivery event, where no listing command looks.
      const eventsOnly = path.join(other.dir, 'events-only.db');
      const { db } = sqliteCore(eventsOnly);
      db.prepare(
        "INSERT INTO events (event_key, received_at, channel, provider, provider_kind, type, provider_type, payload) VALUES ('k', '2026-01-01T00:00:00.000Z', 'email', 'p', 'outbox', 'delivered', 'delivered', '{}')",
      ).run();
      db.close();
      const beforeEvents = dumpStore(eventsOnly);
      const e = await ws.run(['store', 'copy', '--to', eventsOnly, '--json']);
      expect(e.exitCode, show(e)).toBe(2);
      expect(e.stderr).toContain('(table events has 1 row)');
      expect(dumpStore(eventsOnly)).toBe(beforeEvents);
      // Neither refusal wrote an audit row in the source.
      expect(copyAudits(ws.store).every((a) => !a.target.endsWith(other.store) && !a.target.endsWith(eventsOnly))).toBe(true);
    } finally {
      other.cleanup();
    }
  });

  test('an empty store made by switchboard is a valid target; the flags are checked before anything is written', async () => {
    const empty = path.join(ws.dir, 'empty.db');
    sqliteCore(empty).db.close();
    expectExit(await ws.run(['store', 'copy', '--to', empty]), 0, 'copy into an empty store');
    expect(tablesOf(empty).tenants).toEqual(tablesOf(ws.store).tenants);

    const none = await ws.run(['store', 'copy']);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain('--to');
    const self = await ws.run(['store', 'copy', '--to', ws.store]);
    expect(self.exitCode).toBe(2);
    expect(self.stderr).toContain('is the current store');
    const pw = 'argv-secret-pw';
    const withPassword = await ws.run(['store', 'copy', '--to', `postgres://sb:${pw}@127.0.0.1:1/sb`]);
    expect(withPassword.exitCode).toBe(2);
    expect(withPassword.stderr).toMatch(/password.*visible/);
    expect(withPassword.stderr).not.toContain(pw);
  });

  test('a wrong master key or a provider config changed outside switchboard stops the copy before the target exists', async () => {
    const target = path.join(ws.dir, 'never.db');
    const wrong = await ws.run(['store', 'copy', '--to', target], { env: { SWITCHBOARD_MASTER_KEY: randomKey() } });
    expect(wrong.exitCode, show(wrong)).toBe(5);
    expect(fs.existsSync(target)).toBe(false);

    const tampered = makeWorkspace();
    try {
      await addTenant(tampered, 'acme');
      await addSystemOutbox(tampered, path.join(tampered.dir, 'out'));
      const db = new Database(tampered.store);
      db.prepare("UPDATE provider_configs SET settings = json_set(settings, '$.dir', '/tmp/elsewhere')").run();
      db.close();
      const r = await tampered.run(['store', 'copy', '--to', target]);
      expect(r.exitCode, show(r)).toBe(5);
      expect(r.stderr).toContain('system/email/outbox was changed outside switchboard');
      expect(fs.existsSync(target)).toBe(false);
    } finally {
      tampered.cleanup();
    }
  });
});

/** {@link dumpTables} without the `store.copy` audit rows (each copy records itself on both sides). */
function dumpSql(sql: Sql): Promise<Record<string, string[]>> {
  return dumpTables(sql, { skipAction: 'store.copy' });
}

describe('store copy: SQLite → PostgreSQL → SQLite', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;
  let outbox: string;
  let pgUrl: string;
  let database: string;
  let pgSql: PgSql;

  beforeAll(async () => {
    ({ ws, srv, outbox } = await filledWorkspace());
    ({ url: pgUrl, database } = await createTestDatabase('store_copy'));
    pgSql = createPgSql(pgUrl, 'test');
  });

  afterAll(async () => {
    await pgSql?.close();
    await srv?.close();
    ws?.cleanup();
  });

  test('a password in the --to URL is refused before connecting', async () => {
    const seen = connectionsTo(database).length;
    const pw = 'argv-secret-pw';
    const r = await ws.run(['store', 'copy', '--to', pgUrl.replace('postgres@', `postgres:${pw}@`)]);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).not.toContain(pw);
    expect(connectionsTo(database).length).toBe(seen);
  });

  test('every table round-trips byte for byte, ids and sequences included, and the copies work', async () => {
    const original = await dumpSql(sqliteCore(ws.store).sql);
    for (const [table, rows] of Object.entries(original)) expect(rows.length, `source table ${table} has rows`).toBeGreaterThan(0);

    // SQLite → PostgreSQL through the command.
    const r = await ws.run(['store', 'copy', '--to', pgUrl, '--json']);
    expect(r.exitCode, show(r)).toBe(0);
    const out = parseJson<CopyJson>(r);
    expect(out.target).toBe(pgUrl);
    expect(Object.fromEntries(out.tables.map((t) => [t.table, t.rowCount]))).toEqual(countsOf(ws.store, ['audit_log']));
    expect(out.verifiedConfigCount).toBe(2);
    expect(await dumpSql(pgSql)).toEqual(original);
    const audit = await pgSql.all<{ target: string }>("SELECT target FROM audit_log WHERE action = 'store.copy'");
    expect(audit).toEqual([{ target: `${ws.store} -> ${pgUrl}` }]);

    // The identity sequences were moved past the copied ids: a new row gets the next id.
    const maxAudit = (await pgSql.get<{ m: number }>('SELECT max(id) AS m FROM audit_log'))!.m;
    const fresh = await pgSql.get<{ id: number }>(
      "INSERT INTO audit_log (at, actor, action, target, tenant_id, fields) VALUES ('2026-01-01T00:00:00.000Z', 'test', 'test.probe', 'x', NULL, '[]') RETURNING id",
    );
    expect(fresh!.id).toBe(maxAudit + 1);
    const maxMessage = (await pgSql.get<{ m: number }>('SELECT max(id) AS m FROM messages'))!.m;
    const seq = await pgSql.get<{ v: number }>("SELECT last_value AS v FROM pg_sequences WHERE schemaname || '.' || sequencename = pg_get_serial_sequence('messages', 'id')");
    expect(seq!.v).toBe(maxMessage);

    // A second copy into the same database is refused: it is not empty any more.
    const again = await ws.run(['store', 'copy', '--to', pgUrl]);
    expect(again.exitCode, show(again)).toBe(2);
    expect(again.stderr).toMatch(/is not empty/);

    // PostgreSQL → SQLite through the command, the PostgreSQL store as the current store.
    const back = path.join(ws.dir, 'back.db');
    const fromPg = await ws.run(['store', 'copy', '--to', back, '--json'], { env: { SWITCHBOARD_STORE: pgUrl } });
    expect(fromPg.exitCode, show(fromPg)).toBe(0);
    const backOut = parseJson<CopyJson>(fromPg);
    expect(backOut.source).toBe(pgUrl);
    expect(backOut.storeId).toBe(out.storeId);
    expect(backOut.verifiedConfigCount).toBe(2);
    const returned = await dumpSql(sqliteCore(back).sql);
    expect(returned.audit_log!.filter((row) => row.includes('test.probe'))).toHaveLength(1);
    returned.audit_log = returned.audit_log!.filter((row) => !row.includes('test.probe'));
    expect(returned).toEqual(original);
    // Each copy recorded itself on both sides: the PostgreSQL store has the one it received and the one it sent.
    expect((await pgSql.all<{ target: string }>("SELECT target FROM audit_log WHERE action = 'store.copy' ORDER BY id")).map((a) => a.target)).toEqual([
      `${ws.store} -> ${pgUrl}`,
      `${pgUrl} -> ${back}`,
    ]);
    // The SQLite copy carries the PostgreSQL store's audit log as it was, then its own row.
    expect(copyAudits(back).map((a) => a.target)).toEqual([`${ws.store} -> ${pgUrl}`, `${pgUrl} -> ${back}`]);

    // The copy that came back works with the same master key: a send through the sealed smtp password and the outbox.
    const inBack = (args: string[]) => ws.run(args, { env: { SWITCHBOARD_STORE: back } });
    const viaSmtp = await inBack(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'ana@example.com', '--subject', 'Round trip smtp', '--body', 'Hi', '--json']);
    expect(viaSmtp.exitCode, show(viaSmtp)).toBe(0);
    expect(srv.messages.map((m) => m.subject)).toContain('Round trip smtp');
    const viaOutbox = await inBack(['send', 'test', '--tenant', 'beta', '--channel', 'email', '--to', 'cy@example.com', '--subject', 'Round trip outbox', '--body', 'Hi', '--json']);
    expect(viaOutbox.exitCode, show(viaOutbox)).toBe(0);
    expect((await readOutbox(outbox)).map((m) => m.subject)).toContain('Round trip outbox');
  });

  test('the PostgreSQL copy works with the same master key: tenant list, provider show, sends through the sealed smtp password and the outbox', async () => {
    const inPg = (args: string[]) => ws.run(args, { env: { SWITCHBOARD_STORE: pgUrl } });
    const tenants = parseJson<Array<{ id: string }>>(expectExit(await inPg(['tenant', 'list', '--json']), 0, 'tenant list'));
    expect(tenants.map((t) => t.id)).toEqual(expect.arrayContaining(['acme', 'beta']));
    const shown = parseJson<{ id: string; kind: string }>(expectExit(await inPg(['provider', 'show', 'acme/email/smtp', '--json']), 0, 'provider show'));
    expect(shown).toMatchObject({ id: 'acme/email/smtp', kind: 'smtp' });
    const viaSmtp = await inPg(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'ana@example.com', '--subject', 'From PostgreSQL smtp', '--body', 'Hi', '--json']);
    expect(viaSmtp.exitCode, show(viaSmtp)).toBe(0);
    expect(srv.messages.map((m) => m.subject)).toContain('From PostgreSQL smtp');
    const viaOutbox = await inPg(['send', 'test', '--tenant', 'beta', '--channel', 'email', '--to', 'cy@example.com', '--subject', 'From PostgreSQL outbox', '--body', 'Hi', '--json']);
    expect(viaOutbox.exitCode, show(viaOutbox)).toBe(0);
    expect((await readOutbox(outbox)).map((m) => m.subject)).toContain('From PostgreSQL outbox');
  });
});

describe('store copy with the key in the OS keychain', () => {
  test('the copy keeps the store id, so it finds the same keychain item and its secrets open', async () => {
    const kr = await startKeyring();
    const ws = makeWorkspace();
    try {
      await copyWithKeychain(kr, ws);
    } finally {
      ws.cleanup();
      await kr.stop();
    }
  });
});

/** The keychain case of `store copy`: no key in the environment, only the keychain item under the store id. */
async function copyWithKeychain(kr: TestKeyring, ws: Workspace): Promise<void> {
  const env = () => ({ SWITCHBOARD_MASTER_KEY: undefined, DBUS_SESSION_BUS_ADDRESS: kr.env.DBUS_SESSION_BUS_ADDRESS });
  expectExit(await ws.run(['key', 'init', '--keychain'], { env: env() }), 0, 'key init --keychain');
  expectExit(await ws.run(['tenant', 'add', 'acme', '--name', 'Acme'], { env: env() }), 0, 'tenant add');
  const outbox = path.join(ws.dir, 'outbox');
  expectExit(
    await ws.run(['provider', 'add', '--system', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${outbox}`, '--set', 'from=sys@example.com'], { env: env() }),
    0,
    'provider add',
  );
  const target = path.join(ws.dir, 'copy.db');
  const r = await ws.run(['store', 'copy', '--to', target, '--json'], { env: env() });
  expect(r.exitCode, show(r)).toBe(0);
  const source = parseJson<{ storeId: string }>(await ws.run(['key', 'status', '--json'], { env: env() }));
  const copied = parseJson<{ storeId: string; source: string; matches: boolean }>(
    await ws.run(['key', 'status', '--json'], { env: { ...env(), SWITCHBOARD_STORE: target } }),
  );
  expect(parseJson<CopyJson>(r).storeId).toBe(source.storeId);
  expect(copied).toMatchObject({ storeId: source.storeId, source: 'keychain', matches: true });
  const sent = await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'kc@example.com', '--subject', 'Keychain copy', '--body', 'Hi', '--json'], {
    env: { ...env(), SWITCHBOARD_STORE: target },
  });
  expect(sent.exitCode, show(sent)).toBe(0);
  expect((await readOutbox(outbox)).map((m) => m.subject)).toEqual(['Keychain copy']);
}
