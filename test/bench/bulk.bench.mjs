// Bulk-send benchmarks (issue 5), each a real `node bin/switchboard` run measured with /usr/bin/time (peak RSS):
//  1. per-message mode into the outbox adapter: tool overhead per message (journal + dispatch + the file write)
//  2. per-message mode into a local SMTP sink (smtp-server) answering after 0 ms and after 50 ms
//  3. `--dry-run` of a 1,000,000-row CSV: peak RSS
//  4. `--rate 200` for 20 s: the most deliveries the sink saw in any sliding one-second window, and the mean
//  5. the sendgrid adapter against a local SendGrid-like server (node:http, 202 + X-Message-Id): personalization
//     batches (100,000 rows), and one request per row (`batchSize=1`) at 0 ms and 50 ms server latency
// Env: BENCH_QUICK=1 runs smaller sizes.
import { spawnSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import http from 'node:http';
import { SMTPServer } from 'smtp-server';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'switchboard');
const quick = process.env.BENCH_QUICK === '1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-bulk-'));
const env = {
  PATH: process.env.PATH,
  HOME: dir,
  SWITCHBOARD_STORE: path.join(dir, 'sb.db'),
  SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64'),
  NO_COLOR: '1',
};

function sb(args) {
  const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`switchboard ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** Runs switchboard under /usr/bin/time; resolves with its summary, wall ms and peak RSS (MB). */
function timed(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'RSS_KB=%M', process.execPath, bin, '--json', '--quiet', ...args], { env });
    let out = '';
    let err = '';
    const t0 = performance.now();
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) return reject(new Error(`exit ${code}: ${err}`));
      const lines = out.trim().split('\n');
      const summary = JSON.parse(lines[lines.length - 1]);
      resolve({ summary, ms, rssMb: Number(/RSS_KB=(\d+)/.exec(err)[1]) / 1024 });
    });
  });
}

function csv(name, rows) {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, 'email,name,code\n');
  let buf = '';
  for (let i = 1; i <= rows; i++) {
    buf += `user${i}@example.com,User ${i},C-${i}\n`;
    if (buf.length > 1 << 20) {
      fs.writeSync(fd, buf);
      buf = '';
    }
  }
  fs.writeSync(fd, buf);
  fs.closeSync(fd);
  return file;
}

/** A plain SMTP sink on 127.0.0.1 that answers DATA after `latencyMs` and records the arrival times. */
async function sink(latencyMs) {
  const arrivals = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, cb) {
      arrivals.push(performance.now());
      stream.on('data', () => {});
      stream.on('end', () => setTimeout(() => cb(null, 'OK'), latencyMs));
    },
  });
  server.on('error', () => {});
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.server.address().port, arrivals, close: () => new Promise((r) => server.close(r)) };
}

const rows = [];
const tpl = path.join(dir, 't.txt');
fs.writeFileSync(tpl, 'Hello {{name}}, your code is {{code}}.\n');
sb(['tenant', 'add', 'bench', '--name', 'Bench']);
const send = (file, extra = []) => ['send', 'batch', '--tenant', 'bench', '--csv', file, '--template-file', tpl, '--subject', 'Hi {{name}}', ...extra];

// 1. outbox
{
  const n = quick ? 5_000 : 20_000;
  sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'outbox', '--name', 'outbox', '--set', `dir=${path.join(dir, 'outbox')}`]);
  const r = await timed(send(csv('outbox.csv', n), ['--concurrency', '16']));
  rows.push(['outbox, per message, concurrency 16', n, r.summary.sent, `${(r.summary.sent / (r.summary.elapsedMs / 1000)).toFixed(0)} msg/s`, `${(r.summary.elapsedMs / n).toFixed(3)} ms/msg`, r.rssMb]);
  sb(['provider', 'remove', 'bench/email/outbox', '--yes']);
}

// 2. SMTP sink at 0 ms and 50 ms
for (const [latency, n, conc] of [
  [0, quick ? 2_000 : 10_000, 16],
  [50, quick ? 800 : 3_000, 16],
]) {
  const s = await sink(latency);
  sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'smtp', '--name', `sink${latency}`, '--set', 'host=127.0.0.1', '--set', `port=${s.port}`, '--set', 'tls=none', '--set', 'from=bench@example.com']);
  const r = await timed(send(csv(`smtp${latency}.csv`, n), ['--concurrency', String(conc)]));
  const rate = r.summary.sent / (r.summary.elapsedMs / 1000);
  const expect = latency ? ` (concurrency/latency = ${(conc / (latency / 1000)).toFixed(0)})` : '';
  rows.push([`smtp sink ${latency} ms, per message, concurrency ${conc}`, n, r.summary.sent, `${rate.toFixed(0)} msg/s${expect}`, `${(r.summary.elapsedMs / n).toFixed(3)} ms/msg`, r.rssMb]);
  sb(['provider', 'remove', `bench/email/sink${latency}`, '--yes']);
  await s.close();
}

// 3. 1,000,000-row dry run
{
  const n = quick ? 200_000 : 1_000_000;
  const r = await timed(send(csv('million.csv', n), ['--dry-run']));
  rows.push([`--dry-run`, n, 0, `${(n / (r.ms / 1000)).toFixed(0)} rows/s validated`, '-', r.rssMb]);
}

// 4. rate accuracy
{
  const secs = quick ? 6 : 20;
  const rate = 200;
  const s = await sink(0);
  sb(['provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'smtp', '--name', 'rated', '--set', 'host=127.0.0.1', '--set', `port=${s.port}`, '--set', 'tls=none', '--set', 'from=bench@example.com']);
  const n = rate * secs;
  const r = await timed(send(csv('rate.csv', n), ['--concurrency', '16', '--rate', String(rate)]));
  const t = s.arrivals.sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; j < t.length; j++) {
    while (t[j] - t[i] >= 1000) i++;
    max = Math.max(max, j - i + 1);
  }
  // Mean over the run: n messages over the span from the first to the last arrival, plus one second
  // (the first `rate` messages may start at once).
  const mean = (t.length - rate) / ((t[t.length - 1] - t[0]) / 1000);
  rows.push([`--rate ${rate} for ${secs} s (smtp sink)`, n, r.summary.sent, `max ${max} in any 1 s window; mean ${mean.toFixed(1)} msg/s (${(((mean - rate) / rate) * 100).toFixed(1)} %)`, '-', r.rssMb]);
  sb(['provider', 'remove', 'bench/email/rated', '--yes']);
  await s.close();
}

// 5. sendgrid: a local server speaking the mail send wire format (202, X-Message-Id), answering after `latencyMs`.
async function sendGridLike(latencyMs) {
  const seen = { requests: 0, personalizations: 0 };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      seen.requests++;
      seen.personalizations += body.personalizations.length;
      setTimeout(() => {
        res.writeHead(202, { 'X-Message-Id': `bench-${seen.requests}` });
        res.end();
      }, latencyMs);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => new Promise((r) => (server.closeAllConnections(), server.close(r))) };
}
for (const [label, latency, n, conc, extra] of [
  ['personalization batches (1000 per request)', 0, quick ? 20_000 : 100_000, 4, []],
  ['one request per row (batchSize=1)', 0, quick ? 2_000 : 10_000, 16, ['--set', 'batchSize=1']],
  ['one request per row (batchSize=1)', 50, quick ? 800 : 3_000, 16, ['--set', 'batchSize=1']],
]) {
  const s = await sendGridLike(latency);
  const name = `sg${latency}${extra.length ? 'single' : 'batch'}`;
  spawnSync(process.execPath, [bin, 'provider', 'add', '--tenant', 'bench', '--channel', 'email', '--kind', 'sendgrid', '--name', name, '--set', 'from=bench@example.com', '--set', `endpoint=${s.url}`, ...extra, '--secret-env', 'apiKey=SG_BENCH'], {
    env: { ...env, SG_BENCH: `SG.${randomBytes(11).toString('hex')}.${randomBytes(22).toString('hex')}` },
  });
  const r = await timed(send(csv(`${name}.csv`, n), ['--concurrency', String(conc), '--new-batch']));
  const rate = r.summary.sent / (r.summary.elapsedMs / 1000);
  const expect = latency ? ` (concurrency/latency = ${(conc / (latency / 1000)).toFixed(0)})` : '';
  const unit = extra.length ? 'msg/s' : `recipients/s in ${s.seen.requests} requests`;
  rows.push([`sendgrid-like server ${latency} ms, ${label}, concurrency ${conc}`, n, r.summary.sent, `${rate.toFixed(0)} ${unit}${expect}`, `${(r.summary.elapsedMs / n).toFixed(3)} ms/msg`, r.rssMb]);
  sb(['provider', 'remove', `bench/email/${name}`, '--yes']);
  await s.close();
}

console.log('| run | rows | sent | throughput | time per message (whole run) | peak RSS |');
console.log('| --- | ---: | ---: | --- | ---: | ---: |');
for (const [name, n, sent, thr, per, rss] of rows) console.log(`| ${name} | ${n.toLocaleString('en')} | ${sent.toLocaleString('en')} | ${thr} | ${per} | ${rss.toFixed(0)} MB |`);
fs.rmSync(dir, { recursive: true, force: true });
