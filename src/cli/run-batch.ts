/**
 * What `send batch` and `batch resume` share: signal handling (SIGINT/SIGTERM: no request starts after it,
 * requests on the wire finish and are recorded, exit 130 with the resume command), progress on stderr (a live
 * line on a TTY, a line every 5 s otherwise), and the summary with its exit code: the batch's state at the end
 * (see {@link exitFor}).
 */
import fs from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import type { CliContext } from './context.js';
import { RETRIES_RAN_OUT, type BatchCounts, type BatchRunHooks, type BatchSummary } from '../core/batch/types.js';
import { FieldError, Interrupted, LockedError, PartialFailure, Paused, type InputField } from '../errors.js';
import { batchRowJson, byProviderJson, countsJson } from './json.js';
import { sentSegments } from '../core/batch/preview.js';
import type { SegmentTotals } from '../core/segments.js';
import { dryRunText, previewJson, segmentFields } from './preview.js';

/** Interval of progress lines when stderr is not a terminal, in ms. */
const PROGRESS_EVERY_MS = 5_000;
/** --json row events: written at least this often (ms) while rows finish, or once this many characters wait. */
const ROW_EVENTS_EVERY_MS = 100;
const ROW_EVENTS_BYTES = 64 * 1024;

/** `pid@host` of this process: the batch lease owner. */
export function leaseOwner(): string {
  return `${process.pid}@${os.hostname()}`;
}

/**
 * Whether the process named by a lease owner (`pid@host`) is alive. Owners on other hosts count as alive. A zombie
 * (killed, not yet reaped by its parent: a container without an init process, or a parent killed with it, as
 * `timeout -s KILL` does to the process group) is dead: its pid still answers `kill(pid, 0)`, so a run started
 * right after a crash exited 4 until the lease expired. Linux: the state letter in `/proc/<pid>/stat`, after the
 * command name in parentheses (see proc(5)).
 */
export function ownerAlive(owner: string): boolean {
  const m = /^(\d+)@(.+)$/.exec(owner);
  if (!m || m[2] !== os.hostname()) return true;
  try {
    process.kill(Number(m[1]), 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${m[1]}/stat`, 'latin1');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}

/** The flag of each input field core errors name (see {@link FieldError}). */
const FLAGS: Record<InputField, string> = {
  csv: '--csv',
  subject: '--subject',
  'template file': '--template-file',
  'stored template': '--template',
  'template name': '--template-name',
  'template lang': '--template-lang',
  'idempotency key': '--idempotency-key',
  concurrency: '--concurrency',
};

/**
 * How far V8 lets the old generation grow past its live size before the next full collection, in percent,
 * during a bulk send (V8's `--heap-growing-percent`; its default picks a factor of up to 4× when collections
 * are cheap, which they are here). A bulk send keeps ~25 MB live but promotes tens of MB/s of short-lived
 * request objects, so at the default the old generation climbs to ~100 MB between collections: that, not
 * live data, made most of batch mode's peak RSS (README bench section, issue 10). At 50 % it stays under
 * ~40 MB, for a few more full collections (each ~10 ms). The flag is read at every full collection, so setting
 * it in the running process takes effect (https://nodejs.org/api/v8.html#v8setflagsfromstringflags).
 */
export const HEAP_GROWING_PERCENT = 50;

/**
 * Runs a batch function with signal handling and progress, then presents the summary. Errors naming input
 * fields are given with the flags instead.
 * @throws Interrupted (exit 130) after a signal; PartialFailure (exit 3) if rows failed or are unknown.
 */
export async function runWithProgress(
  cli: CliContext,
  label: string,
  run: (hooks: BatchRunHooks) => Promise<BatchSummary>,
): Promise<void> {
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      writeEvents();
      cli.io.stderr.write(`\n${sig} again: exiting now; rows in flight are left 'sending' and become 'unknown' on resume\n`);
      process.exit(130);
    }
    cli.out.info(`\n${sig}: no new requests; finishing the ones on the wire (at most 10 s), then stopping (press Ctrl-C again to stop at once)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const tty = Boolean(cli.io.stderr.isTTY) && !cli.out.opts.quiet;
  const t0 = Date.now();
  let lastLine = 0;
  let drawn = false;
  const line = (c: BatchCounts) => {
    const done = c.sent + c.failed + c.skipped + c.unknown;
    const secs = (Date.now() - t0) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && c.pending > 0 ? ` ETA ${Math.ceil(c.pending / rate)}s` : '';
    return `${label}: ${done}/${c.rows} done, ${c.sent} sent, ${c.failed} failed, ${c.skipped} skipped (${rate.toFixed(1)} msg/s${eta})`;
  };
  /** The TTY form: a bar, then the same figures. */
  const bar = (c: BatchCounts) => {
    const done = c.sent + c.failed + c.skipped + c.unknown;
    const width = 24;
    const filled = c.rows > 0 ? Math.round((done / c.rows) * width) : 0;
    return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${c.rows > 0 ? Math.floor((done / c.rows) * 100) : 0}% ${line(c)}`;
  };
  // --json: row events are gathered and written every ROW_EVENTS_EVERY_MS or once ROW_EVENTS_BYTES are
  // waiting, and before the summary (one write for hundreds of rows: a write per event-loop turn cost about
  // 4 % of a fast bulk send's CPU).
  let events = '';
  let eventsTimer: NodeJS.Timeout | undefined;
  const writeEvents = () => {
    clearTimeout(eventsTimer);
    eventsTimer = undefined;
    if (events) cli.io.stdout.write(events);
    events = '';
  };
  const hooks: BatchRunHooks = {
    owner: leaseOwner(),
    ownerAlive,
    signal: controller.signal,
    onWarning(message, details) {
      cli.out.warn(message);
      for (const d of details) cli.out.info(`  ${d}`);
    },
    onRow(event, counts) {
      if (cli.out.opts.json) {
        if (!events) eventsTimer = setTimeout(writeEvents, ROW_EVENTS_EVERY_MS).unref();
        events += JSON.stringify({ type: 'row', ...batchRowJson(event) }) + '\n';
        if (events.length >= ROW_EVENTS_BYTES) writeEvents();
      }
      const now = Date.now();
      if (tty && now - lastLine > 100) {
        cli.io.stderr.write(`\r\x1b[2K${bar(counts)}`.slice(0, (cli.io.stderr.columns ?? 200) + 5));
        drawn = true;
        lastLine = now;
      }
      latest = counts;
    },
  };
  // Without a TTY: a line every 5 s while rows are being worked (also while a 429 pause holds them up).
  let latest: BatchCounts | undefined;
  const ticker = !tty && !cli.out.opts.quiet ? setInterval(() => latest && cli.out.status(line(latest)), PROGRESS_EVERY_MS) : undefined;
  ticker?.unref();
  let summary: BatchSummary;
  try {
    summary = await run(hooks);
  } catch (err) {
    throw err instanceof FieldError ? err.withFlags(FLAGS) : err;
  } finally {
    writeEvents();
    clearInterval(ticker);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (drawn) cli.io.stderr.write('\r\x1b[2K');
  }
  // sms and whatsapp text: the segments the batch's sent rows took (a dry run: the rows that would be sent).
  const sms = summary.preview ? summary.preview.segments : summary.batchId ? await sentSegments(await cli.core(), summary.batchId) : null;
  present(cli, summary, sms);
  const error = exitFor(summary, controller.signal.aborted);
  if (error) throw error;
}

/**
 * The exit of a run: the batch's state at the end, for a fresh run and a re-run alike. Lease taken over → 4;
 * interrupted by a signal → 130; paused (an outage of the route, or rows whose retries ran out: pending for the
 * next run) → 75; some rows failed or unknown → 3; else (every row sent or
 * skipped, a cancelled batch included) → 0 (no error). Each error names the batch and the command that
 * continues or inspects it.
 */
export function exitFor(s: BatchSummary, signalled: boolean): Error | undefined {
  const id = s.batchId;
  if (s.leaseLost) {
    return new LockedError(`batch ${id}: another process took over its lease while this run was stopped; this run stopped sending (see \`switchboard batch show ${id}\`)`);
  }
  if (s.status === 'interrupted' || (signalled && s.status !== 'done' && s.status !== 'cancelled')) {
    const unknown = s.unknown > 0 ? `, ${s.unknown} with unknown outcome (no answer before the stop; see \`batch retry ${id} --unknown\`)` : '';
    return new Interrupted(`interrupted: ${s.pending} rows not sent yet${unknown}; continue with: switchboard batch resume ${id}`, s);
  }
  if (s.status === 'paused') {
    // An outage names the providers' errors; rows whose retries ran out while others were sent say so instead.
    const why = s.pausedReason?.startsWith(RETRIES_RAN_OUT) ? s.pausedReason : `no provider could take messages (${s.pausedReason ?? 'unknown reason'})`;
    return new Paused(
      `batch ${id} paused: ${why}; ${s.pending} rows left pending; continue with: switchboard batch resume ${id} (or run the same command again)`,
      s,
    );
  }
  if (s.failed + s.unknown > 0) {
    const parts = [s.failed ? `${s.failed} failed` : '', s.unknown ? `${s.unknown} with unknown outcome (see \`batch retry ${id} --unknown\`)` : ''].filter(Boolean);
    return new PartialFailure(`batch ${id}: ${parts.join(', ')}; see \`switchboard batch show ${id} --items\``, s);
  }
  return undefined;
}

/** The `--json` summary line in the README's vocabulary (`…Count`, `byProvider` as an array). */
function summaryJson(s: BatchSummary, sms: SegmentTotals | null) {
  return {
    type: 'summary',
    batchId: s.batchId,
    status: s.status,
    idempotencyKey: s.idempotencyKey,
    ...countsJson(s),
    fallbackCount: s.fallback,
    byProvider: byProviderJson(s.byProvider),
    elapsedMs: s.elapsedMs,
    alreadyFinished: s.alreadyFinished,
    resumed: s.resumed,
    pausedReason: s.pausedReason,
    pausedAt: s.pausedAt,
    duplicateRecipientCount: s.duplicateRecipients,
    sms,
    preview: s.preview ? previewJson(s.preview) : null,
  };
}

/**
 * The stderr note of a run that found its batch finished: which batch, when it ran, its counts, and how to send
 * again. A cancelled batch is said to be cancelled.
 */
function alreadyFinishedNote(s: BatchSummary): string {
  const when = s.status === 'cancelled' ? `was cancelled at ${s.finishedAt}` : `already finished at ${s.finishedAt ?? s.createdAt} (created ${s.createdAt})`;
  return (
    `batch ${s.batchId} (same input; idempotency key ${s.idempotencyKey}) ${when}: ${s.sent} sent, ${s.failed} failed, ${s.skipped} skipped, ${s.unknown} unknown; ` +
    'nothing was sent now. To send again, add --new-batch'
  );
}

function present(cli: CliContext, s: BatchSummary, sms: SegmentTotals | null): void {
  if (s.alreadyFinished) cli.out.info(alreadyFinishedNote(s));
  if (cli.out.opts.json) {
    cli.out.jsonLine(summaryJson(s, sms));
    return;
  }
  if (s.preview) {
    const preview = s.preview;
    cli.out.result(s, () => dryRunText(s.rows, preview));
    return;
  }
  const head = s.alreadyFinished
    ? `Batch ${s.batchId} ${s.status === 'cancelled' ? 'was cancelled' : 'already finished'}; nothing sent now.`
    : `Batch ${s.batchId} ${s.status === 'done' ? 'finished' : s.status}${s.resumed ? ' (resumed)' : ''} in ${(s.elapsedMs / 1000).toFixed(1)} s`;
  cli.out.result(s, () =>
    [
      head,
      cli.out.fields([
        ['rows', s.rows],
        ['sent', s.sent],
        ['failed', s.failed],
        ['skipped', s.skipped],
        ['unknown', s.unknown],
        ['pending', s.pending],
        ['fallback', s.fallback],
        ...(sms ? segmentFields(sms) : []),
        ...Object.entries(s.byProvider).map(([p, n]): [string, unknown] => [`via ${p}`, n]),
      ]),
    ].join('\n'),
  );
}
