// e2e: provider secrets never reach the store file in clear, nor any output; the store is 0600;
// secrets are refused on argv.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bulkSends } from '../helpers/postgres.js';
import { dumpAnyStore } from '../helpers/store-sql.js';
import { makeWorkspace, parseJson, describe as show, type CliResult, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { addSmtpProvider, addSystemOutbox, addTenant, expectExit, storeFiles } from '../helpers/setup.js';

// Distinctive secrets: one accepted by the server, one refused (so it shows up in error paths),
// one given through --secrets-stdin.
const PASS_OK = 'Zq7-Sup3r-Secr3t-Acme-91f4e2';
const PASS_BAD = 'Wr0ng-But-Still-Secret-Beta-7c1a';
const PASS_STDIN = 'Stdin-Piped-Secret-Gamma-3b8d';
const ARGV_SECRET = 'Argv-Secret-Never-Store-55e1';

function forms(secret: string, user: string): string[] {
  return [
    secret,
    Buffer.from(secret).toString('base64'), // AUTH LOGIN
    Buffer.from(`\0${user}\0${secret}`).toString('base64'), // AUTH PLAIN
    Buffer.from(secret).toString('hex'),
  ];
}
const FORBIDDEN = [...forms(PASS_OK, 'mailer'), ...forms(PASS_BAD, 'mailer'), ...forms(PASS_STDIN, 'piper'), ARGV_SECRET];

describe('secrets stay secret', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;
  const outputs: Array<{ what: string; r: CliResult }> = [];

  async function run(what: string, args: string[], opts: Parameters<Workspace['run']>[1] = {}): Promise<CliResult> {
    const r = await ws.run(args, opts);
    outputs.push({ what, r });
    return r;
  }

  function expectNoSecretIn(what: string, text: string): void {
    for (const s of FORBIDDEN) {
      expect(text.includes(s), `${what} contains a secret (${s.slice(0, 6)}…)`).toBe(false);
    }
  }

  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: PASS_OK, piper: PASS_STDIN } });
    await addTenant(ws, 'acme');
    await addTenant(ws, 'beta');
    await addTenant(ws, 'gamma');
    await addSystemOutbox(ws, path.join(ws.dir, 'outbox'));
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: PASS_OK });
    await addSmtpProvider(ws, srv, { tenant: 'beta', user: 'mailer', password: PASS_BAD });
  });

  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  test('--secrets-stdin: the secret is taken from stdin and works', async () => {
    const ca = ws.file('ca-gamma.pem', srv.cert);
    const add = await run('provider add --secrets-stdin', [
      'provider', 'add', '--tenant', 'gamma', '--channel', 'email', '--kind', 'smtp',
      '--set', `host=${srv.host}`, '--set', `port=${srv.port}`, '--set', 'tls=starttls', '--set', 'user=piper',
      '--set', 'from=noreply@gamma.test', '--set', `ca=${ca}`, '--secrets-stdin',
    ], { input: JSON.stringify({ password: PASS_STDIN }) });
    expectExit(add, 0, 'provider add --secrets-stdin');
    const sent = await run('send test gamma', ['send', 'test', '--tenant', 'gamma', '--channel', 'email', '--to', 'g@example.com', '--subject', 'S', '--body', 'B', '--no-fallback', '--json']);
    expectExit(sent, 0, 'send test via stdin-secret provider');
    expect(parseJson<{ provider: string }>(sent).provider).toBe('gamma/email/smtp');
    expect(srv.messages.some((m) => m.user === 'piper')).toBe(true);
  });

  test('a secret on argv is refused (exit 2) and not stored', async () => {
    const r = await run('provider add --set password=', [
      'provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'smtp', '--name', 'leaky',
      '--set', 'host=127.0.0.1', '--set', 'port=2525', '--set', 'user=mailer', '--set', `password=${ARGV_SECRET}`,
    ]);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toMatch(/password/);
    expect(r.stderr).toMatch(/--secret-env|--secrets-stdin|argv|command line|secret/i);
    const list = await run('provider list --json', ['provider', 'list', '--json']);
    expectExit(list, 0, 'provider list');
    expect(list.stdout).not.toContain('acme/email/leaky');
  });

  test('commands that show, use or log providers print no secret', async () => {
    const csv = ws.file('rows.csv', 'email,name\nx1@example.com,X1\nx2@example.com,X2\n');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const cmds: Array<[string, string[]]> = [
      ['provider list', ['provider', 'list']],
      ['provider list --json', ['provider', 'list', '--json']],
      ['provider list --tenant acme', ['provider', 'list', '--tenant', 'acme']],
      ['provider show', ['provider', 'show', 'acme/email/smtp']],
      ['provider show --json', ['provider', 'show', 'acme/email/smtp', '--json']],
      ['provider show beta --json', ['provider', 'show', 'beta/email/smtp', '--json']],
      ['provider show --verbose', ['provider', 'show', 'acme/email/smtp', '--verbose']],
      ['provider route --json', ['provider', 'route', '--tenant', 'acme', '--channel', 'email', '--json']],
      ['tenant show --json', ['tenant', 'show', 'acme', '--json']],
      ['send test', ['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'a@example.com', '--subject', 'S', '--body', 'B']],
      ['send test --json --verbose', ['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'a@example.com', '--subject', 'S', '--body', 'B', '--json', '--verbose']],
      ['send test failing --verbose', ['send', 'test', '--tenant', 'beta', '--channel', 'email', '--to', 'b@example.com', '--subject', 'S', '--body', 'B', '--no-fallback', '--verbose']],
      ['send test failing --json', ['send', 'test', '--tenant', 'beta', '--channel', 'email', '--to', 'b@example.com', '--subject', 'S', '--body', 'B', '--no-fallback', '--json']],
      ['send test fallback --verbose', ['send', 'test', '--tenant', 'beta', '--channel', 'email', '--to', 'b@example.com', '--subject', 'S', '--body', 'B', '--verbose', '--json']],
      ...(bulkSends(ws.backend)
        ? ([
            ['send batch --verbose', ['send', 'batch', '--tenant', 'beta', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{name}}', '--verbose']],
            ['send batch --json', ['send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{name}}', '--json']],
            ['batch list --json', ['batch', 'list', '--json']],
          ] as Array<[string, string[]]>)
        : []),
      ['audit list', ['audit', 'list']],
      ['audit list --json', ['audit', 'list', '--json']],
      ['audit list --json --verbose', ['audit', 'list', '--json', '--verbose']],
      ['key status', ['key', 'status']],
      ['key status --json', ['key', 'status', '--json']],
      ['provider verify acme', ['provider', 'verify', 'acme/email/smtp', '--verbose']],
      ['provider verify beta (wrong password)', ['provider', 'verify', 'beta/email/smtp', '--verbose']],
      ['provider verify beta --json', ['provider', 'verify', 'beta/email/smtp', '--json']],
      ['doctor', ['doctor']],
      ['doctor --json --verbose', ['doctor', '--json', '--verbose']],
      ['audit list after verify --json', ['audit', 'list', '--json']],
    ];
    for (const [what, args] of cmds) await run(what, args);

    const byWhat = new Map(outputs.map((o) => [o.what, o.r]));
    // These must have worked (otherwise the absence of secrets proves nothing).
    const mustWork = ['provider list --json', 'provider show --json', 'send test', 'audit list --json', 'key status --json', ...(bulkSends(ws.backend) ? ['send batch --json', 'send batch --verbose'] : [])];
    for (const what of mustWork) {
      expect(byWhat.get(what)?.exitCode, `${what}\n${show(byWhat.get(what)!)}`).toBe(0);
    }
    expect(byWhat.get('send test failing --verbose')?.exitCode).toBe(1);
    expect(byWhat.get('provider verify acme')?.exitCode).toBe(0);
    expect(byWhat.get('provider verify beta (wrong password)')?.exitCode).toBe(1);
    // doctor ran every check (and fails on beta's failed verification) without printing a secret.
    const doctor = parseJson<{ checks: Array<{ check: string; status: string }> }>(byWhat.get('doctor --json --verbose')!);
    expect(byWhat.get('doctor --json --verbose')?.exitCode).toBe(1);
    expect(doctor.checks.filter((c) => c.check.endsWith(' secrets')).map((c) => c.status)).toEqual(['pass', 'pass', 'pass', 'pass']);
    expect(doctor.checks.find((c) => c.check === 'provider beta/email/smtp verified')?.status).toBe('fail');

    // provider show --json describes the config but masks the password.
    const shown = parseJson<{ id: string; settings: Record<string, unknown>; secrets: Record<string, unknown> }>(byWhat.get('provider show --json')!);
    expect(shown.id).toBe('acme/email/smtp');
    expect(shown.settings).toMatchObject({ host: '127.0.0.1', user: 'mailer', tls: 'starttls' });
    expect(String(shown.settings.port)).toBe(String(srv.port));
    expect(shown.settings).not.toHaveProperty('password');
    expect(Object.keys(shown.secrets)).toEqual(['password']);
    expect(String(shown.secrets.password)).toMatch(/\*{3,}/);
    const human = byWhat.get('provider show')!.stdout;
    expect(human).toContain('password');
    expect(human).toMatch(/\*{3,}/);

    // key status shows a fingerprint, never the key.
    const status = parseJson<{ source: string; fingerprint: string; matches: boolean }>(byWhat.get('key status --json')!);
    expect(status.source).toBe('env');
    expect(status.matches).toBe(true);
    expect(status.fingerprint).toBeTruthy();

    for (const { what, r } of outputs) {
      expectNoSecretIn(`${what} stdout`, r.stdout);
      expectNoSecretIn(`${what} stderr`, r.stderr);
      expect(r.stdout.includes(ws.key) || r.stderr.includes(ws.key), `${what} prints the master key`).toBe(false);
    }
  });

  test('the store holds no secret in clear and is mode 0600', async () => {
    if (ws.backend === 'postgres') {
      // The server's files are the database administrator's: every row, as read through SQL, holds no secret.
      const dump = Buffer.from(await dumpAnyStore(ws.store));
      expect(dump.includes(Buffer.from('noreply@gamma.test'))).toBe(true); // control, as below
      for (const s of [...FORBIDDEN, ws.key]) expect(dump.includes(Buffer.from(s)), `the store contains a secret (${s.slice(0, 6)}…)`).toBe(false);
      return;
    }
    const files = storeFiles(ws.store);
    expect(files.map((f) => path.basename(f.file))).toContain('sb.db');
    // Control: non-secret settings are readable in these bytes, so a clear-text secret would be found too.
    expect(files.some(({ bytes }) => bytes.includes(Buffer.from('noreply@gamma.test')))).toBe(true);
    for (const { file, bytes } of files) {
      for (const s of FORBIDDEN) {
        expect(bytes.includes(Buffer.from(s)), `${path.basename(file)} contains a secret (${s.slice(0, 6)}…)`).toBe(false);
        expect(bytes.includes(Buffer.from(s, 'utf16le')), `${path.basename(file)} contains a UTF-16 secret`).toBe(false);
      }
      expect(bytes.includes(Buffer.from(ws.key)), `${path.basename(file)} contains the master key`).toBe(false);
      expect(bytes.includes(Buffer.from(ws.key, 'base64')), `${path.basename(file)} contains the raw master key`).toBe(false);
    }
    expect(fs.statSync(ws.store).mode & 0o777).toBe(0o600);
  });
});
