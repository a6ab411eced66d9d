// Start-up budget (DESIGN §8): `switchboard tenant list` on a store of 1,000 tenants against `node -e ""`,
// target ratio ≤ 1.5. Both are spawned N times, interleaved (so load changes on the machine hit both alike),
// after a few warm-up runs; the figure is the ratio of the medians. Needs a build (`npm run bench` does it).
// Two reference programs run in the same rounds (startup-floor.mjs: better-sqlite3 printing the same 1,000
// tenants, then the same with commander parsing the line): they show how much of the time is Node and those
// two libraries rather than switchboard.
// Usage: node test/bench/startup.bench.mjs [runs]   (default 30)
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addTenants, median, root } from './lib.mjs';

const runs = Number(process.argv[2] ?? 30);
const TENANTS = 1000;
const TARGET = 1.5;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-startup-'));
const store = path.join(dir, 'switchboard.db');
try {
  // The store is made once, through the product's own core functions.
  await addTenants(store, TENANTS);

  const env = { PATH: process.env.PATH, HOME: dir, SWITCHBOARD_STORE: store, SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64'), NO_COLOR: '1' };
  const commands = {
    'node -e ""': [process.execPath, ['-e', '']],
    'switchboard tenant list': [process.execPath, [path.join(root, 'bin', 'switchboard'), 'tenant', 'list']],
    'floor: better-sqlite3': [process.execPath, [path.join(root, 'test', 'bench', 'startup-floor.mjs')]],
    'floor: better-sqlite3 + commander': [process.execPath, [path.join(root, 'test', 'bench', 'startup-floor.mjs'), 'commander']],
  };
  const time = ([cmd, args]) => {
    const start = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return { ms, stdout: r.stdout.toString() };
  };
  const listed = time(commands['switchboard tenant list']).stdout.split('\n').filter((l) => l.includes('tenant-')).length;
  if (listed !== TENANTS) throw new Error(`tenant list printed ${listed} tenants, expected ${TENANTS}`);
  for (let i = 0; i < 3; i++) for (const c of Object.values(commands)) time(c);
  const samples = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  for (let i = 0; i < runs; i++) for (const [k, c] of Object.entries(commands)) samples[k].push(time(c).ms);
  const base = median(samples['node -e ""']);
  const cli = median(samples['switchboard tenant list']);
  const ratio = cli / base;
  console.log(`node -e ""                          median ${base.toFixed(1)} ms (${runs} runs)`);
  console.log(`switchboard tenant list (${TENANTS} tenants) median ${cli.toFixed(1)} ms (${runs} runs)`);
  for (const k of ['floor: better-sqlite3', 'floor: better-sqlite3 + commander']) {
    const m = median(samples[k]);
    console.log(`  reference ${k.padEnd(34)} median ${m.toFixed(1)} ms, ratio ${(m / base).toFixed(2)}`);
  }
  console.log(`ratio ${ratio.toFixed(2)} (target ≤ ${TARGET}) ${ratio <= TARGET ? 'within budget' : 'OVER BUDGET'}; ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(2)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
