import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { seal, unseal, KEY_BYTES } from '../../src/crypto/seal.js';
import { encodeKey, findMasterKey, fingerprint, generateKey, writeKeyFile } from '../../src/crypto/keys.js';
import { KeyError, UsageError } from '../../src/errors.js';

const ctx = { tenant: 'acme', channel: 'email', name: 'smtp', keyId: 1 };

describe('seal / unseal (AES-256-GCM)', () => {
  it('round-trips and uses a fresh IV per seal', () => {
    const key = generateKey();
    const a = seal(key, ctx, { password: 'p4ss' });
    const b = seal(key, ctx, { password: 'p4ss' });
    expect(a.equals(b)).toBe(false);
    expect(a.subarray(1, 13).equals(b.subarray(1, 13))).toBe(false);
    expect(unseal(key, ctx, a)).toEqual({ password: 'p4ss' });
    expect(a.includes(Buffer.from('p4ss'))).toBe(false);
  });

  it('fails with another key', () => {
    const blob = seal(generateKey(), ctx, { password: 'x' });
    expect(() => unseal(generateKey(), ctx, blob)).toThrow('integrity');
  });

  it('binds the blob to its row through the AAD (tenant, channel, name, key id)', () => {
    const key = generateKey();
    const blob = seal(key, ctx, { password: 'x' });
    expect(() => unseal(key, { ...ctx, tenant: 'other' }, blob)).toThrow('integrity');
    expect(() => unseal(key, { ...ctx, tenant: null }, blob)).toThrow('integrity');
    expect(() => unseal(key, { ...ctx, channel: 'sms' }, blob)).toThrow('integrity');
    expect(() => unseal(key, { ...ctx, name: 'backup' }, blob)).toThrow('integrity');
    expect(() => unseal(key, { ...ctx, keyId: 2 }, blob)).toThrow('integrity');
  });

  it('detects a flipped byte anywhere', () => {
    const key = generateKey();
    const blob = seal(key, ctx, { password: 'secret value' });
    for (let i = 1; i < blob.length; i += 7) {
      const t = Buffer.from(blob);
      t[i] = t[i]! ^ 0x01;
      expect(() => unseal(key, ctx, t)).toThrow('integrity');
    }
  });
});

describe('master key sources', () => {
  it('reads SWITCHBOARD_MASTER_KEY before SWITCHBOARD_KEY_FILE', () => {
    const k = generateKey();
    const found = findMasterKey({ SWITCHBOARD_MASTER_KEY: encodeKey(k), SWITCHBOARD_KEY_FILE: '/nonexistent' });
    expect(found?.source).toBe('env');
    expect(found?.key.equals(k)).toBe(true);
  });

  it('reads a key file and writes it 0600, refusing to overwrite', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-key-'));
    const file = path.join(dir, 'sub', 'master.key');
    const k = generateKey();
    writeKeyFile(file, k, false);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(findMasterKey({ SWITCHBOARD_KEY_FILE: file })?.key.equals(k)).toBe(true);
    expect(() => writeKeyFile(file, generateKey(), false)).toThrow(UsageError);
    fs.rmSync(dir, { recursive: true });
  });

  it('rejects malformed keys with KeyError naming the source', () => {
    expect(() => findMasterKey({ SWITCHBOARD_MASTER_KEY: 'c2hvcnQ=' })).toThrow(/SWITCHBOARD_MASTER_KEY.*32 bytes/);
    expect(() => findMasterKey({ SWITCHBOARD_MASTER_KEY: '!'.repeat(44) })).toThrow(KeyError);
    expect(() => findMasterKey({ SWITCHBOARD_KEY_FILE: '/nonexistent/key' })).toThrow(/cannot read key file/);
    expect(findMasterKey({})).toBeNull();
  });

  it('fingerprints are stable, 16 hex digits, and differ per key', () => {
    const k = Buffer.alloc(KEY_BYTES, 7);
    expect(fingerprint(k)).toMatch(/^[0-9a-f]{16}$/);
    expect(fingerprint(k)).toBe(fingerprint(Buffer.alloc(KEY_BYTES, 7)));
    expect(fingerprint(k)).not.toBe(fingerprint(generateKey()));
  });
});
