// Unit tests (issue 11): strict decoding and where it points, the config MAC's canonical form, key derivation,
// the one CSV writer, and the terminal escaping of control characters.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { decodeStrict, decodingStream, encodingName } from '../../src/core/encoding.js';
import { canonicalConfig, configMac, configMacValid, type ConfigMacFields } from '../../src/crypto/config-mac.js';
import { deriveKey, PURPOSE_CONFIG_MAC } from '../../src/crypto/derive.js';
import { csvWriter, openCsv } from '../../src/core/csv.js';
import { escapeControls } from '../../src/cli/output.js';
import { UsageError } from '../../src/errors.js';

const label = { what: '--csv f.csv', flag: '--encoding' };
const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected an error');
};

describe('strict decoding', () => {
  it('names labels by their WHATWG name and refuses unknown ones', () => {
    expect(encodingName(undefined)).toBe('utf-8');
    expect(encodingName('latin1')).toBe('windows-1252');
    expect(encodingName('UTF-16LE')).toBe('utf-16le');
    expect(() => encodingName('klingon', '--template-encoding')).toThrow(/--template-encoding klingon/);
  });

  it('points at the line and column of the first invalid byte (LF, CRLF, lone CR; BOM not counted)', () => {
    const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    expect(errorOf(() => decodeStrict(bytes('a,b\nx,Caf', [0xe9], '\n'), 'utf-8', label))).toMatch(/^--csv f\.csv line 2 column 6: byte 0xE9 is not valid UTF-8/);
    expect(errorOf(() => decodeStrict(bytes([0xef, 0xbb, 0xbf], 'ab', [0xff]), 'utf-8', label))).toMatch(/line 1 column 3: byte 0xFF/);
    expect(errorOf(() => decodeStrict(bytes('a\r\nb\rc\nd€', [0x80]), 'utf-8', label))).toMatch(/line 4 column 3: byte 0x80/);
    // A stray continuation byte, and a sequence cut short by the end of the file.
    expect(errorOf(() => decodeStrict(bytes('ok\n', [0xbf]), 'utf-8', label))).toMatch(/line 2 column 1: byte 0xBF/);
    expect(errorOf(() => decodeStrict(bytes('ok\nxy', [0xe2, 0x82]), 'utf-8', label))).toMatch(/line 2 column 3: byte 0xE2/);
    // UTF-16LE: an unpaired surrogate.
    expect(errorOf(() => decodeStrict(Buffer.concat([Buffer.from('a\nbc', 'utf16le'), Buffer.from([0x00, 0xdc]), Buffer.from('d', 'utf16le')]), 'utf-16le', label))).toMatch(
      /line 2 column 3: byte 0x00 is not valid UTF-16LE/,
    );
    expect(decodeStrict(Buffer.from([0x43, 0x61, 0x66, 0xe9]), 'windows-1252', label)).toBe('Café');
    expect(decodeStrict(Buffer.from('\ufeffZoë', 'utf16le'), 'utf-16le', label)).toBe('Zoë');
  });

  it('streams a large file at constant memory and still points at an error past the first chunks', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-dec-'));
    try {
      const line = 'someone@example.com,Ünïcödé name\n';
      const lines = 5000; // ~170 KB: the error is in the third 64 KB chunk
      const file = path.join(dir, 'big.csv');
      fs.writeFileSync(file, Buffer.concat([Buffer.from('email,name\n' + line.repeat(lines)), Buffer.from('x@example.com,Caf'), Buffer.from([0xe9, 0x0a])]));
      const sink: Buffer[] = [];
      const run = pipeline(fs.createReadStream(file), decodingStream(file, 'utf-8', label), new Writable({ write: (c: Buffer, _e, cb) => (sink.push(c), cb()) }));
      await expect(run).rejects.toThrow(`line ${lines + 2} column 18: byte 0xE9`);
      // A valid file passes through unchanged.
      fs.writeFileSync(file, 'email\n' + line.repeat(lines));
      const out: Buffer[] = [];
      await pipeline(fs.createReadStream(file), decodingStream(file, 'utf-8', label), new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
      expect(Buffer.concat(out).equals(fs.readFileSync(file))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('CSV rows are null-prototype records; the hash of a non-UTF-8 file names its encoding', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-csv-'));
    try {
      const file = path.join(dir, 'p.csv');
      fs.writeFileSync(file, 'email,__proto__,constructor\na@example.com,p,c\n');
      const read = async (encoding?: string) => {
        const csv = await openCsv(file, encoding);
        const rows = [];
        for await (const r of csv.rows) rows.push(r.record);
        return { rows, hash: csv.hash() };
      };
      const utf8 = await read();
      expect(Object.getPrototypeOf(utf8.rows[0])).toBeNull();
      expect(Object.keys(utf8.rows[0]!)).toEqual(['email', '__proto__', 'constructor']);
      expect(utf8.rows[0]!.__proto__).toBe('p');
      const latin = await read('latin1');
      expect(latin.rows).toEqual(utf8.rows);
      expect(latin.hash).not.toBe(utf8.hash);
      expect(latin.hash).toBe((await read('windows-1252')).hash);
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});

describe('provider config MAC', () => {
  const key = Buffer.alloc(32, 9);
  const base: ConfigMacFields = {
    ref: 'acme/email/smtp',
    kind: 'smtp',
    settings: { host: 'smtp.example.com', port: 587, tls: 'starttls' },
    priority: 100,
    enabled: true,
    keyId: 1,
    sealedSecrets: Buffer.from([2, 1, 2, 3]),
    secretNames: ['password'],
  };

  it('is defined on values: key order and name order do not matter', () => {
    const reordered = { ...base, settings: { tls: 'starttls', port: 587, host: 'smtp.example.com' }, secretNames: ['password'] };
    expect(canonicalConfig(reordered).equals(canonicalConfig(base))).toBe(true);
    expect(configMac(key, reordered)).toBe(configMac(key, base));
    expect(configMac(key, base)).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each<[string, Partial<ConfigMacFields>]>([
    ['ref', { ref: 'beta/email/smtp' }],
    ['kind', { kind: 'sendgrid' }],
    ['a setting', { settings: { ...base.settings, host: 'evil.example.com' } }],
    ['a number as text', { settings: { ...base.settings, port: '587' } }],
    ['an added setting', { settings: { ...base.settings, user: 'x' } }],
    ['priority', { priority: 1 }],
    ['enabled', { enabled: false }],
    ['key id', { keyId: 2 }],
    ['sealed secrets', { sealedSecrets: Buffer.from([2, 1, 2, 4]) }],
    ['no secrets', { sealedSecrets: null, keyId: null }],
    ['secret names', { secretNames: [] }],
  ])('changes when %s changes', (_what, change) => {
    expect(configMacValid(key, { ...base, ...change }, configMac(key, base))).toBe(false);
  });

  it('is keyed by a key derived per purpose', () => {
    expect(configMacValid(key, base, configMac(key, base))).toBe(true);
    expect(configMacValid(Buffer.alloc(32, 8), base, configMac(key, base))).toBe(false);
    expect(configMacValid(key, base, null)).toBe(false);
    expect(configMacValid(key, base, 'zz')).toBe(false);
    expect(deriveKey(key, PURPOSE_CONFIG_MAC).equals(deriveKey(key, PURPOSE_CONFIG_MAC))).toBe(true);
    expect(deriveKey(key, PURPOSE_CONFIG_MAC).equals(deriveKey(key, 'unsubscribe-token/v1'))).toBe(false);
    expect(deriveKey(key, PURPOSE_CONFIG_MAC).equals(key)).toBe(false);
    expect(() => deriveKey(key, '')).toThrow();
  });
});

describe('csvWriter', () => {
  const write = async (columns: string[], rows: string[][], raw = false): Promise<string> => {
    let text = '';
    await pipeline(Readable.from(rows), csvWriter(columns, { raw }), new Writable({ write: (c: Buffer, _e, cb) => ((text += c.toString()), cb()) }));
    return text;
  };

  it('neutralises formulas (header too), quotes CR, LF, quotes and commas; --raw keeps values', async () => {
    expect(await write(['=h', 'b'], [['=1+1', 'a\rb'], ['-2', 'x"y,z'], ['ok', '\tt']])).toBe(`'=h,b\n'=1+1,"a\rb"\n'-2,"x""y,z"\nok,'\tt\n`);
    expect(await write(['=h', 'b'], [['=1+1', 'a\rb']], true)).toBe('=h,b\n=1+1,"a\rb"\n');
  });
});

describe('escapeControls', () => {
  it('shows terminal controls as escapes and keeps text, tabs and line breaks', () => {
    expect(escapeControls('a\x1b[31mred\x07\rX\u202eY\tT\nZ é')).toBe('a\\x1b[31mred\\x07\\rX\\u202eY\tT\nZ é');
    expect(escapeControls('\x9b1m\x7f')).toBe('\\x9b1m\\x7f');
  });
});
