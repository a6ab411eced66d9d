/**
 * Master-key sources (DESIGN §4). Lookup order: `SWITCHBOARD_MASTER_KEY` (base64 of 32 bytes),
 * then `SWITCHBOARD_KEY_FILE` (a file holding the same base64 text), then the OS keychain (see ./keychain.ts;
 * it needs the store's id, so core/vault.ts consults it after {@link findMasterKey} returns null).
 */
import fs from 'node:fs';
import path from 'node:path';
import { KEY_BYTES } from './seal.js';
import { KeyError, UsageError } from '../errors.js';
import { nodeCrypto } from '../lazy-node.js';

/** Where a master key came from. */
export type KeySourceKind = 'env' | 'file' | 'keychain';

/**
 * A master key (32 bytes) and where it was found. `location` is the env var name, the file path, or the
 * keychain account (the store's id).
 */
export interface MasterKey {
  key: Buffer;
  source: KeySourceKind;
  location: string;
}

/** The text printed when no key can be found: the ways to provide one. */
export const HOW_TO_PROVIDE_KEY =
  'provide the master key in one of three ways: (1) SWITCHBOARD_MASTER_KEY=<base64 of 32 bytes>, ' +
  '(2) SWITCHBOARD_KEY_FILE=<path to a file holding it>, or (3) the OS keychain (Secret Service over D-Bus); ' +
  'a new store gets one with `switchboard key init --file <path>`, `switchboard key init --keychain` or `switchboard key init`';

/**
 * Finds the master key in `env`. Returns null when no source is configured.
 * @throws KeyError when a configured source is unreadable or does not hold 32 base64-encoded bytes.
 */
export function findMasterKey(env: NodeJS.ProcessEnv): MasterKey | null {
  const inline = env.SWITCHBOARD_MASTER_KEY;
  if (inline !== undefined && inline !== '') {
    return { key: decodeKey(inline, 'SWITCHBOARD_MASTER_KEY'), source: 'env', location: 'SWITCHBOARD_MASTER_KEY' };
  }
  const file = env.SWITCHBOARD_KEY_FILE;
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      const problem = keyFileModeProblem(file);
      if (problem) throw new KeyError(problem);
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if (err instanceof KeyError) throw err;
      throw new KeyError(`cannot read key file ${file} (SWITCHBOARD_KEY_FILE): ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    return { key: decodeKey(text, `key file ${file}`), source: 'file', location: path.resolve(file) };
  }
  return null;
}

/** Permission bits a key file may have: owner read/write only (0600 or 0400), as ssh requires of private keys. */
const KEY_FILE_FORBIDDEN_BITS = 0o077;

/**
 * Why the key file at `file` may not be used, or null when its mode is private (no group or other bits, e.g.
 * 0600 or 0400). The reason names the mode and the `chmod 600` fix.
 * @throws the fs error (e.g. ENOENT) when the file cannot be examined.
 */
export function keyFileModeProblem(file: string): string | null {
  const mode = fs.statSync(file).mode & 0o777;
  if ((mode & KEY_FILE_FORBIDDEN_BITS) === 0) return null;
  const who = [mode & 0o070 ? 'group' : '', mode & 0o007 ? 'others' : ''].filter(Boolean).join(' and ');
  return `key file ${file} has mode 0${mode.toString(8)}: ${who} can access it, so it is not used (like ssh with an unprotected private key); make it private with: chmod 600 ${file}`;
}

/**
 * Parses base64 key text (surrounding white space ignored).
 * @throws KeyError naming `where` unless it is base64 of exactly 32 bytes.
 */
export function decodeKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== KEY_BYTES || !/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) {
    throw new KeyError(`${where} is not a master key: expected base64 of ${KEY_BYTES} bytes`);
  }
  return key;
}

/** A new random master key (32 bytes from the CSPRNG). */
export function generateKey(): Buffer {
  return nodeCrypto().randomBytes(KEY_BYTES);
}

/** The key's public fingerprint: first 16 hex digits of HMAC-SHA256(key, "switchboard key fingerprint v1"). */
export function fingerprint(key: Buffer): string {
  return nodeCrypto().createHmac('sha256', key).update('switchboard key fingerprint v1').digest('hex').slice(0, 16);
}

/** Base64 text of a key, as written to key files and `export` lines. */
export function encodeKey(key: Buffer): string {
  return key.toString('base64');
}

/**
 * Writes `key` to `file` as base64 text with mode 0600 (the folder is created with mode 0700).
 * @throws UsageError if the file exists and `overwrite` is false.
 */
export function writeKeyFile(file: string, key: Buffer, overwrite: boolean): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  const flags = overwrite ? 'w' : 'wx';
  try {
    fs.writeFileSync(file, encodeKey(key) + '\n', { mode: 0o600, flag: flags });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError(`--file: ${file} already exists; refusing to overwrite a key (use --force)`);
    }
    throw err;
  }
  fs.chmodSync(file, 0o600);
}

/** Where `key rotate` stages the next key of a key file until the store has switched to it: `<file>.next`. */
export function pendingKeyFile(file: string): string {
  return `${file}.next`;
}

/**
 * Writes `key` to `file` atomically: a temporary file in the same folder (mode 0600, flushed to disk) renamed
 * over `file`, so a crash leaves either the old content or the new, never a torn key.
 */
export function writeKeyFileAtomic(file: string, key: Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, encodeKey(key) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  syncDir(path.dirname(file));
}

/** Moves `from` over `to` atomically (same folder) and flushes the folder entry. */
export function promoteKeyFile(from: string, to: string): void {
  fs.renameSync(from, to);
  syncDir(path.dirname(to));
}

function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Some file systems do not allow fsync on a folder; the rename itself is still atomic.
  }
}
