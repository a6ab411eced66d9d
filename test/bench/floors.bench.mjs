// switchboard against floors and a peer, in the same rounds (issue 15). Each round runs switchboard and its
// floor back to back (the order alternating round by round), so load changes on a shared machine hit both
// alike; the figures are medians with ranges, and each ratio is taken pair by pair, then its median.
//  (a) `send test --json` over SMTP, vs the one-send floor (floor.mjs send: better-sqlite3 + nodemailer), wall
//      and CPU; and vs swaks (Debian package `swaks`; skipped with a note when absent), wall.   target ≤ 1.25×
//  (b) `send batch`, 5,000 rows, concurrency 4, sink answering at once: CPU per message vs a pooled nodemailer
//      script with the same pool (floor.mjs bulk).                                                target ≤ 1.25×
//  (c) `send batch`, 1,000 rows, concurrency 4, sink answering after 50 ms: wall vs the same floor.
//  (d) `tenant list` with 1,000 tenants vs `node -e "require('better-sqlite3')"`: wall; target ≤ floor + 15 ms.
// The SMTP sink (lib.mjs) does no reverse DNS lookup and greets at once. Needs a build (`npm run bench`).
// Usage: node test/bench/floors.bench.mjs   Env: BENCH_ROUNDS (single-process cases, default 15),
//        BENCH_BULK_ROUNDS (bulk cases, default 3), BENCH_ONLY=a,b,c,d
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { addTenants, binPath, machineLoad, median, pairedRatio, root, smtpSink, spread, timeChild, workspace, writeCsv } from './lib.mjs';

const rounds = Number(process.env.BENCH_ROUNDS ?? 15);
const bulkRounds = Number(process.env.BENCH_BULK_ROUNDS ?? 3);
const only = process.env.BENCH_ONLY?.split(',');
const want = (c) => !only || only.includes(c);
const node = process.execPath;
const floor = path.join(root, 'test', 'bench', 'floor.mjs');
const swaks = ['/usr/bin/swaks', '/usr/local/bin/swaks'].find((p) => fs.existsSync(p));

const ws = workspace('sb-bench-floors-');
const listWs = workspace('sb-bench-floors-list-');
const sink0 = await smtpSink(0);
const sink50 = await smtpSink(50);
const table = [];
const notes = [];
console.log(`start: ${machineLoad()}`);

/** Runs switchboard synchronously in the send workspace (setup only). */
function sb(args) {
  const r = spawnSync(node, [binPath, ...args], { env: ws.env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`switchboard ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/**
 * Runs each named command once per round, in an order rotated round by round, after `warmup` unmeasured runs.
 * `check(name, result)` may throw to reject a run. Resolves with { name: [{ wallMs, cpuMs }] }.
 */
async function paired(commands, n, warmup, check = () => {}) {
  const names = Object.keys(commands);
  for (let i = 0; i < warmup; i++) for (const k of names) await commands[k]();
  const out = Object.fromEntries(names.map((k) => [k, []]));
  for (let i = 0; i < n; i++) {
    const order = i % 2 ? [...names].reverse() : names;
    for (const k of order) {
      const r = await commands[k]();
      check(k, r);
      out[k].push(r);
    }
  }
  return out;
}
const wall = (rs) => rs.map((r) => r.wallMs);
const cpu = (rs) => rs.map((r) => r.cpuMs);

try {
  sb(['tenant', 'add', 'fast', '--name', 'Sink at once']);
  sb(['tenant', 'add', 'slow', '--name', 'Sink after 50 ms']);
  for (const [tenant, sink] of [['fast', sink0], ['slow', sink50]]) {
    sb(['provider', 'add', '--tenant', tenant, '--channel', 'email', '--kind', 'smtp', '--set', 'host=127.0.0.1', '--set', `port=${sink.port}`, '--set', 'tls=none', '--set', 'from=bench@example.com']);
  }
  const tpl = path.join(ws.dir, 'body.txt');
  fs.writeFileSync(tpl, 'Hello {{name}}, your code is {{code}}.\n');

  if (want('a')) {
    const floorDb = path.join(ws.dir, 'floor.db');
    const commands = {
      switchboard: () => timeChild(node, [binPath, 'send', 'test', '--tenant', 'fast', '--channel', 'email', '--to', 'user@example.com', '--json'], ws.env),
      floor: () => timeChild(node, [floor, 'send', String(sink0.port), floorDb], ws.env),
    };
    if (swaks) {
      commands.swaks = () =>
        timeChild(swaks, ['--server', `127.0.0.1:${sink0.port}`, '--to', 'user@example.com', '--from', 'bench@example.com', '--header', 'Subject: switchboard test message', '--body', 'This is a test message.', '--silent', '2'], ws.env);
    } else {
      notes.push('swaks is not installed (Debian package `swaks`): the peer row of (a) is skipped.');
    }
    const before = sink0.arrivals.length;
    const r = await paired(commands, rounds, 2, (k, res) => {
      if (k === 'switchboard' && JSON.parse(res.stdout).status !== 'sent') throw new Error(`send test did not send: ${res.stdout}`);
    });
    const expected = (rounds + 2) * Object.keys(commands).length;
    if (sink0.arrivals.length - before !== expected) throw new Error(`(a) sink saw ${sink0.arrivals.length - before} messages, expected ${expected}`);
    table.push([`(a) \`send test --json\` over SMTP, wall (${rounds} rounds)`, spread(wall(r.switchboard)), `floor ${spread(wall(r.floor))}`, pairedRatio(wall(r.switchboard), wall(r.floor)), '≤ 1.25×']);
    table.push([`(a) same, CPU (user + system)`, spread(cpu(r.switchboard), 'ms', 0), `floor ${spread(cpu(r.floor), 'ms', 0)}`, pairedRatio(cpu(r.switchboard), cpu(r.floor)), '≤ 1.25×']);
    if (swaks) table.push([`(a) same, wall, against swaks`, spread(wall(r.switchboard)), `swaks ${spread(wall(r.swaks))}`, pairedRatio(wall(r.switchboard), wall(r.swaks)), '-']);
  }

  for (const [key, label, tenant, sink, n, measure] of [
    ['b', 'bulk SMTP, 5,000 rows, concurrency 4, sink answers at once: CPU per message', 'fast', sink0, 5000, 'cpu'],
    ['c', 'bulk SMTP, 1,000 rows, concurrency 4, sink answers after 50 ms: wall', 'slow', sink50, 1000, 'wall'],
  ]) {
    if (!want(key)) continue;
    const csv = writeCsv(ws.dir, `rows-${n}.csv`, n);
    const before = sink.arrivals.length;
    const r = await paired(
      {
        switchboard: () =>
          timeChild(node, [binPath, '--json', '--quiet', 'send', 'batch', '--tenant', tenant, '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{name}}', '--concurrency', '4', '--new-batch'], ws.env),
        floor: () => timeChild(node, [floor, 'bulk', String(sink.port), csv, '4'], ws.env),
      },
      bulkRounds,
      0,
      (k, res) => {
        const last = JSON.parse(res.stdout.trim().split('\n').at(-1));
        if ((k === 'switchboard' ? last.sentCount : last.sent) !== n) throw new Error(`(${key}) ${k} sent ${JSON.stringify(last)}, expected ${n}`);
      },
    );
    if (sink.arrivals.length - before !== 2 * n * bulkRounds) throw new Error(`(${key}) sink saw ${sink.arrivals.length - before} messages, expected ${2 * n * bulkRounds}`);
    if (measure === 'cpu') {
      const per = (rs) => cpu(rs).map((ms) => ms / n);
      table.push([`(${key}) ${label} (${bulkRounds} rounds)`, `${spread(per(r.switchboard), 'ms', 3)}; ${(n / (median(wall(r.switchboard)) / 1000)).toFixed(0)} msg/s`, `pooled nodemailer ${spread(per(r.floor), 'ms', 3)}; ${(n / (median(wall(r.floor)) / 1000)).toFixed(0)} msg/s`, pairedRatio(per(r.switchboard), per(r.floor)), '≤ 1.25×']);
    } else {
      const secs = (rs) => wall(rs).map((ms) => ms / 1000);
      table.push([`(${key}) ${label} (${bulkRounds} rounds)`, spread(secs(r.switchboard), 's', 2), `pooled nodemailer ${spread(secs(r.floor), 's', 2)}`, pairedRatio(wall(r.switchboard), wall(r.floor)), '-']);
    }
  }

  if (want('d')) {
    await addTenants(listWs.env.SWITCHBOARD_STORE, 1000);
    const r = await paired(
      {
        switchboard: () => timeChild(node, [binPath, 'tenant', 'list'], listWs.env),
        floor: () => timeChild(node, ['-e', "require('better-sqlite3')"], listWs.env),
      },
      rounds,
      3,
      (k, res) => {
        if (k === 'switchboard' && res.stdout.split('\n').filter((l) => l.includes('tenant-')).length !== 1000) throw new Error('tenant list did not print 1,000 tenants');
      },
    );
    const extra = median(wall(r.switchboard)) - median(wall(r.floor));
    table.push([`(d) \`tenant list\`, 1,000 tenants, wall (${rounds} rounds)`, spread(wall(r.switchboard)), `\`node -e "require('better-sqlite3')"\` ${spread(wall(r.floor))}`, `${pairedRatio(wall(r.switchboard), wall(r.floor))}; +${extra.toFixed(1)} ms`, '≤ floor + 15 ms']);
  }

  console.log('| case | switchboard, median (range) | floor / peer, median (range) | ratio, paired median (range) | target |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const row of table) console.log(`| ${row.join(' | ')} |`);
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`end: ${machineLoad()}`);
} finally {
  await sink0.close();
  await sink50.close();
  ws.cleanup();
  listWs.cleanup();
}
