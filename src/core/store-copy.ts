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
import { OperationFailed } from '../errors.js';
import { selectKeyVersionRows, selectMetaStoreId } from '../store/repos/keys.js';
import { selectProviderConfigsById } from '../store/repos/providers.js';
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
  const rows = await selectProviderConfigsById(sql);
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
    if ((await selectProviderConfigsById(target)).length === 0) return 0;
    throw new OperationFailed('store copy: the target has provider configs but no master key was checked; nothing was written');
  }
  const current = (await selectKeyVersionRows(target)).find((k) => k.retired_at === null);
  if (current?.fingerprint !== key.fingerprint || current.id !== key.keyId) {
    throw new OperationFailed(`store copy: the target's current key version is not key #${key.keyId} (fingerprint ${key.fingerprint}); nothing was written`);
  }
  const { rows, bad } = await unverifiedConfigs(target, key);
  if (bad[0]) {
    throw new OperationFailed(`store copy: provider ${rowRef(bad[0])} does not verify in the target (its MAC or sealed secrets changed on the way); nothing was written`);
  }
  return rows;
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
  // The key must match the source (requireKey also finishes an interrupted rotation and gives MACs to rows of a
  // store from before them, so every row arrives with one).
  const key = (await selectProviderConfigsById(source.sql)).length > 0 ? await requireKey(ctx) : null;
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
  const storeId = await selectMetaStoreId(source.sql);
  return { source: source.location, target: target.location, storeId, tables: result.tables, totalRows: result.totalRows, verifiedConfigs };
}
