/**
 * The credential vault: binds a store to a master key (by fingerprint), and seals/opens provider secrets.
 * DESIGN §4. The key itself is never written to the store.
 */
import fs from 'node:fs';
import type { CoreContext } from './context.js';
import { recordAudit } from './audit.js';
import type { Sql } from '../store/sql.js';
import {
  insertKeyVersion,
  lockKeyVersions,
  retireCurrentKeyVersions,
  retireKeyVersion,
  selectCurrentKeyId,
  selectKeyVersionRows,
  selectMetaStoreId,
} from '../store/repos/keys.js';
import {
  countSealedProviderConfigs,
  dropProviderConfigSecrets,
  selectProviderConfigsById,
  updateProviderConfigMac,
  updateProviderConfigSeal,
} from '../store/repos/providers.js';
import { KeyError, UsageError } from '../errors.js';
import {
  decodeKey,
  encodeKey,
  findMasterKey,
  fingerprint,
  generateKey,
  HOW_TO_PROVIDE_KEY,
  pendingKeyFile,
  promoteKeyFile,
  writeKeyFileAtomic,
  type MasterKey,
} from '../crypto/keys.js';
import { KEYCHAIN_SERVICE, keychainDelete, keychainGet, keychainSet, type KeychainResult } from '../crypto/keychain.js';
import { seal, unseal, type SealContext } from '../crypto/seal.js';
import { assertRowAuthentic, ensureConfigMacs, markConfigMacs, rowMac, rowRef, type AuthRow } from './config-auth.js';

/** The master key in use, with its version id in this store. */
export interface ActiveKey extends MasterKey {
  keyId: number;
  fingerprint: string;
}

/** A key version recorded in the store (the key itself is not stored). */
export interface KeyVersion {
  id: number;
  fingerprint: string;
  createdAt: string;
  retiredAt: string | null;
  /** How many provider configs have secrets sealed with this version. */
  sealedSecrets: number;
}

/** Key versions recorded in the store, oldest first. */
export async function keyVersions(ctx: CoreContext): Promise<KeyVersion[]> {
  const rows = await selectKeyVersionRows(ctx.sql);
  return rows.map((r) => ({ id: r.id, fingerprint: r.fingerprint, createdAt: r.created_at, retiredAt: r.retired_at, sealedSecrets: r.n }));
}

/** The store's id (`meta.store_id`): the keychain account its key is kept under. '' when it has none. */
export async function storeAccount(ctx: CoreContext): Promise<string> {
  return selectMetaStoreId(ctx.sql);
}

/** The outcome of looking for a master key: the key, or why none was found (for messages and `doctor`). */
export interface KeyLookup {
  master: MasterKey | null;
  /** Set when the keychain was consulted (no env var or key file): what it answered. */
  keychain?: KeychainResult;
  /** Why no key was found, when `master` is null. */
  reason?: string;
}

/**
 * Looks for the master key: `SWITCHBOARD_MASTER_KEY`, then `SWITCHBOARD_KEY_FILE`, then the OS keychain
 * (service `switchboard`, account = the store's id; one child process, at most 3 s).
 * @throws KeyError when a configured source is unreadable or malformed.
 */
export async function lookupMasterKey(ctx: CoreContext): Promise<KeyLookup> {
  const found = findMasterKey(ctx.env);
  if (found) return { master: found };
  const account = await storeAccount(ctx);
  const kc = keychainGet(account, ctx.env);
  if (kc.status === 'ok') {
    return { master: { key: decodeKey(kc.value, `the keychain item for store ${account}`), source: 'keychain', location: account }, keychain: kc };
  }
  const why =
    kc.status === 'absent'
      ? `the OS keychain has no key for this store (service ${KEYCHAIN_SERVICE}, account ${account})`
      : `the OS keychain cannot be used: ${kc.detail}`;
  return { master: null, keychain: kc, reason: `SWITCHBOARD_MASTER_KEY and SWITCHBOARD_KEY_FILE are not set, and ${why}` };
}

/**
 * Like {@link lookupMasterKey} but a missing key is an error.
 * @throws KeyError (exit 5) listing the three ways to provide a key.
 */
export async function loadMasterKey(ctx: CoreContext): Promise<MasterKey> {
  const found = await lookupMasterKey(ctx);
  if (!found.master) throw noKeyError(found);
  return found.master;
}

/** The exit-5 error for a lookup that found no key: why, and the three ways to provide one. */
export function noKeyError(found: KeyLookup): KeyError {
  return new KeyError(`no master key: ${found.reason}; ${HOW_TO_PROVIDE_KEY}`);
}

/**
 * Returns the master key, binding an unbound store to it (recording its fingerprint as key version 1).
 * If the key found is the one a `key rotate` retired and the rotation's staged key (`<file>.next`, or the
 * keychain item `<store id>.next`) is the store's current key, the interrupted rotation is completed first.
 * The first time a store from before provider config MACs is opened with its key, every config row gets its
 * MAC (core/config-auth.ts `ensureConfigMacs`, audited).
 * @throws KeyError (exit 5) if no key is configured, it is malformed, or it does not match the store's current
 * key; the message names the key version and fingerprint the store needs.
 */
export async function requireKey(ctx: CoreContext): Promise<ActiveKey> {
  const active = await matchKey(ctx);
  await ensureConfigMacs(ctx, active);
  return active;
}

async function matchKey(ctx: CoreContext): Promise<ActiveKey> {
  const master = await loadMasterKey(ctx);
  const fp = fingerprint(master.key);
  const versions = await keyVersions(ctx);
  const current = versions.find((v) => v.retiredAt === null);
  if (!current) {
    const keyId = await bindKey(ctx, fp, 'key.bind');
    return { ...master, keyId, fingerprint: fp };
  }
  if (current.fingerprint === fp) return { ...master, keyId: current.id, fingerprint: fp };
  const staged = stagedKey(ctx, master);
  if (staged && fingerprint(staged) === current.fingerprint) {
    promoteStagedKey(ctx, master, staged);
    return { ...master, key: staged, keyId: current.id, fingerprint: current.fingerprint };
  }
  const needs = `this store needs key #${current.id} (fingerprint ${current.fingerprint}, created ${current.createdAt})`;
  const retired = versions.find((v) => v.fingerprint === fp);
  if (retired) {
    throw new KeyError(
      `the master key from ${describeSource(master)} is key #${retired.id}, retired by \`key rotate\` on ${retired.retiredAt}; ${needs}${master.source === 'env' ? ': set SWITCHBOARD_MASTER_KEY to the key `key rotate --print-new-key` printed' : ''}`,
    );
  }
  throw new KeyError(`the master key from ${describeSource(master)} (fingerprint ${fp}) does not match this store; ${needs}; nothing was changed`);
}

/** `SWITCHBOARD_MASTER_KEY`, `key file /path` or `the OS keychain (service switchboard, account <store id>)`. */
export function describeSource(master: Pick<MasterKey, 'source' | 'location'>): string {
  if (master.source === 'env') return master.location;
  if (master.source === 'file') return `key file ${master.location}`;
  return `the OS keychain (service ${KEYCHAIN_SERVICE}, account ${master.location})`;
}

/**
 * Throws unless `key` is still the store's current key. Call on the handle of the write transaction that seals
 * with it, so a secret is never sealed with a key that a concurrent `key rotate` has just retired. `lock`: `share`
 * for such writes, `update` for the rotation itself (PostgreSQL row locks, see `selectCurrentKeyId`).
 * @throws KeyError (exit 5).
 */
export async function assertCurrentKey(sql: Sql, key: ActiveKey, lock: 'share' | 'update' = 'share'): Promise<void> {
  let id = await selectCurrentKeyId(sql, lock);
  // A locked read that waited for a rotation skips the row it retired; a new read sees the key it bound.
  if (id === undefined) id = await selectCurrentKeyId(sql);
  if (id !== key.keyId) {
    throw new KeyError(`the master key was rotated by another process meanwhile (the store now uses key #${id}); nothing was changed, run the command again with the new key`);
  }
}

/**
 * Records a new key fingerprint as the store's first key version (for `key init`).
 * @throws UsageError if the store already has a key.
 */
export async function bindNewKey(ctx: CoreContext, fp: string): Promise<number> {
  const current = (await keyVersions(ctx)).find((v) => v.retiredAt === null);
  if (current) {
    throw new UsageError(
      `this store already has key #${current.id} (fingerprint ${current.fingerprint}); a second key would make its secrets unreadable`,
    );
  }
  return bindKey(ctx, fp, 'key.init');
}

async function bindKey(ctx: CoreContext, fp: string, action: string): Promise<number> {
  return ctx.sql.tx(async (t) => {
    await lockKeyVersions(t);
    if ((await selectCurrentKeyId(t)) !== undefined) throw new KeyError('another process bound this store to a key just now; run the command again');
    const id = await insertKeyVersion(t, fp, ctx.clock.now().toISOString());
    await recordAudit(ctx, t, action, `key#${id}`, null, ['fingerprint']);
    return id;
  });
}

/** Seals secrets for a provider row with the active key. */
export function sealSecrets(key: ActiveKey, where: Omit<SealContext, 'keyId'>, secrets: Record<string, string>): Buffer {
  return seal(key.key, { ...where, keyId: key.keyId }, secrets);
}

/**
 * Opens a provider row's secrets.
 * @param ref the provider ref, named in the error message.
 * @throws KeyError naming the provider when the blob fails its integrity check (tampered, moved, or wrong key).
 */
export function openSecrets(key: ActiveKey, where: SealContext, blob: Buffer, ref: string): Record<string, string> {
  if (where.keyId !== key.keyId) {
    throw new KeyError(`secrets of provider ${ref} are sealed with key #${where.keyId}, but the key in use is #${key.keyId}`);
  }
  try {
    return unseal(key.key, where, blob);
  } catch {
    throw new KeyError(
      `secrets of provider ${ref} failed their integrity check (altered in the store, or copied from another provider); re-enter them with \`switchboard provider update ${ref} --confirm --secret-env <name>=ENV_VAR\` (or --secrets-stdin)`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// Key rotation (DESIGN §4). Three steps, so that a crash at any point leaves the store readable with one of
// the two keys:
//   1. stage:   the new key is written next to the old one (`<file>.next`, keychain `<store id>.next`), or,
//               for an env key, handed to the caller to print; the store still uses the old key.
//   2. commit:  one IMMEDIATE transaction adds the new key version, re-seals every secret, retires the old one.
//   3. promote: the staged key replaces the old one (atomic rename; keychain overwrite then delete `.next`).
// A crash between 2 and 3 leaves the old key in place and the store on the new one: requireKey finds the
// staged key and finishes step 3. A crash before 2 leaves a stray staged key that the next rotation replaces.
// ---------------------------------------------------------------------------------------------------------

/** The keychain account under which a rotation stages the next key. */
function stagedAccount(account: string): string {
  return `${account}.next`;
}

function keychainOrThrow(r: KeychainResult, what: string): void {
  if (r.status === 'unavailable') throw new KeyError(`cannot ${what} in the OS keychain: ${r.detail}`);
}

/** The key a rotation staged for `master`'s source, if any (none for env keys). */
function stagedKey(ctx: CoreContext, master: MasterKey): Buffer | null {
  try {
    if (master.source === 'file') {
      const file = pendingKeyFile(master.location);
      return fs.existsSync(file) ? decodeKey(fs.readFileSync(file, 'utf8'), `key file ${file}`) : null;
    }
    if (master.source === 'keychain') {
      const r = keychainGet(stagedAccount(master.location), ctx.env);
      return r.status === 'ok' ? decodeKey(r.value, 'the staged keychain item') : null;
    }
  } catch {
    return null;
  }
  return null;
}

/** Step 3: makes the staged key the one the source holds. */
function promoteStagedKey(ctx: CoreContext, master: MasterKey, key: Buffer): void {
  if (master.source === 'file') {
    promoteKeyFile(pendingKeyFile(master.location), master.location);
  } else if (master.source === 'keychain') {
    keychainOrThrow(keychainSet(master.location, encodeKey(key), ctx.env), 'store the new key');
    keychainDelete(stagedAccount(master.location), ctx.env);
  }
}

/** Undoes step 1 after a failed commit. */
function discardStagedKey(ctx: CoreContext, master: MasterKey): void {
  if (master.source === 'file') fs.rmSync(pendingKeyFile(master.location), { force: true });
  else if (master.source === 'keychain') keychainDelete(stagedAccount(master.location), ctx.env);
}

/** What `key rotate` did. */
export interface RotationResult {
  oldKeyId: number;
  newKeyId: number;
  oldFingerprint: string;
  fingerprint: string;
  /** Provider configs whose secrets were re-sealed. */
  resealed: number;
  source: MasterKey['source'];
  location: string;
  /** Where the new key now is, in words. */
  storedIn: string;
  /**
   * Set when the store switched keys but the staged key could not be moved into place (e.g. the keychain stopped
   * answering): the next command that finds the old key finishes the move.
   */
  promoteFailed: string | null;
}

/** Options of {@link rotateKey}. */
export interface RotationOptions {
  /**
   * For an env key: called with the new key's `export SWITCHBOARD_MASTER_KEY=…` line before the store switches
   * to it (so a crash cannot lose it), and its fingerprint. Required when the key comes from the environment.
   */
  publishEnvKey?: (exportLine: string, fingerprint: string) => void;
  /** Called before the re-sealing transaction starts, with the number of configs to re-seal (for progress). */
  onCommitStart?: (configs: number) => void;
  /** Test seam: stop after step 2, as a crash there would (the staged key is left for requireKey to promote). */
  stopAfterCommit?: boolean;
}

/**
 * Rotates the master key: a new key version, every secret re-sealed and every provider config re-MACed in one
 * transaction, the old version retired, and the new key stored where the old one came from (key file or
 * keychain; an env key is published through `opts.publishEnvKey`).
 * @throws UsageError when the key comes from the environment and no `publishEnvKey` is given.
 * @throws KeyError when the key is missing or wrong, a config fails its MAC or a secret its integrity check
 * (nothing changes: a row changed outside switchboard is never re-MACed by a rotation), or the keychain cannot
 * store the new key.
 */
export async function rotateKey(ctx: CoreContext, opts: RotationOptions = {}): Promise<RotationResult> {
  const active = await requireKey(ctx);
  if (active.source === 'env' && !opts.publishEnvKey) {
    throw new UsageError(
      'the master key comes from SWITCHBOARD_MASTER_KEY, which switchboard cannot update: run `switchboard key rotate --print-new-key` and put the printed export line where SWITCHBOARD_MASTER_KEY is set (e.g. your CI secret)',
    );
  }
  const newKey = generateKey();
  const fp = fingerprint(newKey);
  // 1. stage
  if (active.source === 'file') writeKeyFileAtomic(pendingKeyFile(active.location), newKey);
  else if (active.source === 'keychain') keychainOrThrow(keychainSet(stagedAccount(active.location), encodeKey(newKey), ctx.env), 'stage the new key');
  else opts.publishEnvKey!(`export SWITCHBOARD_MASTER_KEY=${encodeKey(newKey)}`, fp);
  // 2. commit
  let newKeyId = 0;
  let resealed = 0;
  try {
    opts.onCommitStart?.(await countSealedProviderConfigs(ctx.sql));
    await ctx.sql.tx(async (t) => {
      resealed = 0; // counted per attempt: PostgreSQL may run the transaction again (deadlock)
      await assertCurrentKey(t, active, 'update');
      const now = ctx.clock.now().toISOString();
      newKeyId = await insertKeyVersion(t, fp, now);
      const next: ActiveKey = { ...active, key: newKey, keyId: newKeyId, fingerprint: fp };
      for (const r of await selectProviderConfigsById(t)) {
        assertRowAuthentic(active, r);
        let moved: AuthRow = r;
        if (r.sealed_secrets !== null && r.key_id !== null) {
          const where = { tenant: r.tenant_id, channel: r.channel, name: r.name };
          const secrets = openSecrets(active, { ...where, keyId: r.key_id }, r.sealed_secrets, rowRef(r));
          moved = { ...r, sealed_secrets: sealSecrets(next, where, secrets), key_id: newKeyId };
          resealed++;
        }
        await updateProviderConfigSeal(t, r.id, moved.sealed_secrets, moved.key_id, rowMac(newKey, moved));
      }
      await retireKeyVersion(t, active.keyId, now);
      await recordAudit(ctx, t, 'key.rotate', `key#${newKeyId}`, null, ['fingerprint', 'key_id', 'mac', 'retired_at', 'sealed_secrets']);
    });
  } catch (err) {
    discardStagedKey(ctx, active);
    throw err;
  }
  // 3. promote
  let promoteFailed: string | null = null;
  if (!opts.stopAfterCommit) {
    try {
      promoteStagedKey(ctx, active, newKey);
    } catch (err) {
      promoteFailed = (err as Error).message;
    }
  }
  return {
    promoteFailed,
    oldKeyId: active.keyId,
    newKeyId,
    oldFingerprint: active.fingerprint,
    fingerprint: fp,
    resealed,
    source: active.source,
    location: active.location,
    storedIn: active.source === 'env' ? 'the printed export line (SWITCHBOARD_MASTER_KEY)' : describeSource(active),
  };
}

/** What {@link resetLostKey} did. */
export interface KeyResetResult {
  lostKeyId: number | null;
  newKeyId: number;
  /** Refs of the provider configs whose secrets were dropped and must be entered again. */
  dropped: string[];
}

/**
 * Refuses a `key reset` while a key source still gives the store's current key (nothing is lost then).
 * A malformed or unreadable key counts as lost. Run it before asking for confirmation.
 * @throws UsageError naming the source and `key rotate`.
 */
export async function assertKeyLost(ctx: CoreContext): Promise<void> {
  let found: MasterKey | null = null;
  try {
    found = (await lookupMasterKey(ctx)).master;
  } catch {
    // A malformed or unreadable key is as good as lost here.
  }
  const current = (await keyVersions(ctx)).find((v) => v.retiredAt === null);
  if (found && current && fingerprint(found.key) === current.fingerprint) {
    throw new UsageError(`the key from ${describeSource(found)} opens this store (key #${current.id}); nothing is lost: use \`switchboard key rotate\` to replace it`);
  }
}

/**
 * For a lost master key ("I lost my key"): drops every sealed secret (nothing can open them without the key),
 * retires the lost key version, records `newKey` (its fingerprint) as the store's new key and re-MACs every
 * provider config with it, in one transaction. Tenants, settings, routes, batches and logs are kept. The caller
 * stores the new key (like `key init`). The old MACs cannot be checked without the lost key: the settings as they
 * are now are taken as they stand (each dropped config is audited; check them with `provider list`).
 * @throws UsageError if the key the environment provides still matches the store (use `key rotate` instead).
 */
export async function resetLostKey(ctx: CoreContext, newKey: Buffer): Promise<KeyResetResult> {
  const newFingerprint = fingerprint(newKey);
  await assertKeyLost(ctx);
  const current = (await keyVersions(ctx)).find((v) => v.retiredAt === null);
  const dropped: string[] = [];
  const newKeyId = await ctx.sql.tx(async (t) => {
    dropped.length = 0; // listed per attempt: PostgreSQL may run the transaction again (deadlock)
    const now = ctx.clock.now().toISOString();
    for (const r of await selectProviderConfigsById(t)) {
      const ref = rowRef(r);
      if (r.sealed_secrets !== null) {
        await dropProviderConfigSecrets(t, r.id, now);
        dropped.push(ref);
        await recordAudit(ctx, t, 'provider.secrets-dropped', ref, r.tenant_id, ['sealed_secrets', 'key_id', 'mac']);
      }
      await updateProviderConfigMac(t, r.id, rowMac(newKey, r.sealed_secrets === null ? r : { ...r, sealed_secrets: null, key_id: null, secret_hints: '{}' }));
    }
    await markConfigMacs(t);
    await retireCurrentKeyVersions(t, now);
    const id = await insertKeyVersion(t, newFingerprint, now);
    await recordAudit(ctx, t, 'key.reset', `key#${id}`, null, ['fingerprint', 'mac', 'retired_at']);
    return id;
  });
  return { lostKeyId: current?.id ?? null, newKeyId, dropped };
}
