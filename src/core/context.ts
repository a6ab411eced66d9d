/**
 * The one object through which core code reaches the outside world (DESIGN §9): the store, the clock,
 * the environment (for key lookup), and who is acting (for the audit log). No `process`, `console` or
 * `Date.now()` in core code: everything comes in here, so tests can run core functions with fakes.
 */
import type { Db } from '../store/db.js';

/** Time source. `sleep` resolves after `ms` milliseconds, or early (without throwing) when `signal` aborts. */
export interface Clock {
  now(): Date;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Shared dependencies of core services. */
export interface CoreContext {
  db: Db;
  /** Absolute path of the store file. */
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

/** The channels switchboard sends on. */
export const CHANNELS = ['email', 'sms', 'whatsapp'] as const;
/** One of {@link CHANNELS}. */
export type Channel = (typeof CHANNELS)[number];

/** Parses a channel name. Returns null if it is not one of {@link CHANNELS}. */
export function asChannel(value: string): Channel | null {
  return (CHANNELS as readonly string[]).includes(value) ? (value as Channel) : null;
}
