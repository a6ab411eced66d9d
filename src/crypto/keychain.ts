/**
 * The OS keychain as a master-key source (DESIGN §4, notes/keychain.md): service `switchboard`, account = the
 * store's id, through `@napi-rs/keyring` pinned to the Secret Service. Every call runs in a child process
 * ({@link ./keychain-child.ts}) killed after {@link KEYCHAIN_TIMEOUT_MS}, because the library can hang forever.
 * The key travels only over the child's stdin/stdout pipes, never argv or the environment.
 */
import fs from 'node:fs';
import { childProcess } from '../lazy-node.js';
import { fileURLToPath } from 'node:url';

/** Hard limit (ms) for one keychain call, including the child's start-up (~0.1 s). */
export const KEYCHAIN_TIMEOUT_MS = 3000;

/** The keychain service name under which keys are stored. */
export const KEYCHAIN_SERVICE = 'switchboard';

/** Why the keychain could not be used: no session bus, no Secret Service daemon, locked, no answer in time, or other. */
export type KeychainProblem = 'no-bus' | 'no-daemon' | 'locked' | 'timeout' | 'error';

/** Outcome of a keychain call: a value (get), done (set/delete/probe), absent, or unavailable with a reason. */
export type KeychainResult =
  | { status: 'ok'; value: string }
  | { status: 'absent' }
  | { status: 'unavailable'; problem: KeychainProblem; detail: string };

const ABSENT_EXIT = 3;

/** The compiled child script: next to this module in dist/, or dist/'s copy when running from src/ (tests). */
function childScript(): string {
  const sibling = fileURLToPath(new URL('./keychain-child.js', import.meta.url));
  if (fs.existsSync(sibling)) return sibling;
  return fileURLToPath(new URL('../../dist/crypto/keychain-child.js', import.meta.url));
}

function classify(text: string): { problem: KeychainProblem; detail: string } {
  const line = text.trim().split('\n').pop() ?? '';
  if (/DBUS_SESSION_BUS_ADDRESS|Failed to connect to socket|autolaunch/i.test(line)) {
    return { problem: 'no-bus', detail: `no D-Bus session bus (${line})` };
  }
  if (/ServiceUnknown|org\.freedesktop\.secrets|not provided by any \.service/i.test(line)) {
    return { problem: 'no-daemon', detail: `no Secret Service daemon on the session bus (${line})` };
  }
  if (/locked|no result found|prompt|dismissed/i.test(line)) {
    return { problem: 'locked', detail: `the keyring is locked or has no default collection (${line})` };
  }
  return { problem: 'error', detail: line || 'the keychain helper failed without a message' };
}

/**
 * Runs one keychain operation in a child process with a hard {@link KEYCHAIN_TIMEOUT_MS} timeout (SIGKILL).
 * @param env the environment for the child (its DBUS_SESSION_BUS_ADDRESS selects the bus).
 * @param input for `set`: the text to store, written to the child's stdin.
 * Never throws: every failure is a `{status: 'unavailable'}` result.
 */
function call(op: 'get' | 'set' | 'delete' | 'probe', account: string, env: NodeJS.ProcessEnv, input?: string): KeychainResult {
  if (!env.DBUS_SESSION_BUS_ADDRESS) {
    // The library would say the same after loading; answering here saves the child process.
    return { status: 'unavailable', problem: 'no-bus', detail: 'no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)' };
  }
  const r = childProcess().spawnSync(process.execPath, [childScript(), op, account], {
    env,
    input: input ?? '',
    encoding: 'utf8',
    timeout: KEYCHAIN_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024,
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
    return {
      status: 'unavailable',
      problem: 'timeout',
      detail: `the keychain did not answer within ${KEYCHAIN_TIMEOUT_MS / 1000} s (a locked keyring waiting for an unlock prompt, or a bus that does not answer)`,
    };
  }
  if (r.error) return { status: 'unavailable', problem: 'error', detail: `cannot run the keychain helper: ${r.error.message}` };
  if (r.signal) return { status: 'unavailable', problem: 'error', detail: `the keychain helper was killed by ${r.signal}` };
  if (r.status === ABSENT_EXIT) return { status: 'absent' };
  if (r.status !== 0) return { status: 'unavailable', ...classify(r.stderr) };
  return { status: 'ok', value: r.stdout };
}

/** Reads the text stored for `account`. */
export function keychainGet(account: string, env: NodeJS.ProcessEnv): KeychainResult {
  return call('get', account, env);
}

/** Stores `text` for `account`, replacing any earlier value. */
export function keychainSet(account: string, text: string, env: NodeJS.ProcessEnv): KeychainResult {
  return call('set', account, env, text);
}

/** Removes the item for `account` (absent is fine). */
export function keychainDelete(account: string, env: NodeJS.ProcessEnv): KeychainResult {
  return call('delete', account, env);
}

/** Says whether the keychain answers, and whether it holds an item for `account`, without reading the value out. */
export function keychainProbe(account: string, env: NodeJS.ProcessEnv): KeychainResult {
  return call('probe', account, env);
}
