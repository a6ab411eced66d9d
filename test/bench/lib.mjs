// Shared by the benches (test/bench/*.bench.mjs): the SMTP sink, timing of child processes (wall and CPU),
// statistics over rounds, the recipient CSV, a store made through the product's own core functions, and a
// private PostgreSQL server.
import { Buffer } from 'node:buffer';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
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

/** The newest server installed under /usr/lib/postgresql (as the tests pick it); SWITCHBOARD_TEST_PG_BIN overrides. */
function newestPgBin() {
  if (process.env.SWITCHBOARD_TEST_PG_BIN) return process.env.SWITCHBOARD_TEST_PG_BIN;
  const base = '/usr/lib/postgresql';
  const majors = fs.existsSync(base) ? fs.readdirSync(base).filter((d) => /^\d+$/.test(d)).map(Number).sort((x, y) => y - x) : [];
  return path.join(base, String(majors[0] ?? 15), 'bin');
}

/** A free loopback TCP port (listen on 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts a private PostgreSQL server (Debian's package, the newest major under /usr/lib/postgresql): initdb in a
 * fresh temporary folder (trust authentication, user `postgres`), loopback on a free port, its socket in that folder,
 * durable commits as a production server has them (fsync and synchronous_commit on). Run as root, the server runs as
 * the `postgres` user (it refuses root), so the folder is handed to that user.
 * @returns {Promise<{ url: string, version: string, stop: () => void }>} `url` is `postgres://postgres@127.0.0.1:<port>/postgres`
 *   (no password); `stop()` stops the server (fast shutdown), waits for it, and removes the folder.
 * @throws if initdb or pg_ctl exits non-zero, with its stderr.
 */
export async function privatePostgres() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-pg-'));
  const pgBin = newestPgBin();
  const asRoot = process.getuid?.() === 0;
  const run = (binName, args) => {
    const file = path.join(pgBin, binName);
    const r = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', file, ...args], { encoding: 'utf8' }) : spawnSync(file, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${binName}: exit ${r.status}\n${r.stderr}`);
    return r.stdout;
  };
  fs.chmodSync(dir, 0o755);
  const pgDir = path.join(dir, 'pg');
  fs.mkdirSync(pgDir, { mode: 0o700 });
  if (asRoot) spawnSync('chown', ['-R', 'postgres:postgres', dir]);
  const port = await freePort();
  run('initdb', ['-D', pgDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
  run('pg_ctl', ['-D', pgDir, '-l', path.join(dir, 'pg.log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, '-w', 'start']);
  const version = run('postgres', ['--version']).trim();
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, version, stop: () => {
      run('pg_ctl', ['-D', pgDir, '-m', 'fast', '-w', 'stop']);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
