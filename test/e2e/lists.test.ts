// e2e on either store (it runs on SQLite and again on PostgreSQL, see test/vitest.config.ts): suppressions,
// stored templates and the audit log through the CLI — normalization, per-tenant scoping, order, filters, refusals —
// and a provider config changed behind switchboard's back (SQL on the store) refused before anything is sent.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit, outboxWorkspace, readOutbox } from '../helpers/setup.js';
import { storeRun } from '../helpers/store-sql.js';

describe('suppressions, templates and the audit log', () => {
  let ws: Workspace;
  let out: string;
  beforeAll(async () => {
    ({ ws, out } = await outboxWorkspace(['acme', 'beta']));
  });
  afterAll(() => ws?.cleanup());

  test('suppress add, import, list (by address, per tenant and channel), remove', async () => {
    expectExit(await ws.run(['suppress', 'add', 'Zed@Example.com', '--tenant', 'acme', '--reason', 'asked by phone']), 0, 'suppress add');
    expectExit(await ws.run(['suppress', 'add', '+1 415 555 2671', '--tenant', 'acme', '--channel', 'sms', '--reason', 'STOP', '--source', 'reply']), 0, 'suppress add sms');
    const csv = ws.file('unsub.csv', 'address,reason\nb_x@example.com,hard bounce\nb-x@example.com,\nB@example.com,\nzed@example.com,again\n');
    const imp = parseJson<{ rowCount: number; addedCount: number }>(expectExit(await ws.run(['suppress', 'import', '--tenant', 'acme', '--csv', csv, '--column', 'address', '--json']), 0, 'import'));
    expect(imp).toMatchObject({ rowCount: 4, addedCount: 3 }); // zed@ was there already
    const listed = parseJson<Array<{ channel: string; address: string; reason: string; source: string }>>(
      expectExit(await ws.run(['suppress', 'list', '--tenant', 'acme', '--json']), 0, 'suppress list'),
    );
    // By channel, then address in byte order ('-' < '@' < '_'); an import over an existing row updates its reason.
    expect(listed.map((s) => [s.channel, s.address, s.reason, s.source])).toEqual([
      ['email', 'b-x@example.com', 'imported', 'import'],
      ['email', 'b@example.com', 'imported', 'import'],
      ['email', 'b_x@example.com', 'hard bounce', 'import'],
      ['email', 'zed@example.com', 'again', 'import'],
      ['sms', '+14155552671', 'STOP', 'reply'],
    ]);
    expect(parseJson<unknown[]>(await ws.run(['suppress', 'list', '--tenant', 'beta', '--json']))).toEqual([]);
    expect(parseJson<unknown[]>(await ws.run(['suppress', 'list', '--tenant', 'acme', '--channel', 'sms', '--json']))).toHaveLength(1);
    expectExit(await ws.run(['suppress', 'remove', 'ZED@example.com', '--tenant', 'acme', '--yes']), 0, 'remove');
    const again = await ws.run(['suppress', 'remove', 'zed@example.com', '--tenant', 'acme', '--yes']);
    expect(again.exitCode, show(again)).toBe(2);
    expect(parseJson<unknown[]>(await ws.run(['suppress', 'list', '--tenant', 'acme', '--json']))).toHaveLength(4);
  });

  test('template add, list, show, replace, remove', async () => {
    const text = ws.file('rem.txt', 'Dear {{name}}, see you at {{time}}.\n');
    expectExit(await ws.run(['template', 'add', 'reminder', '--tenant', 'acme', '--subject', 'Reminder for {{name}}', '--text-file', text]), 0, 'template add');
    expectExit(await ws.run(['template', 'add', 'alpha', '--tenant', 'acme', '--subject', 'A', '--text-file', text]), 0, 'template add alpha');
    expect((await ws.run(['template', 'add', 'reminder', '--tenant', 'acme', '--text-file', text])).exitCode).toBe(2);
    const listed = parseJson<Array<{ name: string; required: string[] }>>(await ws.run(['template', 'list', '--tenant', 'acme', '--json']));
    expect(listed.map((t) => [t.name, t.required])).toEqual([['alpha', ['name', 'time']], ['reminder', ['name', 'time']]]);
    expect(parseJson<unknown[]>(await ws.run(['template', 'list', '--tenant', 'beta', '--json']))).toEqual([]);
    expectExit(await ws.run(['template', 'add', 'reminder', '--tenant', 'acme', '--subject', 'Changed {{name}}', '--text-file', text, '--replace']), 0, 'replace');
    const shown = parseJson<{ subject: string; text: string }>(expectExit(await ws.run(['template', 'show', 'reminder', '--tenant', 'acme', '--json']), 0, 'show'));
    expect(shown).toMatchObject({ subject: 'Changed {{name}}', text: 'Dear {{name}}, see you at {{time}}.\n' });
    expectExit(await ws.run(['template', 'remove', 'alpha', '--tenant', 'acme', '--yes']), 0, 'template remove');
    expect(parseJson<Array<{ name: string }>>(await ws.run(['template', 'list', '--tenant', 'acme', '--json'])).map((t) => t.name)).toEqual(['reminder']);
  });

  test('audit list: oldest first, field names only, --tenant, --limit (the newest), --since', async () => {
    const all = parseJson<Array<{ id: number; at: string; action: string; target: string; tenantId: string | null; fields: string[] }>>(
      expectExit(await ws.run(['audit', 'list', '--json']), 0, 'audit list'),
    );
    expect(all.slice(0, 2).map((a) => [a.action, a.target])).toEqual([
      ['tenant.add', 'acme'],
      ['tenant.add', 'beta'],
    ]);
    expect(all.find((a) => a.action === 'provider.add')).toMatchObject({ target: 'system/email/outbox', tenantId: null });
    expect(all.map((a) => a.id)).toEqual([...all.map((a) => a.id)].sort((a, b) => a - b));
    expect(all.map((a) => a.at)).toEqual([...all.map((a) => a.at)].sort());
    expect(all.find((a) => a.action === 'template.replace')).toMatchObject({ target: 'acme/reminder', tenantId: 'acme' });
    expect(JSON.stringify(all)).not.toMatch(/hard bounce|Changed \{\{name/); // values never, names only
    const acme = parseJson<Array<{ tenantId: string | null }>>(await ws.run(['audit', 'list', '--tenant', 'acme', '--json']));
    expect(acme.length).toBeGreaterThan(3);
    expect(acme.every((a) => a.tenantId === 'acme')).toBe(true);
    const last2 = parseJson<Array<{ id: number }>>(await ws.run(['audit', 'list', '--limit', '2', '--json']));
    expect(last2.map((a) => a.id)).toEqual(all.slice(-2).map((a) => a.id));
    expect(parseJson<unknown[]>(await ws.run(['audit', 'list', '--since', '2099-01-01T00:00:00Z', '--json']))).toEqual([]);
    expect(parseJson<unknown[]>(await ws.run(['audit', 'list', '--since', '1h', '--json']))).toHaveLength(all.length);
  });

  test('a provider config changed with SQL behind switchboard is refused (exit 5) before sending; doctor names it', async () => {
    await addTenant(ws, 'gamma');
    const dir = path.join(ws.dir, 'gamma-outbox');
    expectExit(await ws.run(['provider', 'add', '--tenant', 'gamma', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${out}`, '--set', 'from=g@gamma.test']), 0, 'provider add');
    const before = (await readOutbox(out)).length;
    const changed = await storeRun(ws.store, "UPDATE provider_configs SET settings = replace(settings, ?, ?) WHERE tenant_id = 'gamma'", out, dir);
    expect(changed).toBe(1);
    const r = await ws.run(['send', 'test', '--tenant', 'gamma', '--to', 'x@example.com', '--subject', 'S', '--body', 'B', '--no-fallback']);
    expect(r.exitCode, show(r)).toBe(5);
    expect(r.stderr).toMatch(/gamma\/email\/outbox/);
    expect((await readOutbox(out)).length).toBe(before);
    const doctor = parseJson<{ checks: Array<{ check: string; status: string }> }>(await ws.run(['doctor', '--json'])).checks;
    expect(doctor.find((c) => c.check === 'provider gamma/email/outbox integrity')?.status).toBe('fail');
  });
});
