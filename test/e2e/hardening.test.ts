// e2e (issue 11): provider configs authenticated as a whole (a row changed with SQL is refused before any
// connection), the upgrade of stores from before MACs, key-file modes, doctor on real trouble (damaged pages,
// secrets dropped by key reset, an open key file), erasure of removed tenants, no silent stores, and
// `store backup|vacuum`. Real files throughout; stores are changed the way an attacker with write access would,
// with the project's own better-sqlite3.
import { createCipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { dumpStore, expectExit, storeFiles } from '../helpers/setup.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { startHttpStub, type HttpStub } from '../helpers/http-stub.js';
import { openStore } from '../../src/store/db.js';
import { SqliteSql } from '../../src/store/sql.js';
import { sqliteStoreOps } from '../../src/store/open.js';
import { systemClock, type CoreContext } from '../../src/core/context.js';
import { addProvider } from '../../src/core/providers.js';
import { addTenant as addTenantCore } from '../../src/core/tenants.js';

interface Check {
  check: string;
  status: string;
  detail: string;
  fix: string | null;
}
const doctorChecks = (r: { stdout: string; stderr: string; exitCode: number }) => parseJson<{ checks: Check[] }>(r).checks;

/** A TCP server that only counts connections (where a tampered config would send the password). */
async function trap(host: string, port = 0): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { port: (server.address() as net.AddressInfo).port, connections: () => n, close: () => new Promise((r) => server.close(() => r())) };
}

function withDb<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = new Database(file);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Runs core functions on the workspace's store in this process (setup that needs no CLI run). */
async function inProcess(ws: Workspace, fn: (ctx: CoreContext) => Promise<unknown>): Promise<void> {
  const db = openStore(ws.store);
  try {
    await fn({ sql: new SqliteSql(db), store: sqliteStoreOps(db, ws.store), storePath: ws.store, clock: systemClock, env: { SWITCHBOARD_MASTER_KEY: ws.key }, actor: 'test@host' });
  } finally {
    db.close();
  }
}

/** Folds the WAL into the main file and empties it, as a checkpoint by any SQLite client would. */
function checkpoint(file: string): void {
  withDb(file, (db) => db.pragma('wal_checkpoint(TRUNCATE)'));
}

describe('provider configs are authenticated as a whole', () => {
  let ws: Workspace;
  let smtp: TestSmtpServer;
  let http: HttpStub;
  let evilHost: Awaited<ReturnType<typeof trap>>;
  let evilPort: Awaited<ReturnType<typeof trap>>;
  let pristine: string;
  const PASSWORD = 'Tamper-Matrix-Pass-4e1d';

  beforeAll(async () => {
    ws = makeWorkspace();
    smtp = await startSmtpServer({ users: { mailer: PASSWORD } });
    http = await startHttpStub(() => ({ status: 500, body: { error: 'not expected' } }));
    evilHost = await trap('127.0.0.2', smtp.port); // same port, another host
    evilPort = await trap('127.0.0.1'); // same host, another port
    // The store, built in-process through core (as seed.mjs does): faster than a dozen CLI runs.
    await inProcess(ws, async (ctx) => {
      await addTenantCore(ctx, 'acme', 'Acme');
      const ca = ws.file('ca.pem', smtp.cert);
      const base = { tenantId: 'acme', channel: 'email' as const };
      await addProvider(ctx, {
        ...base,
        kind: 'smtp',
        priority: 10,
        settings: { host: smtp.host, port: String(smtp.port), tls: 'starttls', user: 'mailer', from: 'noreply@acme.test', ca },
        secrets: { password: PASSWORD },
      });
      await addProvider(ctx, { ...base, kind: 'sendgrid', priority: 20, settings: { from: 'noreply@acme.test', endpoint: http.url }, secrets: { apiKey: 'SG.tamper-matrix-key-000000000000' } });
      await addProvider(ctx, {
        ...base,
        kind: 'ses',
        priority: 30,
        settings: { region: 'eu-west-1', from: 'noreply@acme.test', accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`, endpoint: http.url },
        secrets: { secretAccessKey: 'tamper-matrix-aws-secret' },
      });
    });
    checkpoint(ws.store);
    pristine = path.join(ws.dir, 'pristine.db');
    fs.copyFileSync(ws.store, pristine);
  });
  afterAll(async () => {
    await smtp?.close();
    await http?.close();
    await evilHost?.close();
    await evilPort?.close();
    ws?.cleanup();
  });

  const seen = () => ({ smtp: smtp.connections, http: http.requests.length, evilHost: evilHost.connections(), evilPort: evilPort.connections() });

  /** A copy of the pristine store with `sql` applied; returns its path. */
  function tampered(name: string, sql: string | ((db: Database.Database) => void)): string {
    const file = path.join(ws.dir, `case-${name}.db`);
    fs.copyFileSync(pristine, file);
    withDb(file, (db) => (typeof sql === 'string' ? db.exec(sql) : sql(db)));
    return file;
  }

  const send = (store: string) =>
    ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'pat@example.com', '--subject', 'S', '--body', 'B', '--json'], { env: { SWITCHBOARD_STORE: store } });

  const SMTP = "WHERE kind = 'smtp'";
  const cases: Array<[string, string | ((db: Database.Database) => void), RegExp]> = [
    ['host', `UPDATE provider_configs SET settings = json_set(settings, '$.host', '127.0.0.2') ${SMTP}`, /acme\/email\/smtp was changed outside switchboard/],
    ['port', () => undefined, /acme\/email\/smtp was changed outside switchboard/], // filled in below (needs the trap's port)
    ['endpoint', () => undefined, /acme\/email\/sendgrid was changed/], // filled in below
    ['region', `UPDATE provider_configs SET settings = json_set(settings, '$.region', 'us-east-1') WHERE kind = 'ses'`, /acme\/email\/ses was changed/],
    ['from', `UPDATE provider_configs SET settings = json_set(settings, '$.from', 'ceo@bank.example') ${SMTP}`, /acme\/email\/smtp was changed/],
    ['kind', `UPDATE provider_configs SET kind = 'outbox', settings = json_set(settings, '$.dir', '/tmp') ${SMTP}`, /acme\/email\/smtp was changed/],
    ['enabled', `UPDATE provider_configs SET enabled = 0 ${SMTP}`, /acme\/email\/smtp was changed/],
    ['priority', `UPDATE provider_configs SET priority = 1 WHERE kind = 'ses'`, /acme\/email\/ses was changed/],
    [
      'sealed blob',
      (db) => {
        const blob = (db.prepare(`SELECT sealed_secrets FROM provider_configs ${SMTP}`).get() as { sealed_secrets: Buffer }).sealed_secrets;
        blob[blob.length - 2] = blob[blob.length - 2]! ^ 0x01;
        db.prepare(`UPDATE provider_configs SET sealed_secrets = ? ${SMTP}`).run(blob);
      },
      /secrets of provider acme\/email\/smtp failed their integrity check/,
    ],
    ['moved blob', `UPDATE provider_configs SET sealed_secrets = (SELECT sealed_secrets FROM provider_configs WHERE kind = 'ses') WHERE kind = 'sendgrid'`, /secrets of provider acme\/email\/sendgrid failed/],
  ];

  test('each change made outside switchboard → exit 5 naming the config and the fix, no connection anywhere, nothing written', async () => {
    cases[1]![1] = `UPDATE provider_configs SET settings = json_set(settings, '$.port', ${evilPort.port}) ${SMTP}`;
    cases[2]![1] = `UPDATE provider_configs SET settings = json_set(settings, '$.endpoint', 'http://127.0.0.1:${evilPort.port}') WHERE kind = 'sendgrid'`;
    const before = seen();
    for (const [name, sql, message] of cases) {
      const store = tampered(name.replace(/ /g, '-'), sql);
      const dump = dumpStore(store);
      const r = await send(store);
      expect(r.exitCode, `${name}: ${show(r)}`).toBe(5);
      expect(r.stderr, name).toMatch(message);
      expect(r.stderr, name).toMatch(/provider update acme\/email\/\w+ --confirm/);
      expect(r.stderr.trim().split('\n'), name).toHaveLength(1);
      expect(seen(), `${name}: a connection was made`).toEqual(before);
      expect(dumpStore(store), `${name}: the store changed`).toBe(dump);
    }
    expect(smtp.messages).toHaveLength(0);
  });

  test('after `provider update … --confirm` (correcting what was changed) sends work again; a plain update is refused', async () => {
    const store = tampered('recover-host', `UPDATE provider_configs SET settings = json_set(settings, '$.host', '127.0.0.2') ${SMTP}`);
    const env = { SWITCHBOARD_STORE: store };
    const plain = await ws.run(['provider', 'update', 'acme/email/smtp', '--priority', '11'], { env });
    expect(plain.exitCode, show(plain)).toBe(5);
    expectExit(await ws.run(['provider', 'update', 'acme/email/smtp', '--set', `host=${smtp.host}`, '--confirm'], { env }), 0, 'update --confirm');
    expect(parseJson<{ status: string; provider: string }>(expectExit(await send(store), 0, 'send after confirm'))).toMatchObject({ status: 'sent', provider: 'acme/email/smtp' });
    expect(smtp.messages.at(-1)?.user).toBe('mailer');
    const audit = parseJson<Array<{ action: string; target: string; fields: string[] }>>(await ws.run(['audit', 'list', '--json'], { env }));
    expect(audit.at(-1)).toMatchObject({ action: 'provider.confirm', target: 'acme/email/smtp', fields: expect.arrayContaining(['host', 'mac']) });

    // A blob moved from another config: re-confirmed by entering the secret again.
    const blob = tampered('recover-blob', `UPDATE provider_configs SET sealed_secrets = (SELECT sealed_secrets FROM provider_configs WHERE kind = 'ses') ${SMTP}`);
    expectExit(await ws.run(['provider', 'update', 'acme/email/smtp', '--confirm', '--secret-env', 'password=P'], { env: { SWITCHBOARD_STORE: blob, P: PASSWORD } }), 0, 'update --confirm --secret-env');
    expect(parseJson<{ provider: string }>(expectExit(await send(blob), 0, 'send after re-entering the secret')).provider).toBe('acme/email/smtp');
  });

  test('a store from before MACs is upgraded on first open with the key (audited); removing the marker later does not re-open that door', async () => {
    const store = tampered('old', (db) => {
      // Make it look as an earlier switchboard left it: schema 3, no mac column or marker, v1 sealed blobs, and
      // none of what later migrations add (issue 13's delivery-status tables and suppressions.expires_at, issue 10's
      // batch columns, issue 14's workers).
      const rows = db.prepare('SELECT id, tenant_id, channel, name, key_id, sealed_secrets FROM provider_configs').all() as Array<{ id: number; tenant_id: string; channel: string; name: string; key_id: number }>;
      const key = Buffer.from(ws.key, 'base64');
      for (const r of rows) {
        // v1 format (seal.ts): [1] IV(12) tag(16) ciphertext, AAD `tenant|channel|name|keyId`.
        const iv = randomBytes(12);
        const c = createCipheriv('aes-256-gcm', key, iv);
        c.setAAD(Buffer.from(`${r.tenant_id}|${r.channel}|${r.name}|${r.key_id}`));
        const secret = r.name === 'smtp' ? { password: PASSWORD } : r.name === 'sendgrid' ? { apiKey: 'SG.x' } : { secretAccessKey: 'x' };
        const body = Buffer.concat([c.update(JSON.stringify(secret)), c.final()]);
        db.prepare('UPDATE provider_configs SET sealed_secrets = ? WHERE id = ?').run(Buffer.concat([Buffer.from([1]), iv, c.getAuthTag(), body]), r.id);
      }
      db.exec(`ALTER TABLE provider_configs DROP COLUMN mac; DELETE FROM meta WHERE key = 'config_macs';
               DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;
               DROP TABLE events; DROP TABLE deliveries; DROP TABLE soft_bounces; DROP INDEX messages_message_id;
               ALTER TABLE suppressions DROP COLUMN expires_at;
               DROP INDEX batches_derived_key; ALTER TABLE batches DROP COLUMN derived_key; ALTER TABLE batches DROP COLUMN key_expires_at;
               ALTER TABLE batches DROP COLUMN paused_reason; ALTER TABLE batches DROP COLUMN paused_at; ALTER TABLE batch_items DROP COLUMN error_kind;
               ALTER TABLE batch_items DROP COLUMN worker; DROP TABLE batch_workers; DROP TABLE rate_grants;
               PRAGMA user_version = 3;`);
    });
    const env = { SWITCHBOARD_STORE: store };
    expect(parseJson<{ status: string }>(expectExit(await send(store), 0, 'first send on the old store')).status).toBe('sent');
    const audit = parseJson<Array<{ action: string; target: string }>>(await ws.run(['audit', 'list', '--json'], { env }));
    expect(audit.filter((a) => a.action === 'provider.authenticate').map((a) => a.target).sort()).toEqual(['acme/email/sendgrid', 'acme/email/ses', 'acme/email/smtp']);
    const after = withDb(store, (db) => db.prepare('SELECT mac, substr(sealed_secrets, 1, 1) AS v FROM provider_configs').all() as Array<{ mac: string; v: Buffer }>);
    expect(after.every((r) => /^[0-9a-f]{64}$/.test(r.mac) && r.v[0] === 2)).toBe(true);

    // Someone without the key removes the marker and a MAC, and points the host elsewhere, hoping for a second
    // "upgrade": the v2 blobs show the store was upgraded, so the row is refused.
    withDb(store, (db) => db.exec(`DELETE FROM meta WHERE key = 'config_macs'; UPDATE provider_configs SET mac = NULL, settings = json_set(settings, '$.host', '127.0.0.2') ${SMTP}`));
    const before = seen();
    const r = await send(store);
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr).toMatch(/acme\/email\/smtp was changed outside switchboard/);
    expect(seen()).toEqual(before);
    const audit2 = parseJson<Array<{ action: string }>>(await ws.run(['audit', 'list', '--json'], { env }));
    expect(audit2.at(-1)?.action).toBe('store.config-macs-restored');
  });

  test('key rotate re-MACs every config (sends work after it) and refuses to launder a changed one', async () => {
    const store = tampered('rotate', () => undefined);
    const keyFile = ws.file('rotate.key', ws.key + '\n');
    fs.chmodSync(keyFile, 0o600);
    const env = { SWITCHBOARD_STORE: store, SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: keyFile };
    expectExit(await ws.run(['key', 'rotate'], { env }), 0, 'key rotate');
    expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'pat@example.com'], { env }), 0, 'send after rotate');
    withDb(store, (db) => db.exec(`UPDATE provider_configs SET priority = 1 WHERE kind = 'ses'`));
    const dump = dumpStore(store);
    const r = await ws.run(['key', 'rotate'], { env });
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr).toMatch(/acme\/email\/ses was changed outside switchboard/);
    expect(dumpStore(store)).toBe(dump);
  });
});

describe('key files must be private', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = makeWorkspace();
    await inProcess(ws, (ctx) => addTenantCore(ctx, 'acme', 'Acme'));
  });
  afterAll(() => ws?.cleanup());

  test('0644, 0640, 0604 → exit 5 naming the mode and chmod 600; 0600 and 0400 work; doctor fails the open one', async () => {
    const file = ws.file('master.key', ws.key + '\n');
    const env = { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: file };
    for (const mode of [0o644, 0o640, 0o604]) {
      fs.chmodSync(file, mode);
      const r = await ws.run(['key', 'status'], { env });
      expect(r.exitCode, show(r)).toBe(5);
      expect(r.stderr).toContain(`mode 0${mode.toString(8)}`);
      expect(r.stderr).toContain(`chmod 600 ${file}`);
    }
    const doctor = await ws.run(['doctor', '--json'], { env });
    expect(doctor.exitCode, show(doctor)).toBe(1);
    expect(doctorChecks(doctor).find((c) => c.check === 'key file mode')).toMatchObject({ status: 'fail', fix: `chmod 600 ${file}` });
    for (const mode of [0o600, 0o400]) {
      fs.chmodSync(file, mode);
      expectExit(await ws.run(['key', 'status'], { env }), 0, `key file mode 0${mode.toString(8)}`);
    }
    // The key from the file: a host without a keychain (no D-Bus session here, as on CI and cron hosts) is not
    // warned about it, since the keychain is not consulted.
    const ok = doctorChecks(await ws.run(['doctor', '--json'], { env: { ...env, DBUS_SESSION_BUS_ADDRESS: undefined } }));
    expect(ok.find((c) => c.check === 'keychain')).toMatchObject({ status: 'pass', detail: expect.stringMatching(/^not consulted: the key comes from key file .* \(unavailable here: /) });
  });
});

describe('doctor finds real trouble', () => {
  test('damaged pages in a checkpointed copy → exit 1 naming the damage and the way out; other commands say so too', async () => {
    const ws = makeWorkspace();
    try {
      await inProcess(ws, async (ctx) => {
        for (const t of ['acme', 'beta', 'gamma']) await addTenantCore(ctx, t, t);
      });
      checkpoint(ws.store);
      const damaged = path.join(ws.dir, 'damaged.db');
      fs.copyFileSync(ws.store, damaged);
      const { root, pageSize } = withDb(damaged, (db) => ({
        root: (db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'tenants'").get() as { rootpage: number }).rootpage,
        pageSize: db.pragma('page_size', { simple: true }) as number,
      }));
      const fd = fs.openSync(damaged, 'r+');
      fs.writeSync(fd, randomBytes(pageSize), 0, pageSize, (root - 1) * pageSize);
      fs.closeSync(fd);
      const env = { SWITCHBOARD_STORE: damaged };
      const r = await ws.run(['doctor', '--json'], { env });
      expect(r.exitCode, show(r)).toBe(1);
      const integrity = doctorChecks(r).find((c) => c.check === 'store integrity');
      expect(integrity).toMatchObject({ status: 'fail', detail: expect.stringMatching(/quick_check found damage: .*(page|malformed)/i) });
      expect(integrity?.fix).toMatch(/store backup/);
      expect(integrity?.fix).toMatch(/\.recover/);
      const deep = await ws.run(['doctor', '--deep', '--json'], { env });
      expect(doctorChecks(deep).find((c) => c.check === 'store integrity')?.detail).toMatch(/integrity_check found damage/);
      const list = await ws.run(['tenant', 'list'], { env });
      expect(list.exitCode, show(list)).toBe(1);
      expect(list.stderr).toMatch(/damaged.*doctor --deep/);
      // The undamaged original passes.
      expect(doctorChecks(await ws.run(['doctor', '--json'])).find((c) => c.check === 'store integrity')).toMatchObject({ status: 'pass', detail: 'PRAGMA quick_check: ok' });
    } finally {
      ws.cleanup();
    }
  });

  test('secrets dropped by key reset: doctor fails naming `provider update … --secret-env`; provider list and show mark them', async () => {
    const ws = makeWorkspace();
    try {
      const keyFile = ws.file('k/master.key', ws.key + '\n');
      fs.chmodSync(keyFile, 0o600);
      const env = { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: keyFile };
      // (The key file holds the same key the in-process setup uses.)
      await inProcess(ws, async (ctx) => {
        await addTenantCore(ctx, 'acme', 'Acme');
        await addProvider(ctx, { tenantId: 'acme', channel: 'sms', kind: 'twilio', settings: { accountSid: `AC${'0'.repeat(32)}`, from: '+14155550100' }, secrets: { authToken: 'twilio-token-to-drop' } });
        await addProvider(ctx, { tenantId: null, channel: 'email', kind: 'outbox', settings: { dir: path.join(ws.dir, 'out') }, secrets: {} });
      });
      fs.rmSync(keyFile);
      const newKey = path.join(ws.dir, 'k/new.key');
      expectExit(await ws.run(['key', 'reset', '--yes', '--file', newKey], { env }), 0, 'key reset');
      const env2 = { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: newKey };
      const doctor = await ws.run(['doctor', '--json'], { env: env2 });
      expect(doctor.exitCode, show(doctor)).toBe(1);
      const checks = doctorChecks(doctor);
      expect(checks.find((c) => c.check === 'provider acme/sms/twilio secrets')).toMatchObject({
        status: 'fail',
        detail: expect.stringMatching(/missing authToken \(dropped by `key reset`\)/),
        fix: expect.stringContaining('switchboard provider update acme/sms/twilio --secret-env authToken=ENV_VAR'),
      });
      expect(checks.find((c) => c.check === 'provider system/email/outbox secrets')?.status).toBe('pass');
      // key reset re-MACed every config with the new key.
      expect(checks.filter((c) => c.check.startsWith('provider ') && c.check.endsWith(' integrity')).map((c) => c.status)).toEqual(['pass', 'pass']);
      const list = expectExit(await ws.run(['provider', 'list'], { env: env2 }), 0, 'provider list');
      expect(list.stdout).toMatch(/acme\/sms\/twilio\t.*authToken=MISSING/);
      expect(list.stderr).toMatch(/acme\/sms\/twilio is missing secret authToken/);
      expect(expectExit(await ws.run(['provider', 'show', 'acme/sms/twilio'], { env: env2 }), 0, 'show').stdout).toMatch(/secret authToken\s+MISSING/);
      const listed = parseJson<Array<{ id: string; missingSecrets: string[] }>>(await ws.run(['provider', 'list', '--json'], { env: env2 }));
      expect(listed.map((p) => [p.id, p.missingSecrets])).toEqual([
        ['system/email/outbox', []],
        ['acme/sms/twilio', ['authToken']],
      ]);
      expectExit(await ws.run(['provider', 'update', 'acme/sms/twilio', '--secret-env', 'authToken=T'], { env: { ...env2, T: 'typed-again' } }), 0, 'enter it again');
      expect(doctorChecks(await ws.run(['doctor', '--json'], { env: env2 })).find((c) => c.check === 'provider acme/sms/twilio secrets')?.status).toBe('pass');
    } finally {
      ws.cleanup();
    }
  });

  test('an smtp config with a user but no password (e.g. after key reset) neither sends nor verifies without AUTH: config error, no connection', async () => {
    const ws = makeWorkspace();
    const smtp = await startSmtpServer({ users: { mailer: 'the-real-password' } });
    try {
      await inProcess(ws, async (ctx) => {
        await addTenantCore(ctx, 'acme', 'Acme');
        await addProvider(ctx, { tenantId: 'acme', channel: 'email', kind: 'smtp', settings: { host: smtp.host, port: String(smtp.port), tls: 'none', user: 'mailer', from: 'noreply@acme.test' }, secrets: {} });
      });
      const r = await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'pat@example.com', '--no-fallback', '--json']);
      expect(r.exitCode, show(r)).toBe(1);
      const sent = parseJson<{ status: string; attempts: Array<{ errorKind: string; error: string }> }>(r);
      expect(sent.status).toBe('failed');
      expect(sent.attempts.map((a) => a.errorKind)).toEqual(['config']);
      expect(sent.attempts[0]?.error).toMatch(/acme\/email\/smtp: secret password is not set/);
      const v = await ws.run(['provider', 'verify', 'acme/email/smtp']);
      expect(v.exitCode, show(v)).toBe(1);
      expect(v.stdout + v.stderr).toMatch(/secret password is not set/);
      expect(smtp.connections).toBe(0);
    } finally {
      await smtp.close();
      ws.cleanup();
    }
  });
});

describe('the store file', () => {
  test('tenant remove, then a checkpoint: no byte of its recipients is left in the file; the audit log is append-only', async () => {
    const ws = makeWorkspace();
    try {
      await inProcess(ws, async (ctx) => {
        await addTenantCore(ctx, 'gone', 'Gone');
        await addTenantCore(ctx, 'stay', 'Stay');
        await addProvider(ctx, { tenantId: null, channel: 'email', kind: 'outbox', settings: { dir: path.join(ws.dir, 'out') }, secrets: {} });
      });
      const rows = Array.from({ length: 40 }, (_, i) => `erased-${String(i).padStart(3, '0')}@forget-me.test,Name${i}`);
      const csv = ws.file('gone.csv', `email,name\n${rows.join('\n')}\n`);
      const tpl = ws.file('t.txt', 'Hello {{name}}\n');
      expectExit(await ws.run(['send', 'batch', '--tenant', 'gone', '--csv', csv, '--template-file', tpl, '--subject', 'S']), 0, 'send batch');
      const marker = Buffer.from('forget-me.test');
      checkpoint(ws.store);
      // Control: the recipients are in the file before the removal, so the search below can find them.
      expect(fs.readFileSync(ws.store).includes(marker)).toBe(true);
      expectExit(await ws.run(['tenant', 'remove', 'gone', '--yes']), 0, 'tenant remove');
      // Right after the removal (it empties the write-ahead log itself), and after a checkpoint.
      for (const { file, bytes } of storeFiles(ws.store)) expect(bytes.includes(marker), `${path.basename(file)} still holds a recipient`).toBe(false);
      checkpoint(ws.store);
      for (const { file, bytes } of storeFiles(ws.store)) expect(bytes.includes(marker), `${path.basename(file)} still holds a recipient`).toBe(false);
      const audit = parseJson<Array<{ action: string; target: string }>>(await ws.run(['audit', 'list', '--json']));
      expect(audit.map((a) => `${a.action} ${a.target}`)).toContain('tenant.remove gone');
      withDb(ws.store, (db) => {
        expect(() => db.exec('DELETE FROM audit_log')).toThrow(/append-only/);
        expect(() => db.exec("UPDATE audit_log SET actor = 'nobody'")).toThrow(/append-only/);
      });
    } finally {
      ws.cleanup();
    }
  });

  test('no silent stores: read commands on a missing store exit 2 and create nothing; not-found errors name the store', async () => {
    const ws = makeWorkspace();
    try {
      const nope = path.join(os.tmpdir(), `sb-nope-${randomBytes(4).toString('hex')}`);
      const r = await ws.run(['tenant', 'list', '--store', path.join(nope, 'x.db')]);
      expect(r.exitCode, show(r)).toBe(2);
      expect(r.stderr).toContain(`no store at ${path.join(nope, 'x.db')}`);
      expect(r.stderr).toMatch(/tenant add.*--store.*SWITCHBOARD_STORE/);
      expect(fs.existsSync(nope)).toBe(false);
      // The README's cron line without SWITCHBOARD_STORE: the default path, named, and not created.
      const cron = await ws.run(['send', 'batch', '--tenant', 'acme-dental', '--csv', ws.file('x.csv', 'email\na@example.com\n'), '--template-file', ws.file('t.txt', 'x'), '--subject', 'S'], {
        env: { SWITCHBOARD_STORE: undefined },
      });
      expect(cron.exitCode, show(cron)).toBe(2);
      const defaultStore = path.join(ws.home, '.local', 'share', 'switchboard', 'switchboard.db');
      expect(cron.stderr).toContain(`no store at ${defaultStore}`);
      expect(fs.existsSync(path.dirname(defaultStore))).toBe(false);
      for (const args of [['doctor'], ['store', 'backup', '--out', path.join(ws.dir, 'b.db')]]) {
        const x = await ws.run(args);
        expect(x.exitCode, `${args.join(' ')}: ${show(x)}`).toBe(2);
      }
      expect(fs.existsSync(ws.store)).toBe(false);
      // A writing command creates it: file 0600 in a new folder 0700.
      const nested = path.join(ws.dir, 'new', 'sb.db');
      expectExit(await ws.run(['tenant', 'add', 'acme', '--name', 'Acme', '--store', nested]), 0, 'tenant add');
      expect(fs.statSync(nested).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(nested)).mode & 0o777).toBe(0o700);
      for (const args of [['tenant', 'show', 'nope'], ['provider', 'show', 'acme/email/nope'], ['batch', 'show', 'b-nope']]) {
        const x = await ws.run([...args, '--store', nested]);
        expect(x.exitCode, show(x)).toBe(2);
        expect(x.stderr).toContain(`in store ${nested}`);
      }
    } finally {
      ws.cleanup();
    }
  });

  test('store backup writes a consistent 0600 copy; it refuses to overwrite without --force; store vacuum compacts', async () => {
    const ws = makeWorkspace();
    try {
      await inProcess(ws, (ctx) => addTenantCore(ctx, 'acme', 'Acme'));
      const out = path.join(ws.dir, 'backups', 'sb-backup.db');
      const r = parseJson<{ storePath: string; file: string; byteCount: number; completedAt: string }>(expectExit(await ws.run(['store', 'backup', '--out', out, '--json']), 0, 'store backup'));
      expect(r).toMatchObject({ storePath: ws.store, file: out });
      expect(r.byteCount).toBe(fs.statSync(out).size);
      expect(fs.statSync(out).mode & 0o777).toBe(0o600);
      expect(fs.readdirSync(path.dirname(out)).filter((f) => f.includes('.tmp-'))).toEqual([]);
      expect(withDb(out, (db) => db.prepare('SELECT id FROM tenants').all())).toEqual([{ id: 'acme' }]);
      const again = await ws.run(['store', 'backup', '--out', out]);
      expect(again.exitCode, show(again)).toBe(2);
      expect(again.stderr).toMatch(/already exists.*--force/);
      expectExit(await ws.run(['store', 'backup', '--out', out, '--force']), 0, 'store backup --force');
      const v = parseJson<{ beforeByteCount: number; afterByteCount: number }>(expectExit(await ws.run(['store', 'vacuum', '--json']), 0, 'store vacuum'));
      expect(v.afterByteCount).toBeGreaterThan(0);
      expect(v.afterByteCount).toBeLessThanOrEqual(v.beforeByteCount);
    } finally {
      ws.cleanup();
    }
  });
});
