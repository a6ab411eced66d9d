// Workers on a PostgreSQL store (issue 14, DESIGN §6): two processes of the built binary work one batch as two
// hosts would (each its own lease, rows reserved with SKIP LOCKED, a provider's rate shared through the database),
// against an SNS server (test/helpers/phone-stubs.ts: Query protocol, SigV4 checked) that records every Publish
// with its arrival time. Checked at the server: every row delivered exactly once, never more than the rate in any
// one-second window across both workers; a worker killed with SIGKILL leaves its sent rows `unknown` and its
// reserved rows to the other, 0 duplicates. Also `send batch` on PostgreSQL: SIGKILL then the same command again
// (0 duplicates), and a provider that is down pauses the batch (exit 75).
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { describe as show, makeWorkspace, parseJson, spawnCli, type CliResult, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit, maxPerSecond, parseBatchOutput, type BatchDetail } from '../helpers/setup.js';
import { startSnsStub, type SnsStub } from '../helpers/phone-stubs.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { createPgSql } from '../../src/store/pg.js';

const RATE = 500;

/** `n` distinct E.164 UK mobile numbers (+44 79xx xxxxxx, one prefix per batch). */
function phones(n: number, prefix: number): string[] {
  return Array.from({ length: n }, (_, i) => `+4479${prefix}${String(i).padStart(6, '0')}`);
}

/** How many times each recipient reached the server. */
function deliveries(stub: SnsStub): Map<string, number> {
  const seen = new Map<string, number>();
  for (const s of stub.sends) if (s.status === 200) seen.set(s.to, (seen.get(s.to) ?? 0) + 1);
  return seen;
}

function asResult(r: { exitCode?: number; stdout: unknown; stderr: unknown }): CliResult {
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

let ws: Workspace;
let stub: SnsStub;
let run: (args: string[]) => Promise<CliResult>;

beforeAll(async () => {
  ws = makeWorkspace();
  const { url } = await createTestDatabase('e2e_workers');
  ws.env.SWITCHBOARD_STORE = url;
  run = (args) => ws.run(args, { timeoutMs: 60_000 });
  const accessKeyId = `AKTEST${randomBytes(7).toString('hex').toUpperCase()}`;
  const secret = randomBytes(20).toString('hex');
  stub = await startSnsStub({ accessKeyId, secretAccessKey: secret });
  await addTenant(ws, 'acme');
  expectExit(
    await ws.run(
      ['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'sns', '--set', 'region=us-east-1', '--set', `accessKeyId=${accessKeyId}`, '--set', `endpoint=${stub.url}`, '--set', `rate=${RATE}`, '--secret-env', 'secretAccessKey=S'],
      { env: { S: secret } },
    ),
    0,
    'add sns',
  );
});
afterAll(async () => {
  await stub?.close();
  ws?.cleanup();
});

/** `send batch` arguments for a CSV of `to` (sms), with an explicit idempotency key. */
function batchArgs(to: string[], key: string, extra: string[] = []): string[] {
  const csv = ws.file(`${key}.csv`, `phone,name\n${to.map((p, i) => `${p},P${i}`).join('\n')}\n`);
  const tpl = ws.file('w.txt', 'Hi {{name}}\n');
  return ['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', csv, '--template-file', tpl, '--idempotency-key', key, '--json', '--concurrency', '16', ...extra];
}

/** The batch stored under `key` (`batch list`), with its rows as stored (state, error, the worker that held it). */
async function batchOf(key: string): Promise<BatchDetail & { rows: Array<{ row_no: number; recipient: string; state: string; error: string | null; worker: string | null }>; workers: number }> {
  const list = parseJson<BatchDetail[]>(expectExit(await run(['batch', 'list', '--json']), 0, 'batch list'));
  const b = list.find((x) => x.idempotencyKey === key)!;
  const sql = createPgSql(ws.env.SWITCHBOARD_STORE, 'test');
  try {
    const rows = await sql.all<{ row_no: number; recipient: string; state: string; error: string | null; worker: string | null }>(
      'SELECT row_no, recipient, state, error, worker FROM batch_items WHERE batch_id = ? ORDER BY row_no',
      b.id,
    );
    const workers = Number((await sql.get<{ n: number }>('SELECT count(*) AS n FROM batch_workers WHERE batch_id = ?', b.id))!.n);
    return { ...b, rows, workers };
  } finally {
    await sql.close();
  }
}

/** Waits until the server has `n` more sends than `from`. */
async function until(n: number, from: number): Promise<void> {
  const t0 = Date.now();
  while (stub.sends.length < from + n && Date.now() - t0 < 20_000) await sleep(10);
}

describe('two workers on one batch (PostgreSQL)', () => {
  test(`5,000 rows, two processes: each row delivered once, never above rate ${RATE} in any second across both`, async () => {
    const to = phones(5000, 11);
    const before = stub.sends.length;
    const first = spawnCli(ws, batchArgs(to, 'two-workers'));
    await until(50, before);
    // The second host runs the same command: it joins the running batch instead of exiting 4.
    const second = spawnCli(ws, batchArgs(to, 'two-workers'));
    const [a, b] = [asResult(await first), asResult(await second)];
    expect(a.exitCode, show(a)).toBe(0);
    expect(b.exitCode, show(b)).toBe(0);
    const byWorker = [a, b].map((r) => parseBatchOutput(r).rows.length);
    expect(byWorker[0]! + byWorker[1]!, 'rows reported by the two workers').toBe(5000);
    expect(Math.min(...byWorker), `the second worker sent rows too (${byWorker.join(' + ')})`).toBeGreaterThan(500);
    const seen = deliveries(stub);
    expect(to.filter((p) => seen.get(p) !== 1), 'rows not delivered exactly once').toEqual([]);
    const times = stub.sends.slice(before).map((s) => s.at);
    expect(maxPerSecond(times)).toBeLessThanOrEqual(RATE);
    const detail = await batchOf('two-workers');
    expect(detail).toMatchObject({ status: 'done', sentCount: 5000, pendingCount: 0, unknownCount: 0, workers: 0 });
    // Both workers sent rows of the batch.
    expect(new Set(detail.rows.map((r) => r.worker)).size).toBe(2);
    console.log(`two workers: ${byWorker.join(' + ')} rows, max ${maxPerSecond(times)} arrivals in a second (rate ${RATE}), ${((times.at(-1)! - times[0]!) / 1000).toFixed(1)} s`);
  });

  test('SIGKILL one worker mid-run: the other finishes; the dead one\'s sent rows are unknown, its reserved rows sent by the other, 0 duplicates', async () => {
    const to = phones(1500, 12);
    const before = stub.sends.length;
    const victim = spawnCli(ws, batchArgs(to, 'killed-worker'));
    await until(30, before);
    const survivor = spawnCli(ws, batchArgs(to, 'killed-worker'));
    await until(400, before);
    victim.kill('SIGKILL');
    const dead = await victim;
    expect(dead.signal).toBe('SIGKILL');
    const r = asResult(await survivor);
    // Rows the dead worker had on the wire are unknown: the batch ends with exit 3 (partial) or 0 if none was.
    expect([0, 3], show(r)).toContain(r.exitCode);
    const detail = await batchOf('killed-worker');
    expect(detail.status).toBe('done');
    const seen = deliveries(stub);
    expect(to.filter((p) => (seen.get(p) ?? 0) > 1), 'duplicates').toEqual([]);
    const states = new Map<string, number>();
    for (const i of detail.rows) {
      states.set(i.state, (states.get(i.state) ?? 0) + 1);
      if (i.state === 'sent') expect(seen.get(i.recipient), `sent row ${i.row_no}`).toBe(1);
      if (i.state === 'unknown') expect(i.error).toContain('interrupted while sending');
    }
    expect((states.get('sent') ?? 0) + (states.get('unknown') ?? 0)).toBe(1500);
    // Every row the server never saw was sent by the survivor: none is left pending or unknown without a reason.
    expect(to.filter((p) => !seen.has(p)).length).toBeLessThanOrEqual(states.get('unknown') ?? 0);
    expect(maxPerSecond(stub.sends.slice(before).map((s) => s.at))).toBeLessThanOrEqual(RATE);
    console.log(`killed worker: sent ${states.get('sent')}, unknown ${states.get('unknown') ?? 0}, duplicates 0`);
  });
});

describe('send batch on PostgreSQL', () => {
  test('SIGKILL then the same command again: 0 duplicates; a provider that is down pauses the batch (exit 75)', async () => {
    const to = phones(400, 13);
    const before = stub.sends.length;
    const child = spawnCli(ws, batchArgs(to, 'crash-resume'));
    await until(60, before);
    child.kill('SIGKILL');
    expect((await child).signal).toBe('SIGKILL');
    const again = await run(batchArgs(to, 'crash-resume'));
    expect([0, 3], show(again)).toContain(again.exitCode);
    const detail = await batchOf('crash-resume');
    const seen = deliveries(stub);
    expect(to.filter((p) => (seen.get(p) ?? 0) > 1), 'duplicates').toEqual([]);
    expect(detail).toMatchObject({ status: 'done', pendingCount: 0 });
    expect(detail.sentCount + detail.unknownCount).toBe(400);

    // A provider nobody answers: every row is handed back and the batch pauses.
    const down = makeWorkspace();
    try {
      down.env.SWITCHBOARD_STORE = (await createTestDatabase('e2e_workers_down')).url;
      await addTenant(down, 'acme');
      expectExit(
        await down.run(
          ['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'sns', '--set', 'region=us-east-1', '--set', 'accessKeyId=AKDOWN', '--set', 'endpoint=http://127.0.0.1:9', '--secret-env', 'secretAccessKey=S'],
          { env: { S: 'x'.repeat(40) } },
        ),
        0,
        'add sns (down)',
      );
      const csv = down.file('d.csv', `phone,name\n${phones(20, 14).map((p) => `${p},D`).join('\n')}\n`);
      const tpl = down.file('d.txt', 'Hi\n');
      const r = await down.run(['--max-attempts', '1', 'send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', csv, '--template-file', tpl, '--json'], { timeoutMs: 60_000 });
      expect(r.exitCode, show(r)).toBe(75);
      expect(parseBatchOutput(r).summary).toMatchObject({ status: 'paused', pendingCount: 20 });
    } finally {
      down.cleanup();
    }
  });
});
