/**
 * `store copy`: moving a whole store to another engine or host (issue 14, point 4): laptop SQLite file → shared
 * PostgreSQL and back. The rows move with ../store/copy.ts; this adds what makes the copy trustworthy:
 * - the master key is required first when the source holds provider configs (core/vault.ts `requireKey`: the
 *   key must match the source, and a store from before config MACs gets them now, so every row arrives with one);
 * - every provider config of the source must verify with that key (a row changed outside switchboard is refused,
 *   exit 5, as it is before any send);
 * - in the target's transaction, before it commits, every provider config is checked with that key: its MAC
 *   verifies and its sealed secrets open (the MAC and the seal's additional data name tenant, channel, provider
 *   name and key version, never the store, so they hold in any store that keeps those values);
 * - one `store.copy` audit row on the target (in the same transaction) and one on the source after the commit,
 *   both naming the two stores (`<source> -> <target>`, no passwords) and the tables copied, never values.
 *
 * The copy keeps the source's store id (`meta.store_id`): the OS keychain finds the master key under the store id,
 * so a copy with the same id finds the same key (README "store copy").
 */
import type { CoreContext } from './context.js';
import { recordAudit } from './audit.js';
import { requireKey, type ActiveKey } from './vault.js';
import { rowAuthentic, rowRef, secretsBroken, tamperedError, type AuthRow } from './config-auth.js';
import { KeyError, OperationFailed } from '../errors.js';
import { decodeKey, findMasterKey, fingerprint, HOW_TO_PROVIDE_KEY } from '../crypto/keys.js';
import { KEYCHAIN_SERVICE, keychainGet } from '../crypto/keychain.js';
import type { Sql } from '../store/sql.js';
import { copyStore, type CopyCount, type CopyEnd } from '../store/copy.js';

/** What {@link copyWholeStore} did. */
export interface StoreCopySummary {
  /** Where the rows came from and went (no passwords). */
  source: string;
  target: string;
  /** The store id both now carry. */
  storeId: string;
  /** Rows copied per table, in copy order (foreign-key order; `meta` first). */
  tables: CopyCount[];
  /** All rows copied. */
  totalRows: number;
  /** Provider configs whose MAC verified and whose secrets opened in the target. */
  verifiedConfigs: number;
}

/** The provider config rows of a store whose MAC does not verify or whose sealed secrets do not open with `key`. */
async function unverifiedConfigs(sql: Sql, key: ActiveKey): Promise<{ rows: number; bad: AuthRow[] }> {
  const rows = await sql.all<AuthRow>('SELECT * FROM provider_configs ORDER BY id');
  const bad = rows
    .map((r) => ({ ...r, sealed_secrets: r.sealed_secrets === null ? null : Buffer.from(r.sealed_secrets) }))
    .filter((r) => !rowAuthentic(key.key, r) || secretsBroken(key, r));
  return { rows: rows.length, bad };
}

/**
 * Checks every provider config of the target with `key`: the target's current key version is the key's, each
 * row's MAC verifies and its sealed secrets open.
 * @returns how many configs were checked. @throws OperationFailed naming the first config that fails.
 */
async function verifyTargetConfigs(target: Sql, key: ActiveKey | null): Promise<number> {
  if (!key) {
    const n = await target.get<{ n: number }>('SELECT count(*) AS n FROM provider_configs');
    if (Number(n?.n ?? 0) === 0) return 0;
    throw new OperationFailed('store copy: the target has provider configs but no master key was checked; nothing was written');
  }
  const current = await target.get<{ id: number; fingerprint: string }>('SELECT id, fingerprint FROM keys WHERE retired_at IS NULL');
  if (current?.fingerprint !== key.fingerprint || Number(current.id) !== key.keyId) {
    throw new OperationFailed(`store copy: the target's current key version is not key #${key.keyId} (fingerprint ${key.fingerprint}); nothing was written`);
  }
  const { rows, bad } = await unverifiedConfigs(target, key);
  if (bad[0]) {
    throw new OperationFailed(`store copy: provider ${rowRef(bad[0])} does not verify in the target (its MAC or sealed secrets changed on the way); nothing was written`);
  }
  return rows;
}

/**
 * The master key of the source and its version there. A SQLite source goes through `requireKey` (which also
 * finishes an interrupted rotation and gives MACs to rows of a store from before them); a PostgreSQL store
 * (always at a schema with MACs) is matched here on the executor: `SWITCHBOARD_MASTER_KEY`, `SWITCHBOARD_KEY_FILE`
 * or the keychain item of its store id, whose fingerprint must be the store's current key version.
 * @throws KeyError (exit 5) when no key is found or it is not the store's current key.
 */
async function sourceKey(ctx: CoreContext, source: CopyEnd): Promise<ActiveKey> {
  if (source.db) return requireKey(ctx);
  const id = (await source.sql.get<{ value: string }>("SELECT value FROM meta WHERE key = 'store_id'"))?.value ?? '';
  let master = findMasterKey(ctx.env);
  if (!master) {
    const kc = keychainGet(id, ctx.env);
    if (kc.status !== 'ok') {
      const why = kc.status === 'absent' ? `the OS keychain has no key for this store (service ${KEYCHAIN_SERVICE}, account ${id})` : `the OS keychain cannot be used: ${kc.detail}`;
      throw new KeyError(`no master key: SWITCHBOARD_MASTER_KEY and SWITCHBOARD_KEY_FILE are not set, and ${why}; ${HOW_TO_PROVIDE_KEY}`);
    }
    master = { key: decodeKey(kc.value, `the keychain item for store ${id}`), source: 'keychain', location: id };
  }
  const fp = fingerprint(master.key);
  const current = await source.sql.get<{ id: number; fingerprint: string }>('SELECT id, fingerprint FROM keys WHERE retired_at IS NULL');
  if (!current || current.fingerprint !== fp) {
    throw new KeyError(`the master key from ${master.location} (fingerprint ${fp}) is not this store's current key${current ? ` (#${current.id}, fingerprint ${current.fingerprint})` : ''}; nothing was copied`);
  }
  return { ...master, keyId: Number(current.id), fingerprint: fp };
}

/**
 * Copies the store of `ctx` (`source`, the handle `ctx.sql` runs on) into the empty store `target`, checks it
 * and audits it (see the module comment).
 * @throws KeyError (exit 5) when the source has provider configs and no master key that matches it is found, or
 * a provider config of the source does not verify (changed outside switchboard; nothing written).
 * @throws UsageError (exit 2) when the target is not empty (nothing written).
 * @throws OperationFailed when the schemas, counts or a config's MAC do not match in the target (nothing written).
 */
export async function copyWholeStore(ctx: CoreContext, source: CopyEnd, target: CopyEnd): Promise<StoreCopySummary> {
  const configs = await source.sql.get<{ n: number }>('SELECT count(*) AS n FROM provider_configs');
  const key = Number(configs?.n ?? 0) > 0 ? await sourceKey(ctx, source) : null;
  if (key) {
    // A row changed outside switchboard is not carried into another store: the copy would take it as checked.
    const { bad } = await unverifiedConfigs(source.sql, key);
    if (bad[0]) throw tamperedError(key, bad[0]);
  }
  const what = `${source.location} -> ${target.location}`;
  let verifiedConfigs = 0;
  const result = await copyStore(source, target, {
    check: async (dst, copied) => {
      verifiedConfigs = await verifyTargetConfigs(dst, key);
      await recordAudit(ctx, dst, 'store.copy', what, null, copied.tables.map((t) => t.table));
    },
  });
  await recordAudit(ctx, source.sql, 'store.copy', what, null, result.tables.map((t) => t.table));
  const id = await source.sql.get<{ value: string }>("SELECT value FROM meta WHERE key = 'store_id'");
  return { source: source.location, target: target.location, storeId: id?.value ?? '', tables: result.tables, totalRows: result.totalRows, verifiedConfigs };
}
