// Check-then-write changes that were atomic on SQLite (one writer at a time, BEGIN IMMEDIATE) and must stay so on
// PostgreSQL (READ COMMITTED: two transactions may both pass the check): two operators at once, each on a pool of
// its own, as two processes would be, against the run's private server (test/helpers/postgres.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPgHandle } from '../../src/store/pg.js';
import type { StoreHandle } from '../../src/store/open.js';
import { systemClock, type CoreContext } from '../../src/core/context.js';
import { addTenant } from '../../src/core/tenants.js';
import { bindNewKey, keyVersions } from '../../src/core/vault.js';
import { listAudit } from '../../src/core/audit.js';
import { UsageError } from '../../src/errors.js';
import { createTestDatabase } from '../helpers/postgres.js';

describe('two operators at once on a PostgreSQL store', () => {
  const handles: StoreHandle[] = [];
  let a: CoreContext;
  let b: CoreContext;

  beforeAll(async () => {
    const { url } = await createTestDatabase('races');
    const ctx = async (): Promise<CoreContext> => {
      const h = await openPgHandle(url, 'postgres://postgres@test/races', { create: true });
      handles.push(h);
      return { sql: h.sql, store: h.ops, storePath: h.location, clock: systemClock, env: {}, actor: 'test@host' };
    };
    a = await ctx();
    b = await ctx();
  });
  afterAll(async () => {
    for (const h of handles) await h.close();
  });

  it('adding the same tenant twice: one succeeds, the other gets the usage error (not a constraint violation)', async () => {
    for (let i = 0; i < 5; i++) {
      const id = `dup-${i}`;
      const results = await Promise.allSettled([addTenant(a, id, 'A'), addTenant(b, id, 'B')]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected');
      expect(failed?.reason).toBeInstanceOf(UsageError);
      expect(String(failed?.reason)).toContain(`tenant "${id}" already exists`);
    }
    expect((await listAudit(a)).filter((e) => e.action === 'tenant.add')).toHaveLength(5);
  });

  it('binding a first key twice at once (key init in two processes): one key, the other refused', async () => {
    const results = await Promise.allSettled([bindNewKey(a, 'a'.repeat(64)), bindNewKey(b, 'b'.repeat(64))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')?.reason).toBeInstanceOf(Error);
    const current = (await keyVersions(a)).filter((v) => v.retiredAt === null);
    expect(current).toHaveLength(1);
    expect((await listAudit(a)).filter((e) => e.action === 'key.init')).toHaveLength(1);
  });
});
