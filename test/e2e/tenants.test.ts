// e2e: tenant lifecycle through the binary.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { addSystemOutbox, expectExit } from '../helpers/setup.js';

interface TenantJson {
  id: string;
  name: string;
  createdAt: string;
  fallback: { email: boolean; sms: boolean; whatsapp: boolean };
  providers?: unknown[];
}

describe('tenant commands', () => {
  let ws: Workspace;

  beforeAll(() => {
    ws = makeWorkspace();
  });
  afterAll(() => ws?.cleanup());

  const listTenants = async (): Promise<TenantJson[]> =>
    parseJson<TenantJson[]>(expectExit(await ws.run(['tenant', 'list', '--json']), 0, 'tenant list'));

  test('add, list, show', async () => {
    // Listing before anything exists does not create a store (issue 11): exit 2 naming the path.
    const none = await ws.run(['tenant', 'list', '--json']);
    expect(none.exitCode, show(none)).toBe(2);
    expect(none.stderr).toContain(`no store at ${ws.store}`);
    expect(fs.existsSync(ws.store)).toBe(false);
    const add = await ws.run(['tenant', 'add', 'acme-dental', '--name', 'Acme Dental']);
    expect(add.exitCode, show(add)).toBe(0);
    expectExit(await ws.run(['tenant', 'add', 'bright-smiles', '--name', 'Bright Smiles']), 0, 'tenant add');

    const list = await listTenants();
    expect(list.map((t) => t.id).sort()).toEqual(['acme-dental', 'bright-smiles']);
    const acme = list.find((t) => t.id === 'acme-dental')!;
    expect(acme.name).toBe('Acme Dental');
    expect(Number.isNaN(Date.parse(acme.createdAt))).toBe(false);

    const human = await ws.run(['tenant', 'list']);
    expectExit(human, 0, 'tenant list (human)');
    expect(human.stdout).toContain('acme-dental');
    expect(human.stdout).toContain('Bright Smiles');

    const shown = parseJson<TenantJson>(expectExit(await ws.run(['tenant', 'show', 'acme-dental', '--json']), 0, 'tenant show'));
    expect(shown).toMatchObject({ id: 'acme-dental', name: 'Acme Dental', fallback: { email: true, sms: true, whatsapp: true } });
    expect(shown.providers).toEqual([]);
  });

  test('duplicate id and malformed ids are usage errors (exit 2) and change nothing', async () => {
    const dup = await ws.run(['tenant', 'add', 'acme-dental', '--name', 'Another Acme']);
    expect(dup.exitCode, show(dup)).toBe(2);
    expect(dup.stderr).toContain('acme-dental');

    const spaced = await ws.run(['tenant', 'add', 'Acme Dental', '--name', 'Acme Dental']);
    expect(spaced.exitCode, show(spaced)).toBe(2);
    expect(spaced.stderr).toMatch(/Acme Dental/);

    for (const bad of ['ACME', 'acme_dental', '-acme', 'system']) {
      const r = await ws.run(['tenant', 'add', bad, '--name', 'X']);
      expect(r.exitCode, `tenant add ${bad}\n${show(r)}`).toBe(2);
    }

    const list = await listTenants();
    expect(list.map((t) => t.id).sort()).toEqual(['acme-dental', 'bright-smiles']);
    expect(list.find((t) => t.id === 'acme-dental')?.name).toBe('Acme Dental');

    const missing = await ws.run(['tenant', 'show', 'nobody-here', '--json']);
    expect(missing.exitCode, show(missing)).not.toBe(0);
    expect(missing.stderr).toContain('nobody-here');
  });

  test('update name and fallback switch; the route follows the switch', async () => {
    const outbox = path.join(ws.dir, 'outbox');
    await addSystemOutbox(ws, outbox);
    expectExit(
      await ws.run(['provider', 'add', '--tenant', 'acme-dental', '--channel', 'email', '--kind', 'outbox', '--name', 'own', '--set', `dir=${path.join(ws.dir, 'own')}`]),
      0,
      'provider add tenant outbox',
    );

    const routeBefore = expectExit(await ws.run(['provider', 'route', '--tenant', 'acme-dental', '--channel', 'email', '--json']), 0, 'provider route');
    const own = routeBefore.stdout.indexOf('acme-dental/email/own');
    const sys = routeBefore.stdout.indexOf('system/email/outbox');
    expect(own, routeBefore.stdout).toBeGreaterThanOrEqual(0);
    expect(sys, routeBefore.stdout).toBeGreaterThan(own);

    const up = await ws.run(['tenant', 'update', 'acme-dental', '--name', 'Acme Dental Group', '--fallback', 'email=off']);
    expect(up.exitCode, show(up)).toBe(0);
    const shown = parseJson<TenantJson>(expectExit(await ws.run(['tenant', 'show', 'acme-dental', '--json']), 0, 'tenant show'));
    expect(shown).toMatchObject({ name: 'Acme Dental Group', fallback: { email: false, sms: true, whatsapp: true } });
    expect(JSON.stringify(shown.providers)).toContain('acme-dental/email/own');

    const routeAfter = expectExit(await ws.run(['provider', 'route', '--tenant', 'acme-dental', '--channel', 'email', '--json']), 0, 'provider route');
    expect(routeAfter.stdout).toContain('acme-dental/email/own');
    expect(routeAfter.stdout).not.toContain('system/email/outbox');

    const bad = await ws.run(['tenant', 'update', 'acme-dental', '--fallback', 'email=maybe']);
    expect(bad.exitCode, show(bad)).toBe(2);
    const bright = await ws.run(['tenant', 'update', 'nobody-here', '--name', 'X']);
    expect(bright.exitCode, show(bright)).not.toBe(0);
    expect((await listTenants()).find((t) => t.id === 'acme-dental')?.name).toBe('Acme Dental Group');
  });

  test('remove needs --yes without a TTY; with --yes it removes the tenant and its providers', async () => {
    const noYes = await ws.run(['tenant', 'remove', 'acme-dental']);
    expect(noYes.exitCode, show(noYes)).toBe(2);
    expect(noYes.stderr).toContain('--yes');
    const noInput = await ws.run(['tenant', 'remove', 'acme-dental', '--no-input']);
    expect(noInput.exitCode, show(noInput)).toBe(2);
    expect((await listTenants()).map((t) => t.id)).toContain('acme-dental');
    expectExit(await ws.run(['provider', 'show', 'acme-dental/email/own', '--json']), 0, 'provider still there');

    const yes = await ws.run(['tenant', 'remove', 'acme-dental', '--yes']);
    expect(yes.exitCode, show(yes)).toBe(0);
    expect((await listTenants()).map((t) => t.id)).toEqual(['bright-smiles']);

    const gone = await ws.run(['provider', 'show', 'acme-dental/email/own', '--json']);
    expect(gone.exitCode, show(gone)).not.toBe(0);
    const providers = expectExit(await ws.run(['provider', 'list', '--json']), 0, 'provider list');
    expect(providers.stdout).not.toContain('acme-dental');
    // The system default is not the tenant's and stays.
    expect(providers.stdout).toContain('system/email/outbox');

    const again = await ws.run(['tenant', 'remove', 'acme-dental', '--yes']);
    expect(again.exitCode, show(again)).not.toBe(0);
  });
});
