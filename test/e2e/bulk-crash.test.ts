// e2e: crash safety, leases and signals of `send batch`, driving the built binary as cron would.
// The SMTP server counts deliveries per ledger row from the X-Switchboard-Batch header (`<batchId>/<row>`).
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execa } from 'execa';
import { baseEnv, binPath, makeWorkspace, parseJson, spawnCli, describe as show, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { addSmtpProvider, addTenant, expectExit, outboxWorkspace, readOutbox, type BatchDetail } from '../helpers/setup.js';

const PASSWORD = 'crash-pw-77a1';
const ROWS = 2000;
const KILLS = 10;
const CONCURRENCY = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deliveries per `<batchId>/<row>` as the server saw them. */
function deliveries(srv: TestSmtpServer): Map<string, number> {
  const seen = new Map<string, number>();
  for (const m of srv.messages) {
    const tag = /^X-Switchboard-Batch:\s*(\S+)/im.exec(m.raw.toString('utf8'))?.[1];
    if (tag) seen.set(tag, (seen.get(tag) ?? 0) + 1);
  }
  return seen;
}

describe('crash safety: SIGKILL at random points, then the same cron line again', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;

  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: PASSWORD } });
    await addTenant(ws, 'acme');
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: PASSWORD });
  });
  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  test(`${ROWS} rate-limited rows, killed ${KILLS} times: no row delivered twice, none lost, unknown rows only for requests on the wire`, async () => {
    const csv = ws.file('big.csv', ['email,name', ...Array.from({ length: ROWS }, (_, i) => `p${i + 1}@example.com,P${i + 1}`)].join('\n') + '\n');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    // Rate-limited: most rows wait for a slot at any moment; they must stay `pending`, not become `unknown`.
    const line = ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{name}}', '--concurrency', String(CONCURRENCY), '--rate', '150', '--quiet'];
    const kills: Array<{ afterMs: number; sentBefore: number }> = [];
    for (let k = 0; k < KILLS; k++) {
      const child = spawnCli(ws, line);
      const before = srv.messages.length;
      // Wait until this run has delivered something (so the kill lands mid-send), then a random extra delay.
      const t0 = Date.now();
      while (srv.messages.length === before && Date.now() - t0 < 20_000) await sleep(20);
      const extra = Math.floor(Math.random() * 600);
      await sleep(extra);
      child.kill('SIGKILL');
      const r = await child;
      expect(r.signal, show({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) })).toBe('SIGKILL');
      kills.push({ afterMs: Date.now() - t0, sentBefore: srv.messages.length });
    }
    // The last run finishes: rows in flight at a kill are `unknown` (exit 3 says so) and are not resent.
    const last = await ws.run([...line.filter((a) => a !== '--quiet'), '--json'], { timeoutMs: 60_000 });
    expect([0, 3], show(last)).toContain(last.exitCode);
    const list = parseJson<BatchDetail[]>(expectExit(await ws.run(['batch', 'list', '--json']), 0, 'batch list'));
    expect(list).toHaveLength(1);
    const batchId = list[0]!.id;
    const detail = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', batchId, '--items', '--json']), 0, 'batch show'));
    await sleep(200); // let the server finish parsing the last messages
    const seen = deliveries(srv);

    const items = detail.items ?? [];
    expect(items).toHaveLength(ROWS);
    const states = new Map<string, number>();
    let unknownDelivered = 0;
    let unknownReached = 0;
    const reached = new Set(srv.rcptTo);
    for (const item of items) {
      states.set(item.state, (states.get(item.state) ?? 0) + 1);
      expect(['sent', 'failed', 'skipped', 'unknown'], `row ${item.row}`).toContain(item.state);
      const n = seen.get(`${batchId}/${item.row}`) ?? 0;
      expect(n, `row ${item.row} delivered ${n} times`).toBeLessThanOrEqual(1);
      if (item.state === 'sent') expect(n, `row ${item.row} is sent in the ledger`).toBe(1);
      if (item.state === 'failed' || item.state === 'skipped') expect(n, `row ${item.row} is ${item.state}`).toBe(0);
      if (item.state === 'unknown') {
        unknownDelivered += n;
        if (reached.has(item.recipient)) unknownReached++;
      }
    }
    // A row is `sending` only once its request has its slot and leaves: each kill leaves at most the requests on
    // the wire (the concurrency) unknown, never the rows waiting for the rate limit.
    expect(states.get('unknown') ?? 0).toBeLessThanOrEqual(KILLS * CONCURRENCY);
    // Nothing delivered that the ledger does not account for.
    const total = [...seen.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe((states.get('sent') ?? 0) + unknownDelivered);
    expect(seen.size).toBe(total);
    expect(states.get('sent')! + (states.get('unknown') ?? 0)).toBe(ROWS);
    // `batch list` and `batch show` give the counts the last run kept when it ended: they agree with the rows.
    for (const b of [list[0]!, detail]) {
      expect([b.rowCount, b.sentCount, b.failedCount, b.unknownCount, b.pendingCount]).toEqual([ROWS, states.get('sent'), states.get('failed') ?? 0, states.get('unknown') ?? 0, 0]);
    }
    // Reported in the test output, for the issue's closing note.
    console.log(
      `crash test: ${kills.length + 1} runs, ${kills.length} SIGKILLs (after ${kills.map((k) => `${k.afterMs} ms`).join(', ')}), ` +
        `sent ${states.get('sent')}, unknown ${states.get('unknown') ?? 0} (the server had the message of ${unknownDelivered}, and a RCPT TO of ${unknownReached}), duplicates 0`,
    );
  });
});

describe('leases and signals', () => {
  let ws: Workspace;
  let out: string;

  beforeAll(async () => {
    ({ ws, out } = await outboxWorkspace());
  });
  afterAll(() => ws?.cleanup());

  const batchLine = (csv: string, tpl: string, extra: string[] = []) => ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{name}}', ...extra];

  test('two processes start the same batch at once: one works, the other exits 4 naming the holder; a dead holder is taken over', async () => {
    const csv = ws.file('lease.csv', ['email,name', ...Array.from({ length: 120 }, (_, i) => `l${i}@example.com,L${i}`)].join('\n') + '\n');
    const tpl = ws.file('lease.txt', 'Hi {{name}}\n');
    // 8 s of sending at 15/s: the second process must start while the first still holds the batch, even when a
    // loaded machine starts one of them seconds after the other (at 40/s a start 3 s late found it finished).
    const line = batchLine(csv, tpl, ['--rate', '15']);
    const [a, b] = await Promise.all([ws.run(line), ws.run(line)]);
    const codes = [a.exitCode, b.exitCode].sort();
    expect(codes, `${show(a)}\n${show(b)}`).toEqual([0, 4]);
    const loser = a.exitCode === 4 ? a : b;
    expect(loser.stderr).toMatch(/being sent by \d+@|another process started the same batch/);
    expect((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('l'))).toHaveLength(120);

    // A holder killed with SIGKILL leaves its lease (30 s) behind; its pid is dead, so the next run takes over.
    const csv2 = ws.file('lease2.csv', ['email,name', ...Array.from({ length: 200 }, (_, i) => `d${i}@example.com,D${i}`)].join('\n') + '\n');
    const line2 = batchLine(csv2, tpl, ['--rate', '50']);
    const child = spawnCli(ws, line2);
    const t0 = Date.now();
    while ((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('d')).length === 0 && Date.now() - t0 < 20_000) await sleep(50);
    child.kill('SIGKILL');
    await child;
    const held = parseJson<Array<BatchDetail & { leaseOwner: string | null }>>(await ws.run(['batch', 'list', '--json'])).find((x) => x.status === 'running');
    expect(held?.leaseOwner).toMatch(new RegExp(`^${child.pid}@`));
    const again = await ws.run(line2, { timeoutMs: 30_000 });
    expect([0, 3], show(again)).toContain(again.exitCode);
    const after = parseJson<BatchDetail & { pending: number; leaseOwner: string | null }>(await ws.run(['batch', 'show', held!.id, '--json']));
    expect(after).toMatchObject({ status: 'done', pendingCount: 0, leaseOwner: null });

    // A holder killed but never reaped (a zombie: its parent does not wait for it, as in a container without an
    // init, or when the parent was killed with it) still answers kill(pid, 0); it is dead all the same, so the next
    // run takes over at once instead of exiting 4 until the lease expires.
    const csv3 = ws.file('lease3.csv', ['email,name', ...Array.from({ length: 200 }, (_, i) => `z${i}@example.com,Z${i}`)].join('\n') + '\n');
    const line3 = batchLine(csv3, tpl, ['--rate', '50']);
    // sh starts switchboard in the background, prints its pid, and becomes `sleep`, which never waits for children.
    const parent = execa('sh', ['-c', '"$0" "$@" >/dev/null 2>&1 & echo $!; exec sleep 60', process.execPath, binPath, ...line3], {
      env: { ...baseEnv(ws.home), ...ws.env },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
    });
    let zombiePid = 0;
    parent.stdout!.once('data', (d: Buffer) => (zombiePid = Number(String(d).trim())));
    try {
      const t1 = Date.now();
      while ((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('z')).length === 0 && Date.now() - t1 < 20_000) await sleep(50);
      expect(zombiePid).toBeGreaterThan(0);
      process.kill(zombiePid, 'SIGKILL');
      const t2 = Date.now();
      while (!fs.readFileSync(`/proc/${zombiePid}/stat`, 'latin1').match(/\) Z/) && Date.now() - t2 < 5_000) await sleep(20);
      expect(fs.readFileSync(`/proc/${zombiePid}/stat`, 'latin1')).toMatch(/\) Z /);
      const taken = await ws.run(line3, { timeoutMs: 30_000 });
      expect([0, 3], show(taken)).toContain(taken.exitCode);
      const zs = (await readOutbox(out)).filter((m) => m.to[0]?.startsWith('z')).map((m) => m.to[0]);
      expect(new Set(zs).size).toBe(zs.length);
      expect(zs.length).toBeGreaterThanOrEqual(196);
    } finally {
      parent.kill('SIGKILL');
      await parent;
    }
  });

  test('the same cron line twice: the second sends nothing', async () => {
    const csv = ws.file('cron.csv', 'email,name\nc1@example.com,C1\nc2@example.com,C2\n');
    const tpl = ws.file('cron.txt', 'Hi {{name}}\n');
    expectExit(await ws.run(batchLine(csv, tpl)), 0, 'first run');
    const n = (await readOutbox(out)).length;
    const second = expectExit(await ws.run(batchLine(csv, tpl)), 0, 'second run');
    expect(second.stdout).toMatch(/already finished/);
    expect(second.stderr).toMatch(/already finished at .*To send again, add --new-batch/);
    expect((await readOutbox(out)).length).toBe(n);
  });

  test('SIGINT mid-run: exit 130 with the resume command; resume completes it, nothing twice', async () => {
    const csv = ws.file('int.csv', ['email,name', ...Array.from({ length: 150 }, (_, i) => `i${i}@example.com,I${i}`)].join('\n') + '\n');
    const tpl = ws.file('int.txt', 'Hi {{name}}\n');
    const child = spawnCli(ws, batchLine(csv, tpl, ['--rate', '50']));
    const t0 = Date.now();
    while ((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('i')).length < 10 && Date.now() - t0 < 20_000) await sleep(50);
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode, String(r.stderr)).toBe(130);
    const id = /batch resume (\S+)/.exec(String(r.stderr))?.[1];
    expect(id, String(r.stderr)).toBeDefined();
    const mid = (await readOutbox(out)).filter((m) => m.to[0]?.startsWith('i')).length;
    expect(mid).toBeLessThan(150);
    const resumed = expectExit(await ws.run(['batch', 'resume', id!, '--json']), 0, 'resume');
    expect(resumed.stdout).toMatch(/"type":"summary"/);
    const got = (await readOutbox(out)).filter((m) => m.to[0]?.startsWith('i')).map((m) => m.to[0]);
    expect(got).toHaveLength(150);
    expect(new Set(got).size).toBe(150);
    expect(fs.existsSync(out)).toBe(true);
  });
});
