// Check-then-write changes that were atomic on SQLite (one writer at a time, BEGIN IMMEDIATE) and must stay so on
// PostgreSQL (READ COMMITTED: two transactions may both pass the check): two operators at once, each on a pool of
// its own, as two processes would be, against the run's private server (test/helpers/postgres.ts); transactions
// PostgreSQL runs again after a deadlock count once; and SQL that answers as it does on SQLite.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPgHandle } from '../../src/store/pg.js';
import type { StoreHandle } from '../../src/store/open.js';
import { systemClock, type CoreContext } from '../../src/core/context.js';
import { addTenant } from '../../src/core/tenants.js';
import { bindNewKey, keyVersions, requireKey, rotateKey } from '../../src/core/vault.js';
import { addProvider, removeProvider } from '../../src/core/providers.js';
import { removeDomain } from '../../src/core/domains.js';
import { insertDomain } from '../../src/store/repos/domains.js';
import { addTemplate, getTemplate } from '../../src/core/template-store.js';
import { addSuppression, importSuppressions, listSuppressions } from '../../src/core/suppressions.js';
import { ingestEvents, type EventSource } from '../../src/core/events.js';
import type { ProviderEvent } from '../../src/providers/webhooks/types.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeKey, generateKey } from '../../src/crypto/keys.js';
import { listAudit } from '../../src/core/audit.js';
import { KeyError, NotFoundError, UsageError } from '../../src/errors.js';
import { createTestDatabase } from '../helpers/postgres.js';

const handles: StoreHandle[] = [];
afterAll(async () => {
  for (const h of handles) await h.close();
});

/** Two core contexts (two pools, as two processes) on a new database. */
async function twoOperators(name: string): Promise<[CoreContext, CoreContext]> {
  const { url } = await createTestDatabase(name);
  const ctx = async (): Promise<CoreContext> => {
    const h = await openPgHandle(url, `postgres://postgres@test/${name}`, { create: true });
    handles.push(h);
    return { sql: h.sql, store: h.ops, storePath: h.location, clock: systemClock, env: {}, actor: 'test@host' };
  };
  return [await ctx(), await ctx()];
}

describe('two operators at once on a PostgreSQL store', () => {
  let a: CoreContext;
  let b: CoreContext;
  beforeAll(async () => {
    [a, b] = await twoOperators('races');
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

  it('adding the same provider ref twice: one succeeds, the other gets the usage error', async () => {
    const [a, b] = await twoOperators('provider_race');
    a.env = b.env = { SWITCHBOARD_MASTER_KEY: encodeKey(generateKey()) };
    await requireKey(a);
    await addTenant(a, 'prov', 'Prov');
    for (let i = 0; i < 5; i++) {
      const input = { tenantId: 'prov', channel: 'email' as const, kind: 'smtp', name: `dup-${i}`, settings: { host: '127.0.0.1', from: 'a@prov.test' }, secrets: { password: 'pw' } };
      const results = await Promise.allSettled([addProvider(a, input), addProvider(b, input)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected');
      expect(failed?.reason).toBeInstanceOf(UsageError);
      expect(String(failed?.reason)).toContain(`provider prov/email/dup-${i} already exists`);
    }
  });

  it('removing the same provider twice at once: one removes it, the other is told it is gone; one audit row', async () => {
    const [a, b] = await twoOperators('provider_remove_race');
    a.env = b.env = { SWITCHBOARD_MASTER_KEY: encodeKey(generateKey()) };
    await requireKey(a);
    await addTenant(a, 'rm', 'Rm');
    for (let i = 0; i < 5; i++) {
      await addProvider(a, { tenantId: 'rm', channel: 'email', kind: 'smtp', name: `gone-${i}`, settings: { host: '127.0.0.1', from: 'a@rm.test' }, secrets: { password: 'pw' } });
      const results = await Promise.allSettled([removeProvider(a, `rm/email/gone-${i}`), removeProvider(b, `rm/email/gone-${i}`)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected');
      expect(failed?.reason).toBeInstanceOf(NotFoundError);
      expect(String(failed?.reason)).toContain(`no provider rm/email/gone-${i}`);
      expect((await listAudit(a)).filter((e) => e.action === 'provider.remove' && e.target === `rm/email/gone-${i}`)).toHaveLength(1);
    }
  });

  it('removing the same domain twice at once (--local-only): one removes it, the other is told it is gone; one audit row', async () => {
    await addTenant(a, 'dom', 'Dom');
    for (let i = 0; i < 5; i++) {
      const name = `d${i}.dom.test`;
      await insertDomain(a.sql, { tenantId: 'dom', domain: name, providerId: null, providerKind: 'sendgrid', externalId: null, records: '[]', at: new Date().toISOString() });
      const results = await Promise.allSettled([removeDomain(a, name, 'dom', true), removeDomain(b, name, 'dom', true)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(results.find((r) => r.status === 'rejected')?.reason).toBeInstanceOf(NotFoundError);
      expect((await listAudit(a)).filter((e) => e.action === 'domain.remove' && e.target === name)).toHaveLength(1);
    }
  });

  it('adding the same template twice (no --replace): one is stored, the other refused, not silently overwritten', async () => {
    await addTenant(a, 'tpl', 'Tpl');
    for (let i = 0; i < 5; i++) {
      const name = `dup-${i}`;
      const results = await Promise.allSettled([addTemplate(a, { tenantId: 'tpl', name, text: 'from a' }), addTemplate(b, { tenantId: 'tpl', name, text: 'from b' })]);
      const won = results.findIndex((r) => r.status === 'fulfilled');
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected');
      expect(failed?.reason).toBeInstanceOf(UsageError);
      expect(String(failed?.reason)).toContain(`template ${name} exists for tenant tpl`);
      expect((await getTemplate(a, 'tpl', name)).text).toBe(won === 0 ? 'from a' : 'from b');
    }
  });

  it('suppressing the same address twice at once: one add and one update, each audited once', async () => {
    await addTenant(a, 'sup', 'Sup');
    for (let i = 0; i < 5; i++) {
      const address = `dup-${i}@sup.test`;
      const results = await Promise.all([
        addSuppression(a, { tenantId: 'sup', channel: 'email', address, reason: 'from a', source: 'manual' }),
        addSuppression(b, { tenantId: 'sup', channel: 'email', address, reason: 'from b', source: 'manual' }),
      ]);
      expect(results.filter((added) => added)).toHaveLength(1);
      const audit = (await listAudit(a, { tenantId: 'sup' })).filter((e) => e.target === `sup/email/${address}`).map((e) => e.action);
      expect(audit.sort()).toEqual(['suppression.add', 'suppression.update']);
    }
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

describe('a key rotation while another process adds a provider (PostgreSQL)', () => {
  it('never leaves a config sealed under the retired key: the add waits for the rotation or is refused', async () => {
    const [a, b] = await twoOperators('rotation_race');
    let key = encodeKey(generateKey());
    a.env = { SWITCHBOARD_MASTER_KEY: key };
    b.env = { SWITCHBOARD_MASTER_KEY: key };
    await requireKey(a);
    await addTenant(a, 'acme', 'Acme');
    for (let i = 0; i < 8; i++) {
      const results = await Promise.allSettled([
        rotateKey(a, { publishEnvKey: (line) => (key = line.slice(line.indexOf('=') + 1)) }),
        addProvider(b, { tenantId: 'acme', channel: 'email', kind: 'smtp', name: `p${i}`, settings: { host: '127.0.0.1', from: 'a@acme.test' }, secrets: { password: `pw-${i}` } }),
      ]);
      expect(results[0].status, String((results[0] as PromiseRejectedResult).reason)).toBe('fulfilled');
      if (results[1].status === 'rejected') expect(results[1].reason).toBeInstanceOf(KeyError);
      a.env = { SWITCHBOARD_MASTER_KEY: key };
      b.env = { SWITCHBOARD_MASTER_KEY: key };
      const current = (await keyVersions(a)).filter((v) => v.retiredAt === null).map((v) => v.id);
      const sealed = await a.sql.all<{ name: string; key_id: number }>('SELECT name, key_id FROM provider_configs WHERE sealed_secrets IS NOT NULL ORDER BY id');
      expect(sealed.filter((r) => !current.includes(Number(r.key_id))), `round ${i}`).toEqual([]);
    }
  });
});

describe('two imports of the same rows at once, in opposite orders (PostgreSQL): no deadlock, each row counted once', () => {
  it('two suppression imports of the same addresses in opposite orders: each reports every row once', async () => {
    const [a, b] = await twoOperators('import_race');
    await addTenant(a, 'acme', 'Acme');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-races-'));
    const addresses = Array.from({ length: 150 }, (_, i) => `r${i}@example.com`);
    const up = path.join(dir, 'up.csv');
    const down = path.join(dir, 'down.csv');
    fs.writeFileSync(up, `email\n${addresses.join('\n')}\n`);
    fs.writeFileSync(down, `email\n${[...addresses].reverse().join('\n')}\n`);
    try {
      const results = await Promise.all([
        importSuppressions(a, { tenantId: 'acme', channel: 'email', csvPath: up, reason: 'bounced' }),
        importSuppressions(b, { tenantId: 'acme', channel: 'email', csvPath: down, reason: 'bounced' }),
      ]);
      for (const r of results) expect(r.added + r.updated, JSON.stringify(results)).toBe(addresses.length);
      expect(results.reduce((n, r) => n + r.added, 0)).toBe(addresses.length);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('events of one request ingested twice at once, in opposite orders (PostgreSQL)', () => {
  it('each event is stored once and every result counts each event once', async () => {
    const [a, b] = await twoOperators('ingest_race');
    await addTenant(a, 'acme', 'Acme');
    const source: EventSource = { ref: 'acme/email/sg', kind: 'sendgrid', tenantId: 'acme', channel: 'email', settings: {} };
    const events: ProviderEvent[] = Array.from({ length: 100 }, (_, i) => ({
      key: `race:${i}`, type: 'delivered', providerType: 'delivered', occurredAt: new Date(), recipient: `r${i}@example.com`, messageId: `M${i}`, correlation: {}, detail: null, payload: {},
    }));
    const results = await Promise.all([ingestEvents(a, source, events), ingestEvents(b, source, [...events].reverse())]);
    for (const r of results) expect(r.stored + r.duplicates, JSON.stringify(results)).toBe(events.length);
    expect(results[0].stored + results[1].stored).toBe(events.length);
  });
});

describe('the same answers as on SQLite (PostgreSQL)', () => {
  it('an opt-in lifts an opt-out whose reason an operator wrote with capitals, as on SQLite (LIKE ignores case there)', async () => {
    const [a] = await twoOperators('optin_case');
    await addTenant(a, 'acme', 'Acme');
    await addSuppression(a, { tenantId: 'acme', channel: 'email', address: 'o@example.com', reason: 'Opt-out by phone', source: 'manual' });
    const source: EventSource = { ref: 'acme/email/sg', kind: 'sendgrid', tenantId: 'acme', channel: 'email', settings: {} };
    const optIn: ProviderEvent = {
      key: 'optin:1', type: 'opted-in', providerType: 'opted-in', occurredAt: new Date(), recipient: 'o@example.com', messageId: null, correlation: {}, detail: null, payload: {}, action: { kind: 'opt-in', reason: 'START' },
    };
    expect((await ingestEvents(a, source, [optIn])).lifted).toBe(1);
    expect(await listSuppressions(a, 'acme', 'email')).toEqual([]);
  });
});
