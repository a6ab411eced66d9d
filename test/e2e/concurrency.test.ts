// e2e: two kinds of writers on one store at once (an operator adding tenants and providers while a cron batch
// runs): every process succeeds and no SQLITE_BUSY (or "locked") reaches the user.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execa } from 'execa';
import { baseEnv, binPath, makeWorkspace, parseJson, describe as show, type CliResult, type Workspace } from '../helpers/cli.js';
import { bulkSends, testBackend } from '../helpers/postgres.js';
import { addSystemOutbox, addTenant, expectExit, parseBatchOutput, readOutbox } from '../helpers/setup.js';

describe('concurrent writers on one store', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = makeWorkspace();
    await addTenant(ws, 'acme');
    await addSystemOutbox(ws, path.join(ws.dir, 'outbox'));
  });
  afterAll(() => ws?.cleanup());

  test.runIf(bulkSends(testBackend()))('tenant and provider adds in parallel with a running batch all succeed', async () => {
    const ROWS = 200;
    const csv = ws.file('rows.csv', 'email,name\n' + Array.from({ length: ROWS }, (_, i) => `r${i}@example.com,R${i}`).join('\n') + '\n');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    // The batch, as cron would run it; its JSON Lines tell us when it is sending.
    const batch = execa(process.execPath, [binPath, 'send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--concurrency', '8', '--json'], {
      env: { ...baseEnv(ws.home), ...ws.env },
      extendEnv: false,
      reject: false,
    });
    await new Promise<void>((resolve) => {
      batch.stdout!.on('data', (d: Buffer) => {
        if (String(d).includes('"type":"row"')) resolve();
      });
      void batch.then(() => resolve());
    });
    const N = 8;
    const others: Array<Promise<CliResult>> = [];
    for (let i = 0; i < N; i++) {
      others.push(
        ws.run(['tenant', 'add', `op-${i}`, '--name', `Op ${i}`]).then(async (r) => {
          if (r.exitCode !== 0) return r;
          return ws.run(['provider', 'add', '--tenant', `op-${i}`, '--channel', 'email', '--kind', 'smtp', '--set', 'host=127.0.0.1', '--set', `from=a@op${i}.test`, '--secret-env', 'password=P'], {
            env: { P: `pw-${i}-secret-value` },
          });
        }),
      );
      others.push(ws.run(['provider', 'update', 'system/email/outbox', '--set', `fromName=Ops ${i}`]));
    }
    const results = await Promise.all(others);
    const b = await batch;
    const batchResult: CliResult = { exitCode: b.exitCode ?? -1, stdout: String(b.stdout), stderr: String(b.stderr) };
    for (const r of [...results, batchResult]) {
      expect(r.exitCode, show(r)).toBe(0);
      expect(r.stderr).not.toMatch(/SQLITE_BUSY|database is locked|is locked/i);
    }
    const { summary } = parseBatchOutput(batchResult);
    expect(summary).toMatchObject({ rowCount: ROWS, sentCount: ROWS, failedCount: 0 });
    expect(await readOutbox(path.join(ws.dir, 'outbox'))).toHaveLength(ROWS);
    const tenants = parseJson<Array<{ id: string; providerCount: number }>>(expectExit(await ws.run(['tenant', 'list', '--json']), 0, 'tenant list'));
    expect(tenants.filter((t) => t.id.startsWith('op-') && t.providerCount === 1)).toHaveLength(N);
    const audit = parseJson<Array<{ action: string }>>(await ws.run(['audit', 'list', '--json']));
    expect(audit.filter((a) => a.action === 'provider.update')).toHaveLength(N);
  });

  test('operators in several processes at once: tenant, provider and suppression writes all succeed, each audited once', async () => {
    const N = 6;
    const updates = async () => parseJson<Array<{ action: string }>>(await ws.run(['audit', 'list', '--json'])).filter((a) => a.action === 'provider.update').length;
    const updatesBefore = await updates();
    const runs: Array<Promise<CliResult>> = [];
    for (let i = 0; i < N; i++) {
      runs.push(
        ws.run(['tenant', 'add', `par-${i}`, '--name', `Par ${i}`]).then(async (r) => {
          if (r.exitCode !== 0) return r;
          return ws.run(['provider', 'add', '--tenant', `par-${i}`, '--channel', 'email', '--kind', 'smtp', '--set', 'host=127.0.0.1', '--set', `from=a@par${i}.test`, '--secret-env', 'password=P'], {
            env: { P: `pw-par-${i}-secret-value` },
          });
        }),
      );
      runs.push(ws.run(['suppress', 'add', `s${i}@example.com`, '--tenant', 'acme', '--reason', `r${i}`]));
      runs.push(ws.run(['provider', 'update', 'system/email/outbox', '--set', `fromName=Par ${i}`]));
    }
    for (const r of await Promise.all(runs)) {
      expect(r.exitCode, show(r)).toBe(0);
      expect(r.stderr).not.toMatch(/SQLITE_BUSY|locked|deadlock|could not serialize/i);
    }
    const tenants = parseJson<Array<{ id: string; providerCount: number }>>(expectExit(await ws.run(['tenant', 'list', '--json']), 0, 'tenant list'));
    expect(tenants.filter((t) => t.id.startsWith('par-')).map((t) => [t.id, t.providerCount])).toEqual(Array.from({ length: N }, (_, i) => [`par-${i}`, 1]));
    const sup = parseJson<Array<{ address: string }>>(expectExit(await ws.run(['suppress', 'list', '--tenant', 'acme', '--json']), 0, 'suppress list'));
    expect(sup.map((s) => s.address).filter((a) => /^s\d@/.test(a))).toEqual(Array.from({ length: N }, (_, i) => `s${i}@example.com`));
    const audit = parseJson<Array<{ action: string; target: string }>>(await ws.run(['audit', 'list', '--json']));
    const count = (action: string, prefix: string) => audit.filter((a) => a.action === action && a.target.startsWith(prefix)).length;
    expect([count('tenant.add', 'par-'), count('provider.add', 'par-'), count('provider.update', 'system/email/outbox') - updatesBefore]).toEqual([N, N, N]);
    // The configs written in parallel verify (MAC) and their secrets open: doctor checks each.
    const doctor = parseJson<{ checks: Array<{ check: string; status: string }> }>(await ws.run(['doctor', '--json'])).checks;
    expect(doctor.filter((c) => /^provider par-\d\/email\/smtp (secrets|integrity)$/.test(c.check)).map((c) => c.status)).toEqual(Array(2 * N).fill('pass'));
  });
});
