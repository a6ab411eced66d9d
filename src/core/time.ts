/**
 * Durations and times given on the command line.
 */
import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parses a duration such as `500ms`, `30s`, `15m`, `12h`, `30d`, `2w` into milliseconds.
 * @throws UsageError naming `flag`.
 */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} ${text}: expected a duration such as 30s, 15m, 12h or 30d`);
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

/**
 * Parses `--since`: a duration back from `now` (`30d`) or an ISO 8601 date/time.
 * @throws UsageError naming `flag`.
 */
export function parseSince(text: string, now: Date, flag: string): Date {
  if (/^\d+(\.\d+)?(ms|s|m|h|d|w)$/.test(text.trim())) return new Date(now.getTime() - parseDuration(text, flag));
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new UsageError(`${flag} ${text}: expected a duration such as 30d or an ISO 8601 time`);
  return new Date(t);
}
