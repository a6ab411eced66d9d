/**
 * The one object through which core code reaches the outside world (DESIGN §9): the store, the clock,
 * the environment (for key lookup), and who is acting (for the audit log). No `process`, `console` or
 * `Date.now()` in core code: everything comes in here, so tests can run core functions with fakes.
 */
import type { Sql } from '../store/sql.js';
import type { StoreOps } from '../store/open.js';

/**
 * Time and randomness source. `sleep` resolves after `ms` milliseconds, or early (without throwing) when
 * `signal` aborts. `random` returns a number in [0, 1) (backoff jitter).
 */
export interface Clock {
  now(): Date;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  random(): number;
}

/** Shared dependencies of core services. */
export interface CoreContext {
  /** The store's executor: repositories in `src/store/` take it; core code holds no SQL (DESIGN §3). */
  sql: Sql;
  /** What is done to the store itself where the engines differ (write check, checkpoint; see `StoreOps`). */
  store: StoreOps;
  /** Where the store is, for messages: the absolute path of the store file, or a PostgreSQL URL without password. */
  storePath: string;
  clock: Clock;
  /** Environment used to find the master key (SWITCHBOARD_MASTER_KEY, SWITCHBOARD_KEY_FILE). */
  env: NodeJS.ProcessEnv;
  /** `user@host` recorded in the audit log. */
  actor: string;
}

/** The real clock. */
export const systemClock: Clock = {
  // eslint-disable-next-line no-restricted-syntax -- the one place the real time enters core code
  now: () => new Date(),
  // eslint-disable-next-line no-restricted-syntax -- the one place randomness for jitter enters core code
  random: () => Math.random(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    }),
};

/**
 * The real clock shifted so that it read `start` when this was called (the `SWITCHBOARD_NOW` test hook):
 * time still passes, sleeps are real.
 */
export function shiftedClock(start: Date): Clock {
  const offset = start.getTime() - systemClock.now().getTime();
  return { now: () => new Date(systemClock.now().getTime() + offset), sleep: systemClock.sleep, random: systemClock.random };
}

/** The channels switchboard sends on. */
export const CHANNELS = ['email', 'sms', 'whatsapp'] as const;
/** One of {@link CHANNELS}. */
export type Channel = (typeof CHANNELS)[number];

/** Parses a channel name. Returns null if it is not one of {@link CHANNELS}. */
export function asChannel(value: string): Channel | null {
  return (CHANNELS as readonly string[]).includes(value) ? (value as Channel) : null;
}
