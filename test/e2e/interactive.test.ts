// e2e: interactive onboarding on a real pseudo-terminal (tmux), and the same commands without a terminal.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { baseEnv, binPath, makeWorkspace, parseJson, repoRoot, describe as show, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { startTty } from '../helpers/tty.js';
import { storeFiles } from '../helpers/setup.js';

const PASS = 'Typed-At-The-Prompt-Secret-8e31';

describe('interactive onboarding on a terminal', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;
  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: PASS } });
  });
  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  test('tenant add asks for the name, then walks through provider add (kind list, masked secret, confirm) and verify', async () => {
    const ca = ws.file('ca.pem', srv.cert);
    const tty = startTty([process.execPath, binPath, 'tenant', 'add', 'acme'], { ...baseEnv(ws.home), ...ws.env }, repoRoot);
    try {
      await tty.waitFor(/Tenant name/);
      tty.type('Acme Dental');
      tty.keys('Enter');
      await tty.waitFor(/Add a provider for acme now\?/);
      tty.keys('Enter');
      await tty.waitFor(/Channel[\s\S]*email/);
      tty.keys('Enter');
      await tty.waitFor(/Provider kind[\s\S]*smtp[\s\S]*outbox/);
      tty.keys('Enter'); // smtp, the first in the list
      await tty.waitFor(/\? Name/);
      tty.keys('Enter'); // default name: smtp
      const answers: Array<[RegExp, string]> = [
        [/\? host/, srv.host],
        [/\? port/, String(srv.port)],
        [/\? user/, 'mailer'],
        [/\? from \(/, 'noreply@acme.test'],
        [/\? fromName/, ''],
        [/\? ca \(/, ca],
      ];
      for (const [prompt, answer] of answers) {
        await tty.waitFor(prompt);
        if (answer) tty.type(answer);
        tty.keys('Enter');
      }
      await tty.waitFor(/\? password/);
      tty.type(PASS);
      await tty.waitFor(/\*{10,}/);
      tty.keys('Enter');
      const confirm = await tty.waitFor(/Add acme\/email\/smtp \(smtp; .*password=\*\*\*\*\)\?/);
      expect(confirm).toContain(`host=${srv.host}`);
      tty.keys('Enter');
      await tty.waitFor(/Verify acme\/email\/smtp now/);
      tty.keys('Enter');
      expect(await tty.exitCode(), tty.screen()).toBe(0);
      const screen = tty.screen();
      expect(screen).toMatch(/Added tenant acme \(Acme Dental\)/);
      expect(screen).toMatch(/Added provider acme\/email\/smtp/);
      expect(screen).toMatch(/ok\s+acme\/email\/smtp/);
      expect(screen).not.toContain(PASS);
    } finally {
      tty.stop();
    }
    // Verified for real (AUTH with the typed password), recorded, shown in provider list, audited without values.
    expect(srv.messages).toHaveLength(0);
    const list = parseJson<Array<{ id: string; lastVerifyResult: string }>>(await ws.run(['provider', 'list', '--json']));
    expect(list.find((p) => p.id === 'acme/email/smtp')?.lastVerifyResult).toMatch(/^ok/);
    expect((await ws.run(['provider', 'list'])).stdout).toMatch(/^acme\/email\/smtp\t.*\tok \d{4}-/m);
    const audit = parseJson<Array<{ action: string; fields: string[] }>>(await ws.run(['audit', 'list', '--json']));
    expect(audit.map((a) => a.action)).toEqual(['tenant.add', 'key.bind', 'provider.add', 'provider.verify']);
    expect(audit[2]!.fields).toContain('secret.password');
    expect(JSON.stringify(audit)).not.toContain(PASS);
    for (const { bytes } of storeFiles(ws.store)) expect(bytes.includes(Buffer.from(PASS))).toBe(false);
  });

  test('provider add with every value given asks nothing but the verify offer', async () => {
    const out = ws.file('outbox/.keep', '');
    const tty = startTty(
      [process.execPath, binPath, 'provider', 'add', '--system', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${fs.realpathSync(out + '/..')}`, '--set', 'from=ops@example.com', '--set', 'fromName=Ops', '--name', 'ops'],
      { ...baseEnv(ws.home), ...ws.env },
      repoRoot,
    );
    try {
      await tty.waitFor(/Add system\/email\/ops \(outbox; dir=.*from=ops@example.com.*fromName=Ops\)\?/);
      tty.keys('Enter');
      await tty.waitFor(/Verify system\/email\/ops now/);
      tty.type('n');
      tty.keys('Enter');
      expect(await tty.exitCode(), tty.screen()).toBe(0);
      expect(tty.screen()).not.toMatch(/\? Name|\? dir/);
    } finally {
      tty.stop();
    }
  });
});

describe('the same commands without a terminal', () => {
  let ws: Workspace;
  beforeAll(() => {
    ws = makeWorkspace();
  });
  afterAll(() => ws?.cleanup());

  test('a missing value is a usage error naming the flag; nothing is prompted', async () => {
    const t = await ws.run(['tenant', 'add', 'acme']);
    expect(t.exitCode, show(t)).toBe(2);
    expect(t.stderr).toMatch(/--name is required/);
    expect((await ws.run(['tenant', 'add', 'acme', '--name', 'Acme'])).exitCode).toBe(0);
    const cases: Array<[string[], RegExp]> = [
      [['provider', 'add', '--channel', 'email', '--kind', 'outbox'], /--tenant <id> and --system/],
      [['provider', 'add', '--tenant', 'acme', '--kind', 'outbox'], /--channel is required/],
      [['provider', 'add', '--tenant', 'acme', '--channel', 'email'], /--kind is required/],
      [['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'outbox'], /--set dir=… is required/],
    ];
    for (const [args, message] of cases) {
      const r = await ws.run(args);
      expect(r.exitCode, show(r)).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });
});
