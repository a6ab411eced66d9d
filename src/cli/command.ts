/**
 * Helpers shared by the command modules: wiring an action to a {@link CliContext}, repeatable flags,
 * `key=value` parsing, examples in `--help`.
 */
import type { Command } from 'commander';
import { CliContext, type Io } from './context.js';
import { UsageError } from '../errors.js';
import { isBusy, mapSqliteError } from '../store/db.js';
import { parseDuration } from '../core/time.js';
import { asChannel, type Channel } from '../core/context.js';
import type { RetryPolicy } from '../core/dispatch.js';

/**
 * Wraps a command action: builds the context from the command's flags and closes the store afterwards.
 * `fn` receives the context, the positional arguments and the command's own options.
 */
export function action<O>(io: Io, fn: (cli: CliContext, args: string[], opts: O) => Promise<void> | void) {
  return async (...params: unknown[]): Promise<void> => {
    const command = params[params.length - 1] as Command;
    const opts = command.opts<O & object>();
    const args = params.slice(0, -2) as string[];
    const cli = await CliContext.from(io, command);
    try {
      await fn(cli, args, opts);
    } catch (err) {
      // A damaged store surfaces wherever a page is read: say so once, naming the store and the way to a diagnosis.
      // A lock held past the busy timeout: exit 4 naming the store.
      const code = String((err as { code?: unknown }).code);
      if (code.startsWith('SQLITE_CORRUPT') || isBusy(err)) throw mapSqliteError(err, cli.storePath);
      throw err;
    } finally {
      await cli.close();
    }
  };
}

/** Accumulator for repeatable options (`--set a=1 --set b=2`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * Parses `key=value` pairs from a repeatable flag.
 * @throws UsageError naming `flag` for an item without `=` or with an empty key, or a repeated key.
 */
export function keyValues(flag: string, items: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items ?? []) {
    const i = item.indexOf('=');
    if (i <= 0) throw new UsageError(`${flag} ${item}: expected key=value`);
    const key = item.slice(0, i).trim();
    if (key in out) throw new UsageError(`${flag} ${key} is given twice`);
    out[key] = item.slice(i + 1);
  }
  return out;
}

/** @throws UsageError naming `flag` if `value` is not a channel. */
export function channelFlag(value: string | undefined, flag = '--channel'): Channel {
  if (value === undefined) throw new UsageError(`${flag} is required (email, sms or whatsapp)`);
  const c = asChannel(value);
  if (!c) throw new UsageError(`${flag} ${value} is not a channel (email, sms or whatsapp)`);
  return c;
}

/** @throws UsageError naming `flag` if `value` is not an integer within [min, max]. */
export function intFlag(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^-?\d+$/.test(value) || n < min || n > max) throw new UsageError(`${flag} ${value}: expected a whole number from ${min} to ${max}`);
  return n;
}

/** Adds an "Examples:" block to a command's `--help`. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/** Requires a flag's value; the message names the flag. */
export function required<T>(value: T | undefined, flag: string, hint = ''): T {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required${hint ? ` (${hint})` : ''}`);
  return value;
}

/**
 * The retry bounds given by the global flags `--max-attempts` (attempts per provider for transient and
 * rate-limited failures, 1-10), `--retry-base-ms` (first backoff delay in ms, doubling, 0-600000) and
 * `--max-wait` (a duration: the cap for any one wait, a provider's Retry-After included).
 * Only the flags given are set; the dispatcher fills the rest from its defaults.
 * @throws UsageError naming the flag.
 */
export function retryFlags(cli: CliContext): Partial<RetryPolicy> {
  const maxAttempts = intFlag(cli.flags.maxAttempts, '--max-attempts', 1, 10);
  const baseDelayMs = intFlag(cli.flags.retryBaseMs, '--retry-base-ms', 0, 600_000);
  const maxDelayMs = cli.flags.maxWait === undefined ? undefined : parseDuration(cli.flags.maxWait, '--max-wait');
  return {
    ...(maxAttempts !== undefined ? { maxAttempts } : {}),
    ...(baseDelayMs !== undefined ? { baseDelayMs } : {}),
    ...(maxDelayMs !== undefined ? { maxDelayMs } : {}),
  };
}
