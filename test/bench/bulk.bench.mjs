// Bulk-send benchmarks (issue 5), each a real `node bin/switchboard` run measured with /usr/bin/time (peak RSS):
//  noop    per-message mode into `bench-noop` (test/bench/noop-kind.mjs, loaded with --import): an adapter that
//          does no I/O, so the send phase measures the tool's own cost per message (ledger + dispatch)
//  memory  the same with 20,000, 100,000 and 1,000,000 rows: peak RSS must not grow with input size
//  noop50  the no-op adapter answering after 50 ms: throughput against concurrency / latency
//  outbox  per-message mode into the outbox adapter (one .eml file written per message)
//  smtp0, smtp50  per-message mode into a local SMTP sink (smtp-server) answering after 0 ms and after 50 ms
//  dryrun  `--dry-run` of a 1,000,000-row CSV: peak RSS
//  rate, rate50  `--rate 200` for 20 s (sink at 0 ms / 50 ms): the most deliveries the sink saw in any sliding
//          one-second window, and the mean
// "send phase" is the batch's started_at → finished_at (after the CSV is validated and stored), per message.
//  sendgrid  the sendgrid adapter against a local SendGrid-like server (node:http, 202 + X-Message-Id):
//          personalization batches (100,000 and 1,000,000 rows: peak RSS against input size), and one request
//          per row (`batchSize=1`, 100,000 rows) at 0 ms and at 50 ms latency
//  outage  an SMTP provider whose port refuses connections, and a SendGrid-like server answering 503: the time
//          from the send phase's start (the first request) to exit 75 (paused), with every row left pending
// "whole run" is the command's own elapsed time: validating the CSV, storing its rows, and sending them.
// Every case runs on each store of BENCH_STORE (default `sqlite,postgres`: a SQLite file, then a private PostgreSQL
// server started here as test/bench/workers.bench.mjs does, lib.mjs privatePostgres), one store for all cases, and
// the table prints each case's runs on both stores next to each other, with the load average when each run started.
// Env: BENCH_QUICK=1 runs smaller sizes; BENCH_ONLY=noop,rate,sendgrid runs only those cases (`sendgrid-batch`: the
// SendGrid personalization batches only); BENCH_STORE=sqlite (or postgres) runs on one store only.
import { spawnSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import http from 'node:http';
import { freePort, privatePostgres, root, smtpSink, writeCsv } from './lib.mjs';

// The unbundled entry, so that the --import hook's kind is in the registry the CLI uses (see that file).
const bin = path.join(root, 'test', 'bench', 'switchboard-unbundled.mjs');
const quick = process.env.BENCH_QUICK === '1';
const only = process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',') : undefined;
const want = (name) => !only || only.includes(name);
/** The stores every case runs on, in turn: `sqlite` (a file in the bench's folder), `postgres` (a private server). */
const stores = (process.env.BENCH_STORE ?? 'sqlite,postgres').split(',');
for (const s of stores) if (s !== 'sqlite' && s !== 'postgres') throw new Error(`BENCH_STORE: unknown store "${s}" (sqlite, postgres)`);
const noopHook = path.join(root, 'test', 'bench', 'noop-kind.mjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-bulk-'));
let env = {
  PATH: process.env.PATH,
  HOME: dir,
  SWITCHBOARD_STORE: path.join(dir, 'sb.db'),
  SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64'),
  NO_COLOR: '1',
};

function sb(args) {
  const r = spawnSync(process.execPath, ['--import', noopHook, bin, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`switchboard ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/**
 * Runs switchboard under /usr/bin/time; resolves with its summary, wall ms, peak RSS (MB), the send phase (ms)
 * and, for a paused run (`exitCode` 75 expected), the time from the send phase's start to the process's exit.
 */
let lastLoad = os.loadavg();
function timed(args, exitCode = 0) {
  return new Promise((resolve, reject) => {
    const node = [process.execPath, ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(' ') : []), '--import', noopHook];
    lastLoad = os.loadavg();
    const child = spawn('/usr/bin/time', ['-f', 'RSS_KB=%M CPU_S=%U+%S', ...node, bin, '--json', '--quiet', ...args], { env });
    let out = '';
    let err = '';
    const t0 = performance.now();
    // Only the tail is kept: the last line is the summary (a 1,000,000-row run prints ~200 MB of row events).
    child.stdout.on('data', (d) => (out = (out + d).slice(-65536)));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      const exitedAt = Date.now();
      if (code !== exitCode) return reject(new Error(`exit ${code}: ${err}`));
      const lines = out.trim().split('\n');
      const summary = JSON.parse(lines[lines.length - 1]);
      let sendMs;
      let toExitMs;
      if (summary.batchId) {
        const b = JSON.parse(sb(['batch', 'show', summary.batchId, '--json']));
        sendMs = Date.parse(b.finishedAt) - Date.parse(b.startedAt);
        toExitMs = exitedAt - Date.parse(b.startedAt);
      }
      const [, user, sys] = /CPU_S=([\d.]+)\+([\d.]+)/.exec(err);
      resolve({ summary, ms, sendMs, toExitMs, cpuMs: (Number(user) + Number(sys)) * 1000, rssMb: Number(/RSS_KB=(\d+)/.exec(err)[1]) / 1024 });
    });
  });
}

const csv = (name, rows) => writeCsv(dir, name, rows);

// The commit measured, read before the first run (a commit made while the bench runs is not the code it ran).
const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
const tpl = path.join(dir, 't.txt');
fs.writeFileSync(tpl, 'Hello {{name}}, your code is {{code}}.\n');
const send = (file, extra = []) => ['send', 'batch', '--tenant', 'bench', '--csv', file, '--template-file', tpl, '--subject', 'Hi {{name}}', '--new-batch', ...extra];
const perMsg = (r, n) => `${(r.summary.elapsedMs / n).toFixed(3)} ms/msg (send phase ${(r.sendMs / n).toFixed(3)}; CPU ${(r.cpuMs / n).toFixed(3)})`;
/** Messages per second over the whole run (validation, storing the rows, sending) and over the send phase. */
const msgPerSec = (r, unit = 'msg/s') =>
  `${(r.summary.sentCount / (r.summary.elapsedMs / 1000)).toFixed(0)} ${unit} (send phase ${(r.summary.sentCount / (r.sendMs / 1000)).toFixed(0)})`;

/** Sliding one-second maximum and mean rate of arrival times (ms). */
function windowStats(arrivals, rate) {
  const t = arrivals.sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; j < t.length; j++) {
    while (t[j] - t[i] >= 1000) i++;
    max = Math.max(max, j - i + 1);
  }
  // Mean over the run: the first `rate` messages may arrive at once, so n messages need (n - rate) / rate s.
  const mean = (t.length - rate) / ((t[t.length - 1] - t[0]) / 1000);
  return { max, mean };
}

/** The table's rows: the case's columns, the store it ran on, and the load average when its run started. */
const results = [];
let storeName;
const record = (row) => results.push({ row, store: storeName, load: lastLoad });

/** Every case wanted, in turn, on the store `env` names (one store for all cases). */
async function cases() {
  sb(['tenant', 'add', 'bench', '--name', 'Bench']);

  // noop and memory: the tool's own cost per message, and peak RSS against input size
  if (want('noop') || want('memory')) {
    sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'bench-noop', '--name', 'noop']);
    const sizes = want('memory') ? (quick ? [5_000, 25_000] : [20_000, 100_000, 1_000_000]) : [quick ? 5_000 : 20_000];
    for (const n of sizes) {
      const r = await timed(send(csv(`noop${n}.csv`, n), ['--concurrency', '16']));
      record([`no-op adapter (tool overhead), per message, concurrency 16`, n, r.summary.sentCount, msgPerSec(r), perMsg(r, n), r.rssMb]);
    }
    sb(['provider', 'remove', 'bench/email/noop', '--yes']);
  }

  if (want('noop50')) {
    const n = quick ? 2_000 : 5_000;
    sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'bench-noop', '--name', 'noop50', '--set', 'latency=50']);
    const r = await timed(send(csv('noop50.csv', n), ['--concurrency', '16']));
    record([`no-op adapter answering after 50 ms, per message, concurrency 16`, n, r.summary.sentCount, `${msgPerSec(r)} (concurrency/latency = 320)`, perMsg(r, n), r.rssMb]);
    sb(['provider', 'remove', 'bench/email/noop50', '--yes']);
  }

  if (want('outbox')) {
    const n = quick ? 5_000 : 20_000;
    sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'outbox', '--name', 'outbox', '--set', `dir=${path.join(dir, 'outbox')}`]);
    const r = await timed(send(csv('outbox.csv', n), ['--concurrency', '16']));
    record(['outbox (a file per message), per message, concurrency 16', n, r.summary.sentCount, msgPerSec(r), perMsg(r, n), r.rssMb]);
    sb(['provider', 'remove', 'bench/email/outbox', '--yes']);
  }

  for (const [name, latency, n, conc] of [
    ['smtp0', 0, quick ? 2_000 : 10_000, 16],
    ['smtp50', 50, quick ? 1_000 : 5_000, 16],
  ]) {
    if (!want(name)) continue;
    const s = await smtpSink(latency);
    sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'smtp', '--name', `sink${latency}`, '--set', 'host=127.0.0.1', '--set', `port=${s.port}`, '--set', 'tls=none', '--set', 'from=bench@example.com']);
    const r = await timed(send(csv(`smtp${latency}.csv`, n), ['--concurrency', String(conc)]));
    const expect = latency ? ` (concurrency/latency = ${(conc / (latency / 1000)).toFixed(0)})` : '';
    record([`smtp sink ${latency} ms, per message, concurrency ${conc}`, n, r.summary.sentCount, `${msgPerSec(r)}${expect}`, perMsg(r, n), r.rssMb]);
    sb(['provider', 'remove', `bench/email/sink${latency}`, '--yes']);
    await s.close();
  }

  if (want('dryrun')) {
    const n = quick ? 200_000 : 1_000_000;
    const r = await timed(send(csv('million.csv', n), ['--dry-run']));
    record([`--dry-run`, n, 0, `${(n / (r.ms / 1000)).toFixed(0)} rows/s validated`, '-', r.rssMb]);
  }

  for (const [name, latency] of [
    ['rate', 0],
    ['rate50', 50],
  ]) {
    if (!want(name)) continue;
    const secs = quick ? 6 : 20;
    const rate = 200;
    const s = await smtpSink(latency);
    sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'smtp', '--name', name, '--set', 'host=127.0.0.1', '--set', `port=${s.port}`, '--set', 'tls=none', '--set', 'from=bench@example.com']);
    const n = rate * secs;
    const r = await timed(send(csv(`${name}.csv`, n), ['--concurrency', '16', '--rate', String(rate)]));
    const { max, mean } = windowStats(s.arrivals, rate);
    record([`--rate ${rate} for ${secs} s (smtp sink ${latency} ms)`, n, r.summary.sentCount, `max ${max} in any 1 s window; mean ${mean.toFixed(1)} msg/s (${(((mean - rate) / rate) * 100).toFixed(1)} %)`, '-', r.rssMb]);
    sb(['provider', 'remove', `bench/email/${name}`, '--yes']);
    await s.close();
  }

  // 5. sendgrid: a local server speaking the mail send wire format (202, X-Message-Id), answering after `latencyMs`.
  async function sendGridLike(latencyMs, status = 202) {
    const seen = { requests: 0, personalizations: 0 };
    const server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        seen.requests++;
        seen.personalizations += body.personalizations.length;
        setTimeout(() => {
          if (status !== 202) {
            res.writeHead(status, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ errors: [{ message: 'service unavailable', field: null, help: null }] }));
            return;
          }
          res.writeHead(202, { 'X-Message-Id': `bench-${seen.requests}` });
          res.end();
        }, latencyMs);
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))) };
  }
  const single = ['--set', 'batchSize=1'];
  const batchMode = want('sendgrid') || want('sendgrid-batch');
  for (const [label, latency, n, conc, extra] of [
    // Twice in batch mode, at 10× the rows apart: peak RSS must not follow the input size.
    ...(batchMode ? [['personalization batches (1000 per request)', 0, quick ? 20_000 : 100_000, 4, []], ['personalization batches (1000 per request)', 0, quick ? 100_000 : 1_000_000, 4, []]] : []),
    ...(want('sendgrid') ? [['one request per row (batchSize=1)', 0, quick ? 5_000 : 100_000, 16, single], ['one request per row (batchSize=1)', 50, quick ? 5_000 : 100_000, 64, single]] : []),
  ]) {
    const s = await sendGridLike(latency);
    const name = `sg${latency}${extra.length ? 'single' : 'batch'}${n}`;
    spawnSync(process.execPath, [bin, 'provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'sendgrid', '--name', name, '--set', 'from=bench@example.com', '--set', `endpoint=${s.url}`, ...extra, '--secret-env', 'apiKey=SG_BENCH'], {
      env: { ...env, SG_BENCH: `SG.${randomBytes(11).toString('hex')}.${randomBytes(22).toString('hex')}` },
    });
    const r = await timed(send(csv(`${name}.csv`, n), ['--concurrency', String(conc), '--new-batch']));
    const expect = latency ? ` (concurrency/latency = ${(conc / (latency / 1000)).toFixed(0)})` : '';
    const thr = extra.length ? msgPerSec(r) : `${msgPerSec(r, 'recipients/s')} in ${s.seen.requests} requests`;
    record([`sendgrid-like server ${latency} ms, ${label}, concurrency ${conc}`, n, r.summary.sentCount, `${thr}${expect}`, perMsg(r, n), r.rssMb]);
    sb(['provider', 'remove', `bench/email/${name}`, '--yes']);
    await s.close();
  }

  // outage: how long a dead route costs before the run pauses (exit 75), for 10,000 rows
  if (want('outage')) {
    const n = quick ? 2_000 : 10_000;
    const refused = await freePort();
    sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'smtp', '--name', 'down', '--set', 'host=127.0.0.1', '--set', `port=${refused}`, '--set', 'tls=none', '--set', 'from=bench@example.com']);
    const r = await timed(send(csv('outage.csv', n), ['--concurrency', '16']), 75);
    record([`outage: SMTP port refusing connections, concurrency 16 → paused (exit 75), ${r.summary.pendingCount} rows pending`, n, r.summary.sentCount, `${r.toExitMs} ms from the first request to exit 75 (whole run ${r.ms.toFixed(0)} ms)`, '-', r.rssMb]);
    sb(['provider', 'remove', 'bench/email/down', '--yes']);
    const s = await sendGridLike(0, 503);
    spawnSync(process.execPath, [bin, 'provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'sendgrid', '--name', 'sg503', '--set', 'from=bench@example.com', '--set', `endpoint=${s.url}`, '--secret-env', 'apiKey=SG_BENCH'], {
      env: { ...env, SG_BENCH: `SG.${randomBytes(11).toString('hex')}.${randomBytes(22).toString('hex')}` },
    });
    const g = await timed(send(csv('outage-sg.csv', n), ['--concurrency', '4']), 75);
    record([`outage: sendgrid-like server answering 503, batches, concurrency 4 → paused (exit 75), ${g.summary.pendingCount} rows pending`, n, g.summary.sentCount, `${g.toExitMs} ms from the first request to exit 75 in ${s.seen.requests} requests (whole run ${g.ms.toFixed(0)} ms)`, '-', g.rssMb]);
    sb(['provider', 'remove', 'bench/email/sg503', '--yes']);
    await s.close();
  }
}

const pgVersion = [];
for (const store of stores) {
  storeName = store === 'postgres' ? 'PostgreSQL' : 'SQLite';
  if (store === 'sqlite') {
    env = { ...env, SWITCHBOARD_STORE: path.join(dir, 'sb.db') };
    await cases();
    continue;
  }
  const pg = await privatePostgres();
  pgVersion.push(pg.version);
  env = { ...env, SWITCHBOARD_STORE: pg.url };
  try {
    await cases();
  } finally {
    pg.stop();
  }
}

// Side by side: each case's runs on every store together, cases in the order they first ran.
const caseKey = ({ row }) => `${row[0]}|${row[1]}`;
const order = [...new Set(results.map(caseKey))];
results.sort((a, b) => order.indexOf(caseKey(a)) - order.indexOf(caseKey(b)));
console.log(`commit ${commit}; ${os.cpus().length} CPUs; Node ${process.version}${pgVersion.length ? `; ${pgVersion[0]}` : ''}`);
console.log('| run | rows | store | sent | throughput: whole run (send phase) | time per message: whole run (send phase; CPU of the whole run) | peak RSS | load average at start (1/5/15 min) |');
console.log('| --- | ---: | --- | ---: | --- | ---: | ---: | --- |');
for (const { row, store, load } of results) {
  const [name, n, sent, thr, per, rss] = row;
  console.log(`| ${name} | ${n.toLocaleString('en')} | ${store} | ${sent.toLocaleString('en')} | ${thr} | ${per} | ${rss.toFixed(0)} MB | ${load.map((l) => l.toFixed(1)).join(' ')} |`);
}
fs.rmSync(dir, { recursive: true, force: true });
