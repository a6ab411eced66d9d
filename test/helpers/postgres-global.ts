// vitest globalSetup: one private PostgreSQL server for the whole run (see postgres.ts), stopped at the end.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { TestProject } from 'vitest/node';
import type { TestPostgres } from './postgres.js';

/**
 * Where Debian puts the server's binaries: /usr/lib/postgresql/<major>/bin, the newest major installed (15 on
 * Debian 12, 17 on Debian 13); override with SWITCHBOARD_TEST_PG_BIN.
 */
const PG_BIN = process.env.SWITCHBOARD_TEST_PG_BIN || newestPgBin();

function newestPgBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = fs.existsSync(root) ? fs.readdirSync(root).filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => b - a) : [];
  return path.join(root, String(majors[0] ?? 15), 'bin');
}

/** The one role that logs in with a password (scram-sha-256); every other role is trusted. */
const PASSWORD_ROLE = 'sb_pw';

/** A free TCP port on 127.0.0.1 (the kernel's choice). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs a server binary, as `postgres` when we are root. */
async function asPostgres(bin: string, args: string[]): Promise<void> {
  const file = path.join(PG_BIN, bin);
  if (process.getuid?.() === 0) await execa('runuser', ['-u', 'postgres', '--', file, ...args], { stdin: 'ignore' });
  else await execa(file, args, { stdin: 'ignore' });
}

/**
 * Starts a private server: initdb (trust auth) in a new temporary folder, pg_ctl start on 127.0.0.1:<free port>
 * with its socket in that folder. @returns its facts and `stop()` (fast shutdown, folder removed).
 */
export async function startPostgres(): Promise<TestPostgres & { stop(): Promise<void> }> {
  if (!fs.existsSync(path.join(PG_BIN, 'initdb'))) {
    throw new Error(`PostgreSQL server binaries not found in ${PG_BIN}: install Debian's postgresql package (bash .ci/system-deps)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-pg-'));
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  fs.mkdirSync(data, { mode: 0o700 });
  if (process.getuid?.() === 0) await execa('chown', ['-R', 'postgres:postgres', dir]);
  const logFile = path.join(dir, 'server.log');
  const port = await freePort();
  await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
  // Trust for every role but PASSWORD_ROLE, which must give its password (the password-source tests): first match wins.
  const hba = path.join(data, 'pg_hba.conf');
  fs.writeFileSync(hba, `host all ${PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n${fs.readFileSync(hba, 'utf8')}`);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c log_connections=on -c max_connections=200`;
  await asPostgres('pg_ctl', ['-D', data, '-l', logFile, '-o', opts, '-w', 'start']);
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    logFile,
    async stop() {
      try {
        await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres();
  project.provide('postgres', { adminUrl: server.adminUrl, port: server.port, logFile: server.logFile });
  return () => server.stop();
}
