// e2e: unusable input is refused before anything is sent or stored; a missing or wrong master key
// stops a send with exit 5 and leaves the store untouched.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, randomKey, repoRoot, runCli, describe as show, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { addSmtpProvider, addTenant, dumpStore, expectExit } from '../helpers/setup.js';

const GOOD_CSV = 'email,first_name,code\nok1@example.com,Ana,A1\nok2@example.com,Eve,E5\n';
const BAD_CSV = [
  'email,first_name,code', // line 1
  'ok1@example.com,Ana,A1', // line 2
  'not-an-email,Bruno,B2', // line 3: invalid address
  'carla@example.com,,C3', // line 4: empty template variable
  'bob@@example.com,Bob,D4', // line 5: invalid address
  'ok2@example.com,Eve,E5', // line 6
].join('\n') + '\n';
const TEMPLATE = 'Hi {{first_name}}, your code is {{code}}.\n';

describe('bad input and key problems', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;

  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: 'bad-input-pw' } });
    await addTenant(ws, 'acme');
    // Adding a provider with a secret binds the store to ws.key.
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: 'bad-input-pw' });
  });

  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  async function expectNothingSent(): Promise<void> {
    expect(srv.messages).toHaveLength(0);
    const list = parseJson<unknown[]>(expectExit(await ws.run(['batch', 'list', '--json']), 0, 'batch list'));
    expect(list).toEqual([]);
  }

  test('invalid addresses and an empty variable: exit 2, stderr names each line, nothing sent or stored', async () => {
    const csv = ws.file('bad.csv', BAD_CSV);
    const tpl = ws.file('t.txt', TEMPLATE);
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{first_name}}']);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toMatch(/line 3\b/);
    expect(r.stderr).toMatch(/line 4\b/);
    expect(r.stderr).toMatch(/line 5\b/);
    expect(r.stderr).not.toMatch(/line 2\b/);
    expect(r.stderr).not.toMatch(/line 6\b/);
    expect(r.stderr).toContain('first_name');
    expect(r.stdout).not.toMatch(/sent/i);
    await expectNothingSent();
  });

  test('a template that does not render (missing helper): exit 2 before anything is stored, in a dry run too', async () => {
    const csv = ws.file('good.csv', GOOD_CSV);
    const tpl = ws.file('helper.txt', 'Hi {{shout first_name}}\n');
    for (const extra of [[], ['--dry-run']]) {
      const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', ...extra]);
      expect(r.exitCode, show(r)).toBe(2);
      expect(r.stderr).toMatch(/line 2: template does not render: Missing helper: "shout"/);
    }
    await expectNothingSent();
  });

  test('a template variable with no CSV column: exit 2, stderr names the variable', async () => {
    const csv = ws.file('good.csv', GOOD_CSV);
    const tpl = ws.file('coupon.txt', 'Hi {{first_name}}, your coupon is {{coupon}}.\n');
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--json']);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toContain('coupon');
    await expectNothingSent();
  });

  test('no recipient column, no subject: exit 2; the core names the field, the CLI its flag', async () => {
    const csv = ws.file('nomail.csv', 'mail,first_name\nana@example.com,Ana\n');
    const tpl = ws.file('t.txt', TEMPLATE.replace(' your code is {{code}}.', ''));
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi']);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toContain(`switchboard: --csv ${csv} line 1: no recipient column "email" (columns: mail, first_name)`);
    const noSubject = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', ws.file('good.csv', GOOD_CSV), '--template-file', tpl]);
    expect(noSubject.exitCode, show(noSubject)).toBe(2);
    expect(noSubject.stderr).toMatch(/^switchboard: --subject is required for e-mail/m);
    await expectNothingSent();
  });

  test('a subject variable with no CSV column: exit 2, stderr names the variable', async () => {
    const csv = ws.file('good.csv', GOOD_CSV);
    const tpl = ws.file('t.txt', TEMPLATE);
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'For {{surname}}']);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toContain('surname');
    await expectNothingSent();
  });

  test('no master key: send batch exits 5, says how to provide one, writes nothing', async () => {
    const csv = ws.file('good.csv', GOOD_CSV);
    const tpl = ws.file('t.txt', TEMPLATE);
    const before = dumpStore(ws.store);
    const r = await ws.run(
      ['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi'],
      { env: { SWITCHBOARD_MASTER_KEY: undefined } },
    );
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr).toMatch(/SWITCHBOARD_MASTER_KEY|SWITCHBOARD_KEY_FILE|key init/);
    expect(dumpStore(ws.store)).toBe(before);
    await expectNothingSent();
  });

  test('a different master key: send batch exits 5, says the key does not match, writes nothing', async () => {
    const csv = ws.file('good.csv', GOOD_CSV);
    const tpl = ws.file('t.txt', TEMPLATE);
    const before = dumpStore(ws.store);
    const r = await ws.run(
      ['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi'],
      { env: { SWITCHBOARD_MASTER_KEY: randomKey() } },
    );
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr).toMatch(/(does ?n[o']t|not) match|mismatch/i);
    expect(dumpStore(ws.store)).toBe(before);
    await expectNothingSent();

    // The right key still works afterwards: the store was not re-bound to the wrong one.
    const status = await ws.run(['key', 'status', '--json']);
    expectExit(status, 0, 'key status');
    expect(parseJson<{ matches: boolean }>(status).matches).toBe(true);
  });

  test('a libpq key=value connection string as the store is refused in one line, never echoed, and no file is made of it', async () => {
    const secret = 'pw-' + randomKey().slice(0, 12).replace(/[^A-Za-z0-9]/g, 'x');
    const conninfo = `host=127.0.0.1 port=1 user=sb password=${secret} dbname=sb`;
    // runCli runs in the repository root, where a path named after the connection string would be created.
    const asFile = path.join(repoRoot, conninfo);
    const onArgv = await runCli(['--store', conninfo, 'tenant', 'add', 'acme-kv', '--name', 'KV']);
    const fromEnv = await runCli(['tenant', 'add', 'acme-kv', '--name', 'KV'], { env: { SWITCHBOARD_STORE: conninfo } });
    for (const [r, source] of [[onArgv, '--store'], [fromEnv, 'SWITCHBOARD_STORE']] as const) {
      expect(r.exitCode, show(r)).toBe(2);
      expect(r.stderr).toContain(`${source}: a libpq key=value connection string is not supported`);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
    expect(fs.existsSync(asFile)).toBe(false);
  });

  test('a postgres:// store with a password on argv is refused before connecting (never echoed); an unreachable one is one line; no file or folder is made of the URL', async () => {
    // Letters and digits only: a URL must escape `/` and `+` in a password (an unescaped one makes the URL invalid).
    const secret = 'pw-' + randomKey().slice(0, 12).replace(/[^A-Za-z0-9]/g, 'x');
    const onArgv = await runCli(['--store', `postgres://sb:${secret}@127.0.0.1:1/sb`, 'tenant', 'list']);
    expect(onArgv.exitCode, show(onArgv)).toBe(2);
    expect(onArgv.stderr).toMatch(/--store: a password inside the URL on the command line is visible to every user/);
    const fromEnv = await runCli(['tenant', 'add', 'acme-pg', '--name', 'PG'], { env: { SWITCHBOARD_STORE: `postgresql://sb:${secret}@127.0.0.1:1/sb` } });
    expect(fromEnv.exitCode, show(fromEnv)).toBe(1);
    expect(fromEnv.stderr).toContain('store postgresql://sb@127.0.0.1:1/sb cannot be reached (ECONNREFUSED');
    const noPassword = await runCli(['--store', 'postgres://127.0.0.1:1/sb', 'tenant', 'list']);
    expect(noPassword.exitCode, show(noPassword)).toBe(1);
    expect(noPassword.stderr).toContain('store postgres://127.0.0.1:1/sb cannot be reached (ECONNREFUSED');
    for (const r of [onArgv, fromEnv, noPassword]) {
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
    expect(fs.existsSync(path.join(repoRoot, 'postgres:'))).toBe(false);
    expect(fs.existsSync(path.join(repoRoot, 'postgresql:'))).toBe(false);
  });
});
