/**
 * The credential vault: binds a store to a master key (by fingerprint), and seals/opens provider secrets.
 * DESIGN §4. The key itself is never written to the store.
 */
import type { CoreContext } from './context.js';
import { audit } from './audit.js';
import { KeyError, UsageError } from './errors.js';
import { findMasterKey, fingerprint, HOW_TO_PROVIDE_KEY, type MasterKey } from '../crypto/keys.js';
import { seal, unseal, type SealContext } from '../crypto/seal.js';

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
export function keyVersions(ctx: CoreContext): KeyVersion[] {
  const rows = ctx.db
    .prepare(
      `SELECT k.id, k.fingerprint, k.created_at, k.retired_at,
              (SELECT count(*) FROM provider_configs p WHERE p.key_id = k.id AND p.sealed_secrets IS NOT NULL) AS n
       FROM keys k ORDER BY k.id`,
    )
    .all() as Array<{ id: number; fingerprint: string; created_at: string; retired_at: string | null; n: number }>;
  return rows.map((r) => ({ id: r.id, fingerprint: r.fingerprint, createdAt: r.created_at, retiredAt: r.retired_at, sealedSecrets: r.n }));
}

/**
 * Returns the master key, binding an unbound store to it (recording its fingerprint as key version 1).
 * @throws KeyError (exit 5) if no key is configured, it is malformed, or it does not match the store's current key.
 */
export function requireKey(ctx: CoreContext): ActiveKey {
  const master = findMasterKey(ctx.env);
  if (!master) throw new KeyError(`no master key: ${HOW_TO_PROVIDE_KEY}`);
  const fp = fingerprint(master.key);
  const versions = keyVersions(ctx);
  const current = versions.find((v) => v.retiredAt === null);
  if (!current) {
    const keyId = bindKey(ctx, fp, 'key.bind');
    return { ...master, keyId, fingerprint: fp };
  }
  if (current.fingerprint === fp) return { ...master, keyId: current.id, fingerprint: fp };
  const retired = versions.find((v) => v.fingerprint === fp);
  if (retired) {
    throw new KeyError(
      `the master key from ${describeSource(master)} is key #${retired.id}, retired on ${retired.retiredAt}; this store now uses key #${current.id} (fingerprint ${current.fingerprint})`,
    );
  }
  throw new KeyError(
    `the master key from ${describeSource(master)} (fingerprint ${fp}) does not match this store (key #${current.id}, fingerprint ${current.fingerprint}); nothing was changed`,
  );
}

/** `SWITCHBOARD_MASTER_KEY` or `key file /path`. */
export function describeSource(master: MasterKey): string {
  return master.source === 'env' ? master.location : `key file ${master.location}`;
}

/**
 * Records a new key fingerprint as the store's first key version (for `key init`).
 * @throws UsageError if the store already has a key.
 */
export function bindNewKey(ctx: CoreContext, fp: string): number {
  const current = keyVersions(ctx).find((v) => v.retiredAt === null);
  if (current) {
    throw new UsageError(
      `this store already has key #${current.id} (fingerprint ${current.fingerprint}); a second key would make its secrets unreadable`,
    );
  }
  return bindKey(ctx, fp, 'key.init');
}

function bindKey(ctx: CoreContext, fp: string, action: string): number {
  let id = 0;
  ctx.db.transaction(() => {
    const existing = ctx.db.prepare('SELECT id FROM keys WHERE retired_at IS NULL').get() as { id: number } | undefined;
    if (existing) throw new KeyError('another process bound this store to a key just now; run the command again');
    id = Number(ctx.db.prepare('INSERT INTO keys (fingerprint, created_at) VALUES (?, ?)').run(fp, ctx.clock.now().toISOString()).lastInsertRowid);
    audit(ctx, action, `key#${id}`, null, ['fingerprint']);
  }).immediate();
  return id;
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
      `secrets of provider ${ref} failed their integrity check (altered in the store, or copied from another provider); re-enter them with \`switchboard provider update ${ref}\``,
    );
  }
}
