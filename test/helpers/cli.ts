// Helpers to drive the built `bin/switchboard` binary as a user would: a separate process,
// a minimal clean environment (nothing inherited from the developer's shell) and a temp store.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createTestDatabaseSync, testBackend } from './postgres.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const binPath = path.join(repoRoot, 'bin', 'switchboard');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  /** Extra environment variables (merged over the minimal clean env). `undefined` values are dropped. */
  env?: Record<string, string | undefined>;
  /** Text written to the child's stdin; without it stdin is closed ('ignore'). */
  input?: string;
  /** Kept for call-site readability; runCli never throws on a non-zero exit. */
  reject?: false;
  /** Kill the child after this many ms (default 30 s). */
  timeoutMs?: number;
}

let defaultHome: string | undefined;
function fallbackHome(): string {
  if (defaultHome === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-home-'));
    defaultHome = dir;
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return defaultHome;
}

/** The minimal environment every CLI run gets: no inherited SWITCHBOARD_* variables. */
export function baseEnv(home?: string): Record<string, string> {
  const h = home ?? fallbackHome();
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: h,
    XDG_DATA_HOME: path.join(h, '.local', 'share'),
    XDG_CONFIG_HOME: path.join(h, '.config'),
    TMPDIR: os.tmpdir(),
    LANG: 'C.UTF-8',
    NO_COLOR: '1',
  };
}

/** Run `node bin/switchboard ...args`. Never throws on a non-zero exit code. */
export async function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const env: Record<string, string> = baseEnv(opts.env?.HOME);
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const result = await execa(process.execPath, [binPath, ...args], {
    cwd: repoRoot,
    env,
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 30_000,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });
  if (result.timedOut) {
    throw new Error(`switchboard ${args.join(' ')} timed out\nstdout: ${String(result.stdout)}\nstderr: ${String(result.stderr)}`);
  }
  return {
    exitCode: result.exitCode ?? (result.signal ? 128 : -1),
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
  };
}

/** Parse the stdout of a `--json` run; on failure the error shows the whole result. */
export function parseJson<T = unknown>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.exitCode})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/** A readable description of a result, for assertion messages. */
export function describe(r: CliResult): string {
  return `exit ${r.exitCode}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

export interface Workspace {
  dir: string;
  /** The store: a SQLite file in `dir`, or (SWITCHBOARD_TEST_BACKEND=postgres) a new database's URL. */
  store: string;
  /** The store's engine (see `testBackend`). */
  backend: 'sqlite' | 'postgres';
  key: string;
  home: string;
  env: { SWITCHBOARD_STORE: string; SWITCHBOARD_MASTER_KEY: string; HOME: string };
  /** runCli with this workspace's env merged under `opts.env`. */
  run(args: string[], opts?: RunCliOptions): Promise<CliResult>;
  /** Write a file inside the workspace and return its absolute path. */
  file(name: string, content: string | Buffer): string;
  cleanup(): void;
}

export function randomKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * A new workspace: a temporary folder with a HOME, a random master key and an empty store: a SQLite file
 * `sb.db` in the folder, or, when the run's backend is PostgreSQL (`SWITCHBOARD_TEST_BACKEND=postgres`, see
 * test/vitest.config.ts), a new database of the run's server (`sqlite: true` keeps a SQLite file for the
 * tests that are about the file itself).
 */
export function makeWorkspace(opts: { sqlite?: boolean } = {}): Workspace {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-'));
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const backend = opts.sqlite === true ? 'sqlite' : testBackend();
  const store = backend === 'postgres' ? createTestDatabaseSync(path.basename(dir)).url : path.join(dir, 'sb.db');
  const key = randomKey();
  const env = { SWITCHBOARD_STORE: store, SWITCHBOARD_MASTER_KEY: key, HOME: home };
  return {
    dir,
    store,
    backend,
    key,
    home,
    env,
    run: (args, opts = {}) => runCli(args, { ...opts, env: { ...env, ...opts.env } }),
    file(name, content) {
      const p = path.join(dir, name);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
      return p;
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Parse a JSON Lines stdout (one JSON document per non-empty line). */
export function parseJsonLines<T = unknown>(r: CliResult): T[] {
  const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
  try {
    return lines.map((l) => JSON.parse(l) as T);
  } catch {
    throw new Error(`stdout is not JSON Lines (exit ${r.exitCode})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/**
 * Starts `node bin/switchboard ...args` with the workspace's env as a separate process the test can signal
 * (SIGINT, SIGTERM, SIGKILL). Never rejects on a non-zero exit; killed after `timeoutMs` (default 60 s).
 */
export function spawnCli(ws: Workspace, args: string[], timeoutMs = 60_000) {
  return execa(process.execPath, [binPath, ...args], {
    cwd: repoRoot,
    env: { ...baseEnv(ws.home), ...ws.env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: timeoutMs,
  });
}
