// e2e: the OS keychain as a key source, against a real gnome-keyring-daemon on a private D-Bus session bus.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { startKeyring, startSilentBus, type TestKeyring } from '../helpers/keyring.js';
import { addSystemOutbox, addTenant, expectExit } from '../helpers/setup.js';

const SECRET = 'Keychain-Test-Secret-4d2e9a';

interface Status {
  source: string | null;
  location: string | null;
  storeId: string;
  fingerprint: string | null;
  keyId: number | null;
  matches: boolean;
  versions: Array<{ id: number; fingerprint: string; retiredAt: string | null; sealedSecretCount: number }>;
}

describe('OS keychain key source', () => {
  let kr: TestKeyring;
  let ws: Workspace;
  // No SWITCHBOARD_MASTER_KEY / KEY_FILE: the keychain is the only source.
  const env = () => ({ SWITCHBOARD_MASTER_KEY: undefined, DBUS_SESSION_BUS_ADDRESS: kr.env.DBUS_SESSION_BUS_ADDRESS });

  beforeAll(async () => {
    kr = await startKeyring();
    ws = makeWorkspace();
  });
  afterAll(async () => {
    ws?.cleanup();
    await kr?.stop();
  });

  test('key init --keychain stores the key; new processes find it; libsecret sees the same item', async () => {
    const init = expectExit(await ws.run(['key', 'init', '--keychain', '--json'], { env: env() }), 0, 'key init --keychain');
    const created = parseJson<{ keyId: number; fingerprint: string; keychainAccount: string; source: string }>(init);
    expect(created.source).toBe('keychain');
    expect(init.stdout + init.stderr).not.toMatch(/SWITCHBOARD_MASTER_KEY=/);

    const status = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env: env() }), 0, 'key status'));
    expect(status).toMatchObject({ source: 'keychain', location: status.storeId, keyId: 1, matches: true, fingerprint: created.fingerprint });
    expect(created.keychainAccount).toBe(status.storeId);

    // A second, independent client (libsecret's secret-tool) reads the item the library wrote.
    const items = kr.secretTool(['search', '--all', 'service', 'switchboard']);
    expect(items.status).toBe(0);
    expect(items.stdout + items.stderr).toContain(status.storeId);

    // Secrets sealed with the keychain key open in later processes.
    await addTenant(ws, 'acme');
    const ca = ws.file('unused-ca.pem', 'x');
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'smtp', '--set', 'host=127.0.0.1', '--set', 'from=a@acme.test', '--set', `ca=${ca}`, '--secret-env', 'password=P'],
        { env: { ...env(), P: SECRET } },
      ),
      0,
      'provider add with a keychain key',
    );
    const doctor = parseJson<{ checks: Array<{ check: string; status: string; detail: string }> }>(await ws.run(['doctor', '--json'], { env: env() }));
    const byName = new Map(doctor.checks.map((c) => [c.check, c]));
    expect(byName.get('key source')?.detail).toMatch(/OS keychain/);
    expect(byName.get('key match')?.status).toBe('pass');
    expect(byName.get('keychain')?.status).toBe('pass');
    expect(byName.get('provider acme/email/smtp secrets')?.status).toBe('pass');
  });

  test('an item written by another Secret Service client (secret-tool) is read as the key', async () => {
    const other = makeWorkspace();
    try {
      // Learn the new store's id without binding a key, then store a key for it with libsecret. (Reading
      // commands do not create a store: a tenant add does.)
      expectExit(await other.run(['tenant', 'add', 'acme', '--name', 'Acme'], { env: env() }), 0, 'tenant add');
      const st = await other.run(['key', 'status', '--json'], { env: env() });
      const id = parseJson<Status>(st).storeId;
      const found = kr.secretTool(['search', '--all', 'service', 'switchboard']);
      const attrs = found.stdout + found.stderr;
      // The library's attributes for an entry: service and username (= the account), as libsecret shows them.
      expect(attrs).toMatch(/attribute\.service = switchboard/);
      expect(kr.secretTool(['store', '--label=switchboard', 'service', 'switchboard', 'username', id], other.key).status).toBe(0);
      const status = parseJson<Status>(expectExit(await other.run(['key', 'status', '--json'], { env: env() }), 0, 'key status after secret-tool store'));
      expect(status.source).toBe('keychain');
      const direct = parseJson<Status>(await other.run(['key', 'status', '--json'], { env: { SWITCHBOARD_MASTER_KEY: other.key } }));
      expect(status.fingerprint).toBe(direct.fingerprint);
    } finally {
      other.cleanup();
    }
  });

  test('key rotate with a keychain key stores the new key in the keychain; the old one is gone', async () => {
    const before = parseJson<Status>(await ws.run(['key', 'status', '--json'], { env: env() }));
    const rot = expectExit(await ws.run(['key', 'rotate', '--json'], { env: env() }), 0, 'key rotate (keychain)');
    const r = parseJson<{ newKeyId: number; fingerprint: string; resealed: number; source: string }>(rot);
    expect(r).toMatchObject({ source: 'keychain', resealedCount: 1 });
    const after = parseJson<Status>(expectExit(await ws.run(['key', 'status', '--json'], { env: env() }), 0, 'key status after rotate'));
    expect(after).toMatchObject({ source: 'keychain', keyId: r.newKeyId, fingerprint: r.fingerprint, matches: true });
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(after.versions.map((v) => [v.id, v.sealedSecretCount, v.retiredAt === null])).toEqual([
      [1, 0, false],
      [2, 1, true],
    ]);
    // No staged item is left behind.
    expect(kr.secretTool(['search', '--all', 'service', 'switchboard']).stdout).not.toContain(`${after.storeId}.next`);
    const doctor = await ws.run(['doctor', '--json'], { env: env() });
    expect(doctor.stdout).not.toContain(SECRET);
    expect(parseJson<{ checks: Array<{ check: string; status: string }> }>(doctor).checks.find((c) => c.check === 'provider acme/email/smtp secrets')?.status).toBe('pass');
  });

  test('no session bus: exit 5 at once, one message naming the three ways to provide a key', async () => {
    const r = await ws.run(['provider', 'list'], { env: { SWITCHBOARD_MASTER_KEY: undefined } });
    expect(r.exitCode, show(r)).toBe(0); // listing needs no key
    const send = await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'email', '--to', 'x@example.com'], { env: { SWITCHBOARD_MASTER_KEY: undefined } });
    expect(send.exitCode, show(send)).toBe(5);
    const lines = send.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/DBUS_SESSION_BUS_ADDRESS is not set/);
    expect(lines[0]).toMatch(/SWITCHBOARD_MASTER_KEY.*SWITCHBOARD_KEY_FILE.*OS keychain/);
  });

  test('a bus that never answers: the keychain call is killed after 3 s; exit 5 with the reason', async () => {
    const silent = await startSilentBus();
    try {
      const r = await ws.run(['key', 'status'], { env: { SWITCHBOARD_MASTER_KEY: undefined, DBUS_SESSION_BUS_ADDRESS: silent.address }, timeoutMs: 20_000 });
      expect(r.exitCode, show(r)).toBe(5);
      expect(r.stderr).toMatch(/did not answer within 3 s/);
      expect(r.stderr).toMatch(/SWITCHBOARD_KEY_FILE/);
    } finally {
      await silent.stop();
    }
  });

  test('a keychain without an item for this store: exit 5 naming the store id', async () => {
    const other = makeWorkspace();
    try {
      await addSystemOutbox(other, path.join(other.dir, 'out'));
      const r = await other.run(['send', 'test', '--tenant', 'none', '--to', 'x@example.com'], { env: env() });
      expect(r.exitCode).toBe(2); // unknown tenant: usage error before the key is needed
      const k = await other.run(['key', 'status'], { env: env() });
      expect(k.exitCode, show(k)).toBe(5);
      expect(k.stderr).toMatch(/OS keychain has no key for this store \(service switchboard, account [0-9a-f-]{36}\)/);
    } finally {
      other.cleanup();
    }
  });
});
