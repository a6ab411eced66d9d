// Workers on a PostgreSQL store (issue 14), each a real `node bin/switchboard` run into the `bench-noop` adapter
// (test/bench/noop-kind.mjs), on a private PostgreSQL server started here (initdb in a temporary folder, as the
// `postgres` user when run as root; Debian's postgresql package, the newest major under /usr/lib/postgresql):
//  overhead  the no-op adapter at 0 ms, concurrency 16: per message on SQLite and on PostgreSQL (target: PostgreSQL
//            within 2× of SQLite)
//  workers   the no-op adapter answering after 50 ms, concurrency 16 per worker: one worker, then two workers (a
//            second process joins with the same `send batch` line right after the first started; target: two ≥ 1.6×
//            one)
// "send phase" is the batch's started_at → finished_at. The machine's load average is printed with the figures
// (the machine is shared: figures move with it). Env: BENCH_QUICK=1 runs smaller sizes; BENCH_ROUNDS the rounds of
// the overhead case (default 3, quick 1).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, privatePostgres, root, writeCsv } from './lib.mjs';

const quick = process.env.BENCH_QUICK === '1';
const bin = path.join(root, 'test', 'bench', 'switchboard-unbundled.mjs');
const noopHook = path.join(root, 'test', 'bench', 'noop-kind.mjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-workers-'));

const pg = await privatePostgres();

const key = randomBytes(32).toString('base64');
const envFor = (store) => ({ PATH: process.env.PATH, HOME: dir, SWITCHBOARD_STORE: store, SWITCHBOARD_MASTER_KEY: key, NO_COLOR: '1' });
const sqliteEnv = envFor(path.join(dir, 'sb.db'));
const pgEnv = envFor(pg.url);

function sb(env, args) {
  const r = spawnSync(process.execPath, ['--import', noopHook, bin, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`switchboard ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** Starts one run; resolves with its summary (last stdout line). */
function start(env, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', noopHook, bin, '--json', '--quiet', ...args], { env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out = (out + d).slice(-65536)));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`exit ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1)));
    });
  });
}

/** The send phase of a batch in ms (started_at → finished_at). */
function sendMs(env, batchId) {
  const b = JSON.parse(sb(env, ['batch', 'show', batchId, '--json']));
  return Date.parse(b.finishedAt) - Date.parse(b.startedAt);
}

const tpl = path.join(dir, 't.txt');
fs.writeFileSync(tpl, 'Hello {{name}}, your code is {{code}}.\n');
const send = (file, extra = []) => ['send', 'batch', '--tenant', 'bench', '--csv', file, '--template-file', tpl, '--subject', 'Hi {{name}}', '--concurrency', '16', ...extra];
for (const env of [sqliteEnv, pgEnv]) {
  sb(env, ['tenant', 'add', 'bench', '--name', 'Bench']);
  sb(env, ['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'bench-noop', '--name', 'noop']);
}
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
const rows = [];
const notes = [];
try {
  // overhead: the tool's own cost per message on each store, in rounds (SQLite and PostgreSQL back to back, the
  // order alternating, each run a new batch of its own), so that a change of load on the shared machine hits both
  // alike: medians, ranges and the ratio taken round by round.
  const n = quick ? 5000 : 20_000;
  const rounds = Number(process.env.BENCH_ROUNDS ?? (quick ? 1 : 3));
  const perMsg = { SQLite: [], PostgreSQL: [] };
  const sent = { SQLite: 0, PostgreSQL: 0 };
  const before = load();
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [['SQLite', sqliteEnv], ['PostgreSQL', pgEnv]] : [['PostgreSQL', pgEnv], ['SQLite', sqliteEnv]];
    for (const [name, env] of order) {
      const s = await start(env, send(writeCsv(dir, `o-${name}-${r}.csv`, n), ['--idempotency-key', `overhead-${r}`]));
      perMsg[name].push(sendMs(env, s.batchId) / n);
      sent[name] += s.sentCount;
    }
  }
  const after = load();
  const range = (xs) => `${median(xs).toFixed(3)} ms/msg (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`;
  for (const name of ['SQLite', 'PostgreSQL']) {
    rows.push([`no-op 0 ms, ${name}, 1 worker (${rounds} rounds)`, n * rounds, sent[name], `${(1000 / median(perMsg[name])).toFixed(0)} msg/s`, range(perMsg[name]), `${before} → ${after}`]);
  }
  const ratios = perMsg.PostgreSQL.map((pg, k) => pg / perMsg.SQLite[k]);
  notes.push(`PostgreSQL / SQLite per message, paired by round: ${median(ratios).toFixed(2)}× (${ratios.map((x) => x.toFixed(2)).join(', ')}); target within 2×`);
  // workers: one vs two at 50 ms latency (PostgreSQL).
  for (const env of [pgEnv]) sb(env, ['provider', 'update', 'bench/email/noop', '--set', 'latency=50']);
  const m = quick ? 2000 : 6000;
  {
    const before = load();
    const s = await start(pgEnv, send(writeCsv(dir, 'w1.csv', m), ['--idempotency-key', 'w1']));
    const ms = sendMs(pgEnv, s.batchId);
    rows.push(['no-op 50 ms, PostgreSQL, 1 worker (concurrency 16)', m, s.sentCount, `${(m / (ms / 1000)).toFixed(0)} msg/s (concurrency/latency = 320)`, `${(ms / m).toFixed(3)} ms/msg`, before]);
  }
  {
    const before = load();
    const file = writeCsv(dir, 'w2.csv', m);
    const first = start(pgEnv, send(file, ['--idempotency-key', 'w2']));
    await new Promise((r) => setTimeout(r, 300));
    const second = start(pgEnv, send(file, ['--idempotency-key', 'w2']));
    const [a, b] = await Promise.all([first, second]);
    const ms = sendMs(pgEnv, a.batchId);
    rows.push([`no-op 50 ms, PostgreSQL, 2 workers (concurrency 16 each; the second joins after 0.3 s)`, m, b.sentCount, `${(m / (ms / 1000)).toFixed(0)} msg/s (concurrency/latency = 640)`, `${(ms / m).toFixed(3)} ms/msg`, before]);
  }
} finally {
  pg.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`| case | rows | sent | throughput (send phase) | per message | load average before (1/5/15 min) |`);
console.log(`|---|---|---|---|---|---|`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
for (const n of notes) console.log(n);
