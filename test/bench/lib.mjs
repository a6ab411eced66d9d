// Shared by the benches (test/bench/*.bench.mjs): the SMTP sink, timing of child processes (wall and CPU),
// statistics over rounds, the recipient CSV, and a store made through the product's own core functions.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const binPath = path.join(root, 'bin', 'switchboard');

// smtp-server waits 100 ms before its greeting to catch clients that talk too soon (SMTPConnection#init); a
// bench sink greets at once, or every new connection would cost 100 ms that no real relay charges.
SMTPConnection.prototype.init = function init() {
  this._setListeners(() => this.connectionReady());
};

/**
 * A plain SMTP sink on 127.0.0.1 (no TLS, no AUTH, no reverse DNS lookup of the client, greeting at once) that
 * answers each DATA after `latencyMs` and records arrival times (performance.now() ms).
 * @returns {{ port: number, arrivals: number[], close: () => Promise<void> }}
 */
export async function smtpSink(latencyMs = 0) {
  const arrivals = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, _session, cb) {
      arrivals.push(performance.now());
      stream.on('data', () => {});
      stream.on('end', () => (latencyMs ? setTimeout(() => cb(null, 'OK'), latencyMs) : cb(null, 'OK')));
    },
  });
  server.on('error', () => {});
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.server.address().port, arrivals, close: () => new Promise((r) => server.close(r)) };
}

/** Writes `<dir>/<name>` with a header `email,name,code` and `rows` recipients user<i>@example.com; returns its path. */
export function writeCsv(dir, name, rows) {
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

/**
 * A fresh temporary folder with the environment a switchboard child needs there (store, master key, HOME).
 * @returns {{ dir: string, env: Record<string, string>, cleanup: () => void }}
 */
export function workspace(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const env = { PATH: process.env.PATH, HOME: dir, SWITCHBOARD_STORE: path.join(dir, 'switchboard.db'), SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64'), NO_COLOR: '1' };
  return { dir, env, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Adds tenants `tenant-0001`… to the store at `storePath` through dist/core (one process, no CLI start-up per tenant). */
export async function addTenants(storePath, count) {
  const { openStore } = await import(path.join(root, 'dist/store/db.js'));
  const { SqliteSql } = await import(path.join(root, 'dist/store/sql.js'));
  const { sqliteStoreOps } = await import(path.join(root, 'dist/store/open.js'));
  const { addTenant } = await import(path.join(root, 'dist/core/tenants.js'));
  const { systemClock } = await import(path.join(root, 'dist/core/context.js'));
  const db = openStore(storePath);
  const ctx = { sql: new SqliteSql(db), store: sqliteStoreOps(db, storePath), storePath, clock: systemClock, env: {}, actor: 'bench' };
  for (let i = 1; i <= count; i++) await addTenant(ctx, `tenant-${String(i).padStart(4, '0')}`, `Tenant ${i}`);
  db.close();
}

/**
 * Runs `cmd args` under /usr/bin/time (asynchronously, so an in-process sink keeps answering) and resolves with
 * wall ms (spawn to exit; run in the repository root), CPU ms (user + system of the child, 10 ms resolution) and its output.
 * @throws if the child exits non-zero, with its stderr.
 */
export function timeChild(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const timeFile = path.join(os.tmpdir(), `sb-bench-time-${process.pid}-${randomBytes(4).toString('hex')}`);
    const t0 = performance.now();
    const child = spawn('/usr/bin/time', ['-o', timeFile, '-f', '%U %S', cmd, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => {
      const wallMs = performance.now() - t0;
      const times = fs.readFileSync(timeFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
      fs.rmSync(timeFile, { force: true });
      if (code !== 0) return reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${code}: ${err.slice(0, 2000)}`));
      resolve({ wallMs, cpuMs: (times[0] + times[1]) * 1000, stdout: Buffer.concat(out).toString('utf8') });
    });
  });
}

/** Median of a non-empty list of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** "median (min–max)" with `digits` decimals and a unit, e.g. `412.3 ms (398.0–455.1)`. */
export function spread(xs, unit = 'ms', digits = 1) {
  return `${median(xs).toFixed(digits)} ${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

/** "median ratio (min–max)" of ratios paired round by round: a[i] / b[i]. */
export function pairedRatio(a, b) {
  const r = a.map((x, i) => x / b[i]);
  return `${median(r).toFixed(2)}× (${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)})`;
}

/** The machine's 1-minute load average and CPU count, to print next to every figure. */
export function machineLoad() {
  return `load average ${os.loadavg()[0].toFixed(2)} on ${os.cpus().length} CPUs`;
}
