// e2e: key rotation (file and env sources), crash safety (an interrupted rotation, SIGKILL mid-rotation),
// AAD binding and tamper detection through the CLI.
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { afterEach, describe, expect, test } from 'vitest';
import { baseEnv, binPath, makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { expectExit } from '../helpers/setup.js';
import { dumpAnyStore, storeAll, storeRun } from '../helpers/store-sql.js';
import { withCore } from '../helpers/core.js';
import { seedStore } from '../helpers/seed.mjs';
import { unseal } from '../../src/crypto/seal.js';
import { configSecrets, listProviders } from '../../src/core/providers.js';
import { requireKey, rotateKey } from '../../src/core/vault.js';

interface Status {
  source: string;
  keyId: number | null;
  fingerprint: string;
  matches: boolean;
  versions: Array<{ id: number; retiredAt: string | null; sealedSecretCount: number }>;
}

type Row = { id: number; tenant_id: string; channel: string; name: string; key_id: number; sealed_secrets: Buffer };
async function rows(store: string): Promise<Row[]> {
  const all = await storeAll<Row>(store, 'SELECT id, tenant_id, channel, name, key_id, sealed_secrets FROM provider_configs ORDER BY id');
  return all.map((r) => ({ ...r, id: Number(r.id), key_id: Number(r.key_id) }));
}

/** Opens every secret in the store with the key `env` names, in-process; returns ref → password. */
async function openAll(store: string, env: NodeJS.ProcessEnv): Promise<Map<string, string>> {
  return withCore(store, env, async (ctx) => {
    const key = await requireKey(ctx);
    const out = new Map<string, string>();
    for (const p of await listProviders(ctx)) out.set(p.ref, (await configSecrets(ctx, key, p)).password ?? '');
    return out;
  });
}

let ws: Workspace | undefined;
afterEach(() => ws?.cleanup());

function fileWorkspace(): { ws: Workspace; keyFile: string; env: Record<string, string | undefined> } {
  ws = makeWorkspace();
  const keyFile = ws.file('keys/master.key', ws.key + '\n');
  fs.chmodSync(keyFile, 0o600);
  return { ws, keyFile, env: { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: keyFile } };
}

describe('key init with a key named by the environment (SWITCHBOARD_KEY_FILE, SWITCHBOARD_MASTER_KEY)', () => {
  test('binds the store to that key instead of making one the later commands never see; a new key elsewhere is refused', async () => {
    const { ws, keyFile, env } = fileWorkspace();
    // A new key in another file (or the keychain) would be shadowed by SWITCHBOARD_KEY_FILE: refused, nothing made.
    const other = `${ws.dir}/other.key`;
    const refused = await ws.run(['key', 'init', '--file', other], { env });
    expect(refused.exitCode, show(refused)).toBe(2);
    expect(refused.stderr).toMatch(/SWITCHBOARD_KEY_FILE is set.*without --file to bind this store/);
    expect(fs.existsSync(other)).toBe(false);
    const init = parseJson<{ keyId: number; fingerprint: string; source: string; file: string; export: string | null }>(
      expectExit(await ws.run(['key', 'init', '--json'], { env }), 0, 'key init'),
    );
    expect(init).toMatchObject({ keyId: 1, source: 'file', file: keyFile, export: null });
    expect(JSON.stringify(init)).not.toContain(ws.key);
    // The commands after it run with the same key (before, each exited 5: the store had another, printed, key).
    expectExit(await ws.run(['tenant', 'add', 'acme', '--name', 'Acme'], { env }), 0, 'tenant add');
    expectExit(await ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'smtp', '--set', 'host=127.0.0.1', '--set', 'from=a@acme.example', '--secret-env', 'password=SMTP_PASS'], { env: { ...env, SMTP_PASS: 's3cret' } }), 0, 'provider add');
    const status = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env }), 0, 'key status'));
    expect(status).toMatchObject({ source: 'file', keyId: 1, fingerprint: init.fingerprint, matches: true });
    expect((await openAll(ws.store, env)).get('acme/email/smtp')).toBe('s3cret');
    // The same with the key in SWITCHBOARD_MASTER_KEY, on another fresh store.
    const ws2 = makeWorkspace();
    try {
      const keychain = await ws2.run(['key', 'init', '--keychain']);
      expect(keychain.exitCode, show(keychain)).toBe(2);
      expect(keychain.stderr).toMatch(/SWITCHBOARD_MASTER_KEY is set.*before the OS keychain/);
      const byEnv = parseJson<{ keyId: number; source: string; export: string | null }>(expectExit(await ws2.run(['key', 'init', '--json']), 0, 'key init (env)'));
      expect(byEnv).toMatchObject({ keyId: 1, source: 'env', export: null });
      expect(JSON.stringify(byEnv)).not.toContain(ws2.key);
    } finally {
      ws2.cleanup();
    }
    // SWITCHBOARD_KEY_FILE naming a file not made yet: the new key goes there (alone, or with --file naming it too,
    // as the Quick start's demo does), and the commands after it use it.
    for (const withFile of [false, true]) {
      const ws3 = makeWorkspace();
      try {
        const file = `${ws3.dir}/keys/master.key`;
        const env3 = { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: file };
        const made = parseJson<{ keyId: number; source: string; file: string; fingerprint: string }>(
          expectExit(await ws3.run(['key', 'init', ...(withFile ? ['--file', file] : []), '--json'], { env: env3 }), 0, `key init${withFile ? ' --file' : ''} (a file to make)`),
        );
        expect(made).toMatchObject({ keyId: 1, source: 'file', file });
        expect(fs.statSync(file).mode & 0o777).toBe(0o600);
        const st = parseJson<Status>(expectExit(await ws3.run(['key', 'status', '--json'], { env: env3 }), 0, 'key status'));
        expect(st).toMatchObject({ source: 'file', fingerprint: made.fingerprint, matches: true });
      } finally {
        ws3.cleanup();
      }
    }
  });
});

describe('key rotate', () => {
  test('key file: every secret re-sealed with the new key, none opens with the old, versions counted', async () => {
    const { ws, keyFile, env } = fileWorkspace();
    const refs = await seedStore(ws.store, { SWITCHBOARD_KEY_FILE: keyFile }, { tenants: 10, perTenant: 2 });
    const before = (await rows(ws.store));
    const oldKey = Buffer.from(ws.key, 'base64');

    const r = expectExit(await ws.run(['key', 'rotate', '--json'], { env }), 0, 'key rotate');
    const res = parseJson<{ oldKeyId: number; newKeyId: number; resealed: number; source: string; fingerprint: string }>(r);
    expect(res).toMatchObject({ oldKeyId: 1, newKeyId: 2, resealedCount: 20, source: 'file' });

    const newKeyText = fs.readFileSync(keyFile, 'utf8').trim();
    expect(newKeyText).not.toBe(ws.key);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(`${keyFile}.next`)).toBe(false);

    const after = (await rows(ws.store));
    for (const [i, row] of after.entries()) {
      expect(row.key_id).toBe(2);
      expect(row.sealed_secrets.equals(before[i]!.sealed_secrets)).toBe(false);
      const where = { tenant: row.tenant_id, channel: row.channel, name: row.name };
      expect(() => unseal(oldKey, { ...where, keyId: 2 }, row.sealed_secrets)).toThrow('integrity');
      expect(() => unseal(oldKey, { ...where, keyId: 1 }, row.sealed_secrets)).toThrow('integrity');
    }
    const opened = await openAll(ws.store, { SWITCHBOARD_KEY_FILE: keyFile });
    expect([...opened.keys()].sort()).toEqual([...refs].sort());
    for (const ref of refs) expect(opened.get(ref)).toBe(`pw-${ref}`);

    const status = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env }), 0, 'key status'));
    expect(status.versions.map((v) => [v.id, v.retiredAt !== null, v.sealedSecretCount])).toEqual([
      [1, true, 0],
      [2, false, 20],
    ]);
    const human = expectExit(await ws.run(['key', 'status'], { env }), 0, 'key status (table)').stdout;
    expect(human).toMatch(/#2\s.*\s20\s/);

    // The old key is refused with a message naming the key the store needs.
    const old = await ws.run(['send', 'test', '--tenant', 't0001', '--to', 'x@example.com'], { env: { SWITCHBOARD_MASTER_KEY: ws.key } });
    expect(old.exitCode, show(old)).toBe(5);
    expect(old.stderr).toMatch(/key #1, retired .*this store needs key #2 \(fingerprint [0-9a-f]{16}/);

    const audit = parseJson<Array<{ action: string; target: string; fields: string[] }>>(await ws.run(['audit', 'list', '--json'], { env }));
    expect(audit.find((a) => a.action === 'key.rotate')).toMatchObject({ target: 'key#2', fields: expect.arrayContaining(['fingerprint', 'sealed_secrets']) });
    expect(JSON.stringify(audit)).not.toMatch(/pw-t0001|SWITCHBOARD_MASTER_KEY=/);
  });

  test('env key: refused without --print-new-key (nothing changes); with it, the export line is the new key', async () => {
    ws = makeWorkspace();
    await seedStore(ws.store, { SWITCHBOARD_MASTER_KEY: ws.key }, { tenants: 2 });
    const dump = (await dumpAnyStore(ws.store));
    const refused = await ws.run(['key', 'rotate']);
    expect(refused.exitCode, show(refused)).toBe(2);
    expect(refused.stderr).toMatch(/--print-new-key/);
    expect((await dumpAnyStore(ws.store))).toBe(dump);

    const r = expectExit(await ws.run(['key', 'rotate', '--print-new-key']), 0, 'key rotate --print-new-key');
    const m = /^export SWITCHBOARD_MASTER_KEY=([A-Za-z0-9+/]{43}=)$/m.exec(r.stdout);
    expect(m, show(r)).not.toBeNull();
    expect(r.stderr).toMatch(/re-sealed 2 provider config/);
    const status = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env: { SWITCHBOARD_MASTER_KEY: m![1] } }), 0, 'new key'));
    expect(status).toMatchObject({ keyId: 2, matches: true });
    expect((await ws.run(['key', 'status'])).exitCode).toBe(5);
    expect((await openAll(ws.store, { SWITCHBOARD_MASTER_KEY: m![1] })).get('t0002/email/s1')).toBe('pw-t0002/email/s1');
  });

  test('a rotation stopped after its commit (before the new key replaced the old) is finished by the next command', async () => {
    const { ws, keyFile } = fileWorkspace();
    await seedStore(ws.store, { SWITCHBOARD_KEY_FILE: keyFile }, { tenants: 3 });
    await withCore(ws.store, { SWITCHBOARD_KEY_FILE: keyFile }, (ctx) => rotateKey(ctx, { stopAfterCommit: true }));
    // The crash state: the store uses key #2, the key file still holds key #1, key #2 waits in master.key.next.
    expect(fs.readFileSync(keyFile, 'utf8').trim()).toBe(ws.key);
    expect(fs.existsSync(`${keyFile}.next`)).toBe(true);
    const env = { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: keyFile };
    const status = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env }), 0, 'key status after interrupted rotation'));
    expect(status).toMatchObject({ keyId: 2, matches: true, source: 'file' });
    expect(fs.existsSync(`${keyFile}.next`)).toBe(false);
    expect(fs.readFileSync(keyFile, 'utf8').trim()).not.toBe(ws.key);
    expect((await openAll(ws.store, { SWITCHBOARD_KEY_FILE: keyFile })).size).toBe(3);
  });

  test('SIGKILL in the middle of key rotate: the store opens with one of the two keys and every secret decrypts', async () => {
    const { ws, keyFile, env } = fileWorkspace();
    const refs = await seedStore(ws.store, { SWITCHBOARD_KEY_FILE: keyFile }, { tenants: 750, perTenant: 2 });
    const outcomes: string[] = [];
    for (const delayMs of [0, 10, 40, 80, 160, 400]) {
      const keyBefore = fs.readFileSync(keyFile, 'utf8').trim();
      const child = execa(process.execPath, [binPath, 'key', 'rotate'], { env: { ...baseEnv(ws.home), SWITCHBOARD_STORE: ws.store, SWITCHBOARD_KEY_FILE: keyFile }, extendEnv: false, reject: false });
      await new Promise<void>((resolve) => {
        child.stderr!.on('data', (d: Buffer) => {
          if (String(d).includes('re-sealing')) setTimeout(() => { child.kill('SIGKILL'); resolve(); }, delayMs);
        });
        void child.then(() => resolve());
      });
      const done = await child;
      const keyAfterKill = fs.readFileSync(keyFile, 'utf8').trim();
      const staged = fs.existsSync(`${keyFile}.next`);
      outcomes.push(`${delayMs}ms: ${done.signal ?? `exit ${done.exitCode}`}${staged ? ', staged key left' : ''}${keyAfterKill !== keyBefore ? ', key replaced' : ''}`);
      // Whatever the moment of the kill, the next command finds a key that opens the store...
      const status = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env }), 0, `key status after kill at +${delayMs} ms (${outcomes.at(-1)})`));
      expect(status.matches).toBe(true);
      // ...and it is one of the two keys: the old one (rotation rolled back) or the new one.
      const keyNow = fs.readFileSync(keyFile, 'utf8').trim();
      const stagedBefore = staged ? fs.readFileSync(`${keyFile}.next`, 'utf8').trim() : null;
      expect([keyBefore, keyAfterKill, stagedBefore]).toContain(keyNow);
      const opened = await openAll(ws.store, { SWITCHBOARD_KEY_FILE: keyFile });
      expect(opened.size).toBe(refs.length);
      for (const ref of refs) expect(opened.get(ref)).toBe(`pw-${ref}`);
    }
    // At least some kills must have landed before the process finished, or this test proved nothing.
    expect(outcomes.filter((o) => o.includes('SIGKILL')).length, outcomes.join('\n')).toBeGreaterThan(0);
  });
});

describe('key reset (I lost my key)', () => {
  test('refused while the key still opens the store; after a loss it drops secrets, keeps the rest, and secrets can be entered again', async () => {
    const { ws, keyFile, env } = fileWorkspace();
    await seedStore(ws.store, { SWITCHBOARD_KEY_FILE: keyFile }, { tenants: 2 });
    const dump = (await dumpAnyStore(ws.store));
    const refused = await ws.run(['key', 'reset', '--yes', '--file', `${keyFile}.other`], { env });
    expect(refused.exitCode, show(refused)).toBe(2);
    expect(refused.stderr).toMatch(/key rotate/);
    expect((await dumpAnyStore(ws.store))).toBe(dump);
    expect(fs.existsSync(`${keyFile}.other`)).toBe(false);
    // Without --yes too: told at once that nothing is lost, not asked to confirm dropping every secret first.
    const notLost = await ws.run(['key', 'reset', '--file', `${keyFile}.other`], { env });
    expect(notLost.exitCode, show(notLost)).toBe(2);
    expect(notLost.stderr).toMatch(/opens this store.*key rotate/);
    expect(notLost.stderr).not.toMatch(/--yes/);
    const noYes = await ws.run(['key', 'reset'], { env: { SWITCHBOARD_MASTER_KEY: undefined } });
    expect(noYes.exitCode, show(noYes)).toBe(2);
    expect(noYes.stderr).toMatch(/--yes/);

    fs.rmSync(keyFile); // the loss
    const newFile = `${keyFile}.new-after-loss`;
    const r = expectExit(await ws.run(['key', 'reset', '--yes', '--file', newFile, '--json'], { env: { SWITCHBOARD_MASTER_KEY: undefined } }), 0, 'key reset');
    expect(parseJson<{ keyId: number; lostKeyId: number; droppedProviders: string[] }>(r)).toMatchObject({ keyId: 2, lostKeyId: 1, droppedProviders: ['t0001/email/s1', 't0002/email/s1'] });
    const env2 = { SWITCHBOARD_MASTER_KEY: undefined, SWITCHBOARD_KEY_FILE: newFile };
    const list = parseJson<Array<{ id: string; settings: { host: string }; secrets: Record<string, string> }>>(await ws.run(['provider', 'list', '--json'], { env: env2 }));
    expect(list.map((p) => [p.id, p.settings.host, Object.keys(p.secrets).length])).toEqual([
      ['t0001/email/s1', '127.0.0.1', 0],
      ['t0002/email/s1', '127.0.0.1', 0],
    ]);
    expectExit(await ws.run(['provider', 'update', 't0001/email/s1', '--secret-env', 'password=P'], { env: { ...env2, P: 'typed-again' } }), 0, 'provider update after reset');
    expect((await openAll(ws.store, { SWITCHBOARD_KEY_FILE: newFile })).get('t0001/email/s1')).toBe('typed-again');
    const audit = parseJson<Array<{ action: string }>>(await ws.run(['audit', 'list', '--json'], { env: env2 })).map((a) => a.action);
    expect(audit).toEqual(expect.arrayContaining(['key.reset', 'provider.secrets-dropped']));
  });
});

describe('sealed secrets are bound to their row and detect tampering', () => {
  test('a blob copied to another tenant\'s row fails to open: exit 5 naming that provider; doctor fails it', async () => {
    ws = makeWorkspace();
    await seedStore(ws.store, { SWITCHBOARD_MASTER_KEY: ws.key }, { tenants: 2 });
    await storeRun(ws.store, "UPDATE provider_configs SET sealed_secrets = (SELECT sealed_secrets FROM provider_configs WHERE tenant_id = 't0001') WHERE tenant_id = 't0002'");
    const r = await ws.run(['send', 'test', '--tenant', 't0002', '--to', 'x@example.com', '--no-fallback']);
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr).toMatch(/secrets of provider t0002\/email\/s1 failed their integrity check/);
    const doctor = await ws.run(['doctor', '--json']);
    expect(doctor.exitCode, show(doctor)).toBe(1);
    const checks = parseJson<{ checks: Array<{ check: string; status: string; fix: string | null }> }>(doctor).checks;
    expect(checks.find((c) => c.check === 'provider t0002/email/s1 secrets')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/provider update t0002\/email\/s1/) });
    expect(checks.find((c) => c.check === 'provider t0001/email/s1 secrets')?.status).toBe('pass');
    // Rotation refuses a store with a secret that does not open, and changes nothing.
    const dump = (await dumpAnyStore(ws.store));
    const rot = await ws.run(['key', 'rotate', '--print-new-key']);
    expect(rot.exitCode, show(rot)).toBe(5);
    expect(rot.stderr).toMatch(/t0002\/email\/s1/);
    expect((await dumpAnyStore(ws.store))).toBe(dump);
  });

  test('a flipped byte in a sealed secret in the store (the file itself, or the PostgreSQL row): a clear integrity error naming the provider, exit 5', async () => {
    ws = makeWorkspace();
    await seedStore(ws.store, { SWITCHBOARD_MASTER_KEY: ws.key }, { tenants: 1 });
    const row = (await rows(ws.store))[0]!;
    const blob = row.sealed_secrets;
    if (ws.backend === 'sqlite') {
      // Flip the byte in the file itself (after a checkpoint, the page holding the blob is in the main file).
      const db = new Database(ws.store);
      db.pragma('wal_checkpoint(TRUNCATE)');
      db.close();
      const bytes = fs.readFileSync(ws.store);
      const at = bytes.indexOf(blob);
      expect(at).toBeGreaterThan(0);
      bytes[at + blob.length - 3] = bytes[at + blob.length - 3]! ^ 0x40;
      fs.writeFileSync(ws.store, bytes);
    } else {
      const flipped = Buffer.from(blob);
      flipped[flipped.length - 3] = flipped[flipped.length - 3]! ^ 0x40;
      expect(await storeRun(ws.store, 'UPDATE provider_configs SET sealed_secrets = ? WHERE id = ?', flipped, row.id)).toBe(1);
    }
    const r = await ws.run(['send', 'test', '--tenant', 't0001', '--to', 'x@example.com']);
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/secrets of provider t0001\/email\/s1 failed their integrity check .*provider update t0001\/email\/s1/);
    expect(r.stderr).not.toContain('pw-t0001');
  });
});
