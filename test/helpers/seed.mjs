// Fills a store quickly, in-process, through the built core functions (dist/): tenants, and smtp provider
// configs each with a sealed password. Used by tests and benchmarks that need large stores (1,000+ secrets),
// which would take minutes to build one CLI process at a time. Run `npm run build` first.
import { locateStore } from '../../dist/store/db.js';
import { openStoreHandle } from '../../dist/store/open.js';
import { systemClock } from '../../dist/core/context.js';
import { addTenant } from '../../dist/core/tenants.js';
import { addProvider } from '../../dist/core/providers.js';

/**
 * `store`: a SQLite file path or a postgres:// URL (created and migrated when new).
 * Adds `tenants` tenants (t0001, t0002, …) with `perTenant` smtp configs each (s1, s2, …), every one with a
 * password secret `pw-<ref>`, sealed with the key `env` names (SWITCHBOARD_MASTER_KEY or SWITCHBOARD_KEY_FILE).
 * Resolves with the provider refs.
 */
export async function seedStore(store, env, { tenants, perTenant = 1 }) {
  const handle = await openStoreHandle(locateStore(store, 'store'), { create: true });
  const ctx = { sql: handle.sql, store: handle.ops, storePath: handle.location, clock: systemClock, env, actor: 'seed@test' };
  const refs = [];
  try {
    for (let t = 1; t <= tenants; t++) {
      const id = `t${String(t).padStart(4, '0')}`;
      await addTenant(ctx, id, `Tenant ${t}`);
      for (let p = 1; p <= perTenant; p++) {
        const name = `s${p}`;
        const ref = `${id}/email/${name}`;
        await addProvider(ctx, {
          tenantId: id,
          channel: 'email',
          kind: 'smtp',
          name,
          settings: { host: '127.0.0.1', port: '2525', from: `noreply@${id}.test`, user: `u-${id}` },
          secrets: { password: `pw-${ref}` },
        });
        refs.push(ref);
      }
    }
  } finally {
    await handle.close();
  }
  return refs;
}
