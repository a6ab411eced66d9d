/**
 * The bulk-send runner (DESIGN §6): `send batch` and `batch resume`, top to bottom.
 *
 * 1. Validate the CSV ({@link validate}); a dry run stops here.
 * 2. Find the batch of the same input (idempotency key) or store a new one ({@link load}).
 * 3. Take the lease and work the pending rows ({@link work}): for each request, the provider's rate/concurrency
 *    slot first, then its rows are committed `sending` (the dispatcher's gate), then the request leaves; the
 *    outcome is recorded after. A row is `failed` only for a recipient or render error; any other failure hands
 *    it back to `pending`. When no provider of the route can take messages, the run stops taking rows and the
 *    batch is `paused` with the reason; a signal stops it (`interrupted`); a lost lease stops it at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { normaliseRecipient } from '../address.js';
import type { CoreContext } from '../context.js';
import { Dispatcher, type DispatchResult } from '../dispatch.js';
import type { EmailMessage, OutboundMessage } from '../../providers/types.js';
import { FieldError, LockedError, UsageError } from '../../errors.js';
import { openCsv } from '../csv.js';
import { compileTemplate, composeMessage, type CompiledTemplate, type Rendered, type TemplateSource } from '../templates.js';
import { getTenant } from '../tenants.js';
import { suppressionReasons } from '../suppressions.js';
import { openRunLedger, type OutcomeGroup } from '../../store/ledger.js';
import { PgSharedRate } from '../../store/rate-pg.js';
import { joinWorkers, leaveWorkers, newWorkerId, renewWorker, rowsLeft } from './workers.js';
import { TaskSlots } from '../limiter.js';
import { batchTracker } from '../tracking.js';
import { templateSource, validate, type Validation } from './validate.js';
import { RepeatFinder, exactRepeats } from './repeats.js';
import { BatchPreviewer } from './preview.js';
import {
  LEASE_MS,
  abandonSending,
  acquireLease,
  batchStats,
  deleteBatch,
  emptyStats,
  endRun,
  findByDerivedKey,
  findByKey,
  getBatchRow,
  insertBatch,
  insertItems,
  leaseHeldByOther,
  liveStats,
  markReady,
  newBatchId,
  renewLease,
  rowRecipients,
  skipDuplicates,
  type NewItem,
  type Outcome,
} from './ledger.js';
import { DEFAULT_DEDUPE_WINDOW_MS, RETRIES_RAN_OUT, type BatchCounts, type BatchRequest, type BatchRow, type BatchStats, type BatchStatus, type BatchRunHooks, type BatchSummary, type ItemRow, type RunOptions } from './types.js';

/** Rows written per transaction while loading a CSV into the ledger. */
const LOAD_CHUNK = 1000;
/** Most rows per batched provider request (SendGrid: 1000 personalizations per request). */
export const MAX_GROUP = 1000;
/** How long a stopped run waits for requests on the wire before it records what it has and ends, in ms. */
export const STOP_WAIT_MS = 10_000;
/** How often a worker with no row left to reserve looks whether rows other workers hold came back, in ms. */
const WORKER_POLL_MS = 500;

/** Checks the run options. @throws UsageError naming the field. */
function checkRunOptions(opts: RunOptions): number {
  const concurrency = opts.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) throw new FieldError((f) => `${f('concurrency')} must be a whole number from 1 to 1000`);
  return concurrency;
}

/**
 * Runs `send batch`: validates every row, stores the batch (or finds the same one from an earlier run), then
 * sends its pending rows.
 * @returns the summary; its `status` (and `leaseLost`) is what the caller maps to an exit code.
 * @throws FieldError (bad options or input, naming the field: nothing stored, nothing sent), KeyError (no/wrong key, before
 *   anything is written), LockedError (another process works this batch), NotFoundError (tenant).
 */
/**
 * How old (ms) a page's suppression lookup may be when its rows are sent: older, the rest of the page is looked up
 * again, so a suppression added during a run stops the rows not yet sent within about this time.
 */
const SUPPRESSION_FRESH_MS = 1000;

export async function runBatch(ctx: CoreContext, req: BatchRequest, hooks: BatchRunHooks): Promise<BatchSummary> {
  const started = ctx.clock.now().getTime();
  await getTenant(ctx, req.tenantId);
  const concurrency = checkRunOptions(req.run ?? {});
  const template = compileTemplate(templateSource(req));
  const preview = req.dryRun ? await BatchPreviewer.open(ctx, req, template) : undefined;
  const v = await validate(req.csvPath, req.channel, template, req.defaultRegion, req.dryRun ?? false, req.encoding, preview);
  if (v.errorCount > 0) {
    const more = v.errorCount > v.errors.length ? [`… and ${v.errorCount - v.errors.length} more`] : [];
    throw new FieldError((f) => `${f('csv')} ${req.csvPath}: ${v.errorCount} problem${v.errorCount > 1 ? 's' : ''} in ${v.rows} rows; nothing was sent`, [...v.errors, ...more]);
  }
  if (preview) {
    const p = await preview.finish();
    return { ...dryRunSummary(v.rows, p.skipped, ctx.clock.now().getTime() - started), preview: p };
  }

  // Opens every secret of the route: a missing or wrong key fails here, before anything is written.
  const run = await openRun(ctx, req.tenantId, req.channel, req.run ?? {}, concurrency, hooks);
  try {
    const found = await findBatch(ctx, req, v, template.hash);
    let existing = found.existing;
    if (existing?.status === 'loading' && !leaseHeldByOther(ctx, existing, hooks)) {
      // A run died while storing the rows: nothing was sent, start the load again.
      await deleteBatch(ctx, existing.id);
      existing = undefined;
    }
    if (existing) {
      const stats = await batchStats(ctx, existing);
      const unknownToRetry = req.run?.retryUnknown === true && stats.unknown > 0;
      if (existing.status === 'cancelled' || (existing.status === 'done' && stats.pending === 0 && !unknownToRetry)) {
        return await summarize(ctx, existing.id, started, { alreadyFinished: true, resumed: false });
      }
      return await work(ctx, { batchId: existing.id, template, resumed: true, started, ...run }, hooks);
    }
    let loaded;
    try {
      loaded = await load(ctx, req, template, v, found, hooks.owner);
    } catch (err) {
      // PostgreSQL: another process stored the same batch at the same moment (two hosts, one cron line): join it.
      const same = err instanceof LockedError && ctx.sql.dialect === 'postgres' ? await findByKey(ctx, found.key) : undefined;
      if (!same) throw err;
      return await work(ctx, { batchId: same.id, template, resumed: true, started, ...run }, hooks);
    }
    if (loaded.duplicates.count > 0) {
      hooks.onWarning?.(
        `${loaded.duplicates.count} row${loaded.duplicates.count > 1 ? 's repeat a recipient' : ' repeats a recipient'} of an earlier line${req.dedupeRecipients ? '; sending once per recipient (--dedupe-recipients): the later rows are skipped' : ' (each row is sent; --dedupe-recipients sends once per recipient)'}`,
        loaded.duplicates.lines,
      );
    }
    return await work(ctx, { batchId: loaded.batchId, template, resumed: false, started, duplicates: loaded.duplicates.count, ...run }, hooks);
  } finally {
    await run.dispatcher.close();
  }
}

/**
 * Continues a stored batch (`batch resume`): pending rows are sent; rows left `sending` by a crash become
 * `unknown` and are resent only with `retryUnknown`.
 * @throws NotFoundError, LockedError, KeyError, UsageError (loading or cancelled batch).
 */
export async function resumeBatch(ctx: CoreContext, batchId: string, opts: RunOptions, hooks: BatchRunHooks): Promise<BatchSummary> {
  const started = ctx.clock.now().getTime();
  const batch = await getBatchRow(ctx, batchId);
  if (batch.status === 'loading') throw new UsageError(`batch ${batchId} never finished loading; run the same \`send batch\` again`);
  if (batch.status === 'cancelled') throw new UsageError(`batch ${batchId} was cancelled; its pending rows were skipped (send them with \`send batch … --new-batch\`)`);
  const concurrency = checkRunOptions(opts);
  const stats = await batchStats(ctx, batch);
  if (batch.status === 'done' && stats.pending === 0 && !(opts.retryUnknown === true && stats.unknown > 0)) {
    // Nothing to send: report the batch as it is (its finish time stays the time it finished).
    return summarize(ctx, batchId, started, { alreadyFinished: true, resumed: false });
  }
  const template = compileTemplate(JSON.parse(batch.template) as TemplateSource);
  const run = await openRun(ctx, batch.tenant_id, batch.channel, opts, concurrency, hooks);
  try {
    return await work(ctx, { batchId, template, resumed: true, started, ...run }, hooks);
  } finally {
    await run.dispatcher.close();
  }
}

/** What a run needs besides its batch: the dispatcher and its stop switch. */
interface OpenRun {
  dispatcher: Dispatcher;
  concurrency: number;
  retryUnknown: boolean;
  /** Aborts when the caller's signal does, or when the lease is lost. */
  stop: AbortController;
}

async function openRun(ctx: CoreContext, tenantId: string, channel: BatchRow['channel'], opts: RunOptions, concurrency: number, hooks: BatchRunHooks): Promise<OpenRun> {
  const stop = new AbortController();
  if (hooks.signal) {
    if (hooks.signal.aborted) stop.abort();
    else hooks.signal.addEventListener('abort', () => stop.abort(), { once: true });
  }
  const dispatcher = await Dispatcher.open(ctx, tenantId, channel, { retry: opts.retry, maxConcurrency: concurrency, signal: stop.signal, rate: opts.rate });
  return { dispatcher, concurrency, retryUnknown: opts.retryUnknown ?? false, stop };
}

/** The batch an input maps to: an existing one, or the key (and derived key) a new one gets. */
interface Found {
  existing?: BatchRow;
  key: string;
  derivedKey: string | null;
  keyExpiresAt: string | null;
}

/**
 * Finds the batch of the same input. An explicit key always finds its batch (and must name the same CSV and
 * template). A derived key finds a batch with rows left to send whatever its age, and a finished one only
 * within the dedupe window from its creation; past it, the same input starts a new batch.
 * @throws UsageError when an explicit key names a batch of other input.
 */
async function findBatch(ctx: CoreContext, req: BatchRequest, v: Validation, templateHash: string): Promise<Found> {
  const derived = createHash('sha256').update(`${req.tenantId}|${req.channel}|${v.hash}|${templateHash}`).digest('hex').slice(0, 32);
  const suffix = () => randomBytes(4).toString('hex');
  if (req.idempotencyKey) {
    const existing = await findByKey(ctx, req.idempotencyKey);
    if (existing && (existing.input_hash !== v.hash || existing.template_hash !== templateHash)) {
      throw new FieldError((f) => `${f('idempotency key')} ${req.idempotencyKey} was used for batch ${existing.id} with a different CSV or template; use another key`);
    }
    if (existing && req.newBatch) return { key: `${req.idempotencyKey}+${suffix()}`, derivedKey: null, keyExpiresAt: null };
    return { existing, key: req.idempotencyKey, derivedKey: null, keyExpiresAt: null };
  }
  const now = ctx.clock.now().getTime();
  const windowMs = req.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS;
  const fresh = async () => {
    const key = (await findByKey(ctx, derived)) ? `${derived}+${suffix()}` : derived;
    return { key, derivedKey: derived, keyExpiresAt: new Date(now + windowMs).toISOString() };
  };
  if (req.newBatch) return fresh();
  const existing = await findByDerivedKey(ctx, derived);
  if (!existing) return fresh();
  const finished = existing.status === 'done' || existing.status === 'cancelled';
  if (finished && now >= Date.parse(existing.created_at) + windowMs) return fresh();
  return { existing, key: existing.idempotency_key, derivedKey: derived, keyExpiresAt: existing.key_expires_at };
}

/**
 * Stores the batch and one ledger row per CSV row (pass 2), in chunked transactions; counts repeated
 * recipients and, with `dedupeRecipients`, skips the later rows.
 * @throws UsageError if the CSV changed since it was validated (the partial batch is removed).
 */
async function load(
  ctx: CoreContext,
  req: BatchRequest,
  template: CompiledTemplate,
  v: Validation,
  found: Found,
  owner: string,
): Promise<{ batchId: string; duplicates: { count: number; lines: string[] } }> {
  const id = newBatchId(ctx);
  const csv = await openCsv(req.csvPath, req.encoding);
  await insertBatch(
    ctx,
    {
      id,
      tenantId: req.tenantId,
      channel: req.channel,
      key: found.key,
      derivedKey: found.derivedKey,
      keyExpiresAt: found.keyExpiresAt,
      inputPath: req.csvPath,
      inputHash: v.hash,
      templatePath: req.stored ? `template:${req.stored.name}` : (req.templatePath ?? ''),
      templateHash: template.hash,
      template: JSON.stringify(template.source),
      columns: csv.columns,
    },
    owner,
  );
  const changed = () => new FieldError((f) => `${f('csv')} ${req.csvPath} changed while it was being read; nothing was sent, run again`);
  let chunk: NewItem[] = [];
  let total = 0;
  const repeats = new RepeatFinder();
  for await (const { row, line, record } of csv.rows) {
    // Pass 1 checked every address, and the hash compared below proves these are the same bytes: an e-mail
    // address needs only its trim again; a phone number its E.164 form.
    const raw = record[v.recipientKey] ?? '';
    const r = req.channel === 'email' ? { to: raw.trim() } : normaliseRecipient(req.channel, raw, req.defaultRegion);
    if ('error' in r) throw changed();
    chunk.push([row, line, r.to, JSON.stringify(record), 'pending', null]);
    repeats.add(row, r.to);
    total++;
    if (chunk.length >= LOAD_CHUNK) {
      await insertItems(ctx, id, chunk);
      chunk = [];
    }
  }
  await insertItems(ctx, id, chunk);
  if (csv.hash() !== v.hash || total !== v.rows) {
    await deleteBatch(ctx, id);
    throw changed();
  }
  const groups = repeats.candidates();
  const dups = groups.length === 0 ? [] : exactRepeats(groups, await rowRecipients(ctx, id, groups.flat()));
  if (req.dedupeRecipients) await skipDuplicates(ctx, id, dups);
  await markReady(ctx, id, total);
  const count = dups.reduce((n, d) => n + d.later.length, 0);
  const lines = dups.slice(0, 50).map((d) => `${d.recipient}: line ${d.firstLine}, then line${d.later.length > 1 ? 's' : ''} ${d.later.map((l) => l.line).join(', ')}`);
  if (dups.length > 50) lines.push(`… and ${dups.length - 50} more recipients`);
  return { batchId: id, duplicates: { count, lines } };
}

/** What {@link work} runs with. */
interface WorkOptions extends OpenRun {
  batchId: string;
  template: CompiledTemplate;
  resumed: boolean;
  /** Epoch ms when the command started. */
  started: number;
  /** Rows repeating an earlier recipient (a fresh batch only). */
  duplicates?: number;
}

const NO_OUTCOME = { provider: null, messageId: null, fallback: false, error: null, errorKind: null } as const;

/** What a dispatch result makes of a row: `sent`, `failed` (recipient's fault) or back to `pending` (not its fault). */
function outcomeOf(result: DispatchResult): Outcome {
  if (result.status === 'sent') return { ...NO_OUTCOME, state: 'sent', provider: result.provider ?? null, messageId: result.messageId ?? null, fallback: result.fallback };
  const error = result.error ? `${result.error.kind}: ${result.error.message}` : 'failed';
  if (result.error?.kind === 'recipient') return { state: 'failed', provider: result.provider ?? null, messageId: null, fallback: result.fallback, error, errorKind: 'recipient' };
  return { ...NO_OUTCOME, state: 'pending', error };
}

/**
 * The groups of a request's outcomes (`outcomes[k]` for `items[k]`) for the ledger: rows with the same outcome
 * together (one statement each), rows handed back (`pending`) in one group.
 */
function groupOutcomes(items: readonly ItemRow[], outcomes: readonly Outcome[]): OutcomeGroup[] {
  // One row (every request of a provider that cannot batch): nothing to group.
  if (outcomes.length === 1) return [{ rows: [items[0]!.row_no], outcome: outcomes[0]! }];
  const byOutcome = new Map<string, { outcome: Outcome; rows: number[] }>();
  let back: { outcome: Outcome; rows: number[] } | undefined;
  outcomes.forEach((oc, k) => {
    const row = items[k]!.row_no;
    if (oc.state === 'pending') {
      if (back) back.rows.push(row);
      else back = { outcome: oc, rows: [row] };
      return;
    }
    const key = `${oc.state}\u0000${oc.provider}\u0000${oc.messageId}\u0000${oc.fallback}\u0000${oc.error}`;
    const same = byOutcome.get(key);
    if (same) same.rows.push(row);
    else byOutcome.set(key, { outcome: oc, rows: [row] });
  });
  const groups: OutcomeGroup[] = [...byOutcome.values()];
  if (back) groups.push(back);
  return groups;
}

/**
 * Works a batch's pending rows under its lease until none is left, the route is down (paused), the run is
 * stopped (interrupted) or the lease is lost.
 * @throws LockedError (another live process holds the lease), the store's error.
 */
async function work(ctx: CoreContext, o: WorkOptions, hooks: BatchRunHooks): Promise<BatchSummary> {
  const { batchId, dispatcher, template, concurrency, stop } = o;
  // PostgreSQL: one of several workers, each under its own lease (workers.ts); SQLite: the batch's one lease.
  const workers = ctx.sql.dialect === 'postgres';
  const owner = workers ? newWorkerId(hooks.owner) : hooks.owner;
  if (workers) await joinWorkers(ctx, batchId, owner, o.retryUnknown, hooks.ownerAlive, stop.signal);
  else await acquireLease(ctx, batchId, hooks, o.retryUnknown);
  const ledger = openRunLedger(ctx.sql, batchId, owner, () => ctx.clock.now());
  dispatcher.useJournal(ledger);
  // Workers share each provider's rate through the store: it holds across all of them in every second.
  if (workers) dispatcher.shareRates((providerId, rate) => new PgSharedRate(ctx.sql, `${providerId}|${batchId}`, rate, batchId, owner));
  let leaseLost = false;
  const loseLease = () => {
    leaseLost = true;
    stop.abort();
  };
  const renew = setInterval(() => {
    (workers ? renewWorker(ctx, batchId, owner, hooks.ownerAlive) : renewLease(ctx, batchId, owner)).then(
      (held) => {
        if (!held) loseLease();
      },
      // A busy store delays a renewal; the next one comes in LEASE_MS / 3.
      () => undefined,
    );
  }, LEASE_MS / 3);
  renew.unref();

  const counts: BatchCounts = await liveStats(ctx, batchId);
  // Rows share the batch's one template: group them when the first provider can batch (BatchSender).
  const groupSize = dispatcher.channel === 'email' ? await dispatcher.batchSize(MAX_GROUP) : 1;
  const tenantId = dispatcher.tenantId;
  const channel = dispatcher.channel;
  const tracker = await batchTracker(ctx, tenantId, channel);
  /** The last error that handed a row back to `pending` (the pause reason when the route is not down as a whole). */
  let lastError: string | null = null;
  /** Why a run that ends with rows pending paused: the route's outage, else the rows whose retries ran out. */
  const pauseReason = (): string => dispatcher.unavailable ?? (lastError !== null ? `${RETRIES_RAN_OUT} (last error: ${lastError})` : 'rows left pending');

  // Every write below goes through the run ledger (on SQLite a group commit: one transaction per event-loop turn
  // for all rows that reached that point in the turn); attempt records (Dispatcher) and outcomes of a turn
  // commit together.
  /**
   * Records each row's outcome (`outcomes[k]` for `items[k]`): rows with the same outcome in one statement;
   * rows handed back go to `pending`. Resolves once committed, then tells `onRow` of each finished row.
   */
  const report = (items: readonly ItemRow[], outcomes: readonly Outcome[]): Promise<void> =>
    ledger
      .settle(groupOutcomes(items, outcomes))
      .then(() => {
        items.forEach((item, k) => {
          const oc = outcomes[k]!;
          if (oc.state === 'pending') {
            lastError = oc.error;
            return;
          }
          counts.pending--;
          counts[oc.state]++;
          hooks.onRow?.({ row: item.row_no, line: item.line_no, recipient: item.recipient, state: oc.state, provider: oc.provider, messageId: oc.messageId, fallback: oc.fallback, error: oc.error }, counts);
        });
      });

  /**
   * Skips suppressed rows and fails rows that do not render (`done`: their outcomes, resolved once committed);
   * the other rows come back with their messages. Suppressions come from `pageReasons`, looked up for a whole
   * page of rows in one query, and again for the rest of the page when that is older than
   * {@link SUPPRESSION_FRESH_MS} (on PostgreSQL a query is a network round trip: one per row cost more than the
   * rest of the row's bookkeeping).
   */
  const prepare = async (items: readonly ItemRow[]): Promise<{ done: Array<Promise<void>>; ready: Array<{ item: ItemRow; message: OutboundMessage }> }> => {
    // Looked up more than a second ago (a rate-limited run): again for the page's rows not yet prepared, so a
    // suppression added meanwhile (by another process, or an opt-out seen earlier in this run) still stops them.
    if (ctx.clock.now().getTime() - pageLookedUpAt > SUPPRESSION_FRESH_MS) await lookUpSuppressions(page.filter((i) => i.row_no >= items[0]!.row_no));
    const done: Array<Promise<void>> = [];
    const ready: Array<{ item: ItemRow; message: OutboundMessage }> = [];
    items.forEach((item) => {
      const reason = pageReasons.get(item.row_no);
      if (reason != null) {
        done.push(report([item], [{ ...NO_OUTCOME, state: 'skipped', error: `suppressed: ${reason}` }]));
        return;
      }
      let content: Rendered;
      try {
        content = template.render(JSON.parse(item.vars) as Record<string, string>);
      } catch (err) {
        done.push(report([item], [{ ...NO_OUTCOME, state: 'failed', error: `template does not render: ${(err as Error).message.split('\n')[0]}`, errorKind: 'render' }]));
        return;
      }
      const message = composeMessage(channel, item.recipient, template.source, content, { 'X-Switchboard-Batch': `${batchId}/${item.row_no}` });
      ready.push({ item, message: { ...message, tracking: tracker.track(batchId, item.row_no, item.recipient) } });
    });
    return { done, ready };
  };

  /**
   * The dispatcher's gate: in the provider's slot, commits the rows a request carries (`ks`, indices into
   * `rows`) `sending` before it leaves (a crash from here on leaves them `sending`, which a resume turns into
   * `unknown`). Claims nothing once the lease is gone.
   */
  const gate = (rows: readonly ItemRow[]) => async (ks: readonly number[]): Promise<boolean> => {
    const ok = await ledger.claim(ks.map((k) => rows[k]!.row_no));
    if (!ok) loseLease();
    return ok;
  };

  /** Sends rows: one row per request, or up to `groupSize` rows in one batched request (BatchSender). */
  const processRows = async (items: ItemRow[]) => {
    const { done, ready } = await prepare(items);
    if (ready.length > 0) {
      const origins = ready.map((r) => ({ batchId, rowNo: r.item.row_no }));
      const open = gate(ready.map((r) => r.item));
      const results =
        groupSize > 1
          ? await dispatcher.sendMany(ready.map((r) => r.message as EmailMessage), origins, open)
          : [await dispatcher.send(ready[0]!.message, origins[0], () => open([0]))];
      // Rows with the same result (one object per request's outcome, see Dispatcher.sendMany) share one Outcome.
      const outcomes = new Map<DispatchResult, Outcome>();
      done.push(
        report(
          ready.map((r) => r.item),
          results.map((r) => outcomes.get(r) ?? outcomes.set(r, outcomeOf(r)).get(r)!),
        ),
      );
    }
    if (!workers) return void (await Promise.all(done));
    // PostgreSQL: the task (and its concurrency slot) ends once its outcomes are queued, not committed, so the
    // next requests' claims commit while these outcomes do (a crash before that commit leaves the rows `sending`,
    // which become `unknown`: never sent twice). The run waits for them before it looks for rows left, and ends.
    const recorded: Promise<void> = Promise.all(done)
      .then(() => undefined, (err: unknown) => void (failure ??= err))
      .finally(() => outstanding.delete(recorded));
    outstanding.add(recorded);
  };
  /** Outcomes queued by tasks that ended (PostgreSQL), until committed. */
  const outstanding = new Set<Promise<void>>();

  /** The page of rows being sent, the suppression reasons of its suppressed rows by row number, and when (ms). */
  let page: readonly ItemRow[] = [];
  const pageReasons = new Map<number, string>();
  let pageLookedUpAt = 0;
  /** Records the suppression reasons (`reasons[k]` for `rows[k]`) looked up at `at` (ms) into `pageReasons`. */
  const keepReasons = (rows: readonly ItemRow[], reasons: ReadonlyArray<string | null>, at: number): void => {
    pageLookedUpAt = at;
    rows.forEach((item, k) => {
      if (reasons[k] != null) pageReasons.set(item.row_no, reasons[k]!);
      else pageReasons.delete(item.row_no);
    });
  };
  /** The suppression reasons of `rows` (`reasons[k]` for `rows[k]`), looked up in one query at `at` (ms). */
  const reasonsOf = async (rows: readonly ItemRow[]): Promise<{ reasons: Array<string | null>; at: number }> => {
    const at = ctx.clock.now().getTime();
    return { reasons: await suppressionReasons(ctx, tenantId, channel, rows.map((i) => i.recipient)), at };
  };
  /** Looks up the suppressions of `rows` in one query into `pageReasons`. */
  const lookUpSuppressions = async (rows: readonly ItemRow[]): Promise<void> => {
    const r = await reasonsOf(rows);
    keepReasons(rows, r.reasons, r.at);
  };
  /**
   * The next page of rows after row number `after` with its rows' suppression reasons: the page's two queries,
   * fetched while the page before is sent (see the loop below).
   */
  const fetchPage = async (after: number): Promise<{ items: ItemRow[]; reasons: Array<string | null>; at: number }> => {
    const items = await ledger.page(after, pageSize);
    return { items, ...(await reasonsOf(items)) };
  };
  /** The next page, being fetched while the current one is sent. */
  let next: ReturnType<typeof fetchPage> | undefined;
  const slots = new TaskSlots(concurrency);
  let failure: unknown;
  /** A worker that leaves while others still work: how its own run ended. */
  let ownEnd: BatchStatus | undefined;
  let cursor = 0;
  const going = () => !stop.signal.aborted && !failure && dispatcher.unavailable === null;
  // A worker reserves what it pages (PostgreSQL): a smaller page leaves more rows to the other workers.
  const pageSize = workers ? Math.max(Math.min(500, concurrency * 4), groupSize) : Math.max(500, groupSize);
  try {
    for (;;) {
      outer: while (going()) {
        const got = await (next ?? fetchPage(cursor));
        next = undefined;
        const items = got.items;
        if (items.length === 0) break;
        page = items;
        pageReasons.clear();
        keepReasons(items, got.reasons, got.at);
        // The next page (on PostgreSQL reserved to this worker) and its suppressions are fetched while this one is
        // sent: fetched only once this page ran out, its round trips stalled every request (measured on PostgreSQL,
        // pages of 64 rows: about 0.04 ms per row of a 0.14 ms send phase). A run that stops leaves it unused (on
        // PostgreSQL the run's end gives its rows back to the other workers).
        next = fetchPage(items[items.length - 1]!.row_no);
        next.catch(() => undefined);
        for (let k = 0; k < items.length; k += groupSize) {
          if (!going()) break outer;
          await slots.free();
          if (!going()) break outer;
          const group = items.slice(k, k + groupSize);
          cursor = group[group.length - 1]!.row_no;
          slots.run(() => processRows(group)).catch((err: unknown) => (failure ??= err));
        }
      }
      await settle(ctx, slots, stop.signal);
      await Promise.all([...outstanding]);
      if (!workers || !going()) break;
      // No row left to reserve: rows other workers still hold may come back (a worker that dies leaves them to
      // the others once its lease expires), so a worker waits while they hold any, and leaves the batch finished.
      const left = await rowsLeft(ctx, batchId, owner, hooks.ownerAlive);
      if (left.free === 0 && left.held === 0) break;
      if (left.free === 0) await ctx.clock.sleep(WORKER_POLL_MS, stop.signal).catch(() => undefined);
    }
  } finally {
    clearInterval(renew);
    // A page still being fetched (reserved on PostgreSQL) ends before the run gives its rows back.
    if (next) await next.then(() => undefined, () => undefined);
    try {
      await ledger.flush();
    } catch (err) {
      failure ??= err;
    }
    if (workers && !leaseLost) {
      const endOf = (left: BatchStats, abandoned: number) => {
        const status = left.pending === 0 && left.sending === 0 && abandoned === 0 ? 'done' : stop.signal.aborted || failure ? 'interrupted' : 'paused';
        return { status, stats: left, pausedReason: status === 'paused' ? pauseReason() : undefined } as const;
      };
      const left = await leaveWorkers(ctx, batchId, owner, hooks.ownerAlive, stop.signal.aborted, endOf);
      if (left.lost) leaseLost = true;
      // Other workers still work the batch: this one reports its own stop (interrupted; paused when its route is
      // down), else the batch as it stands (running: the others finish it).
      else if (!left.last && (stop.signal.aborted || failure)) ownEnd = 'interrupted';
      else if (!left.last && dispatcher.unavailable !== null) ownEnd = 'paused';
    } else if (!leaseLost) {
      // Stopped: requests still unanswered after the wait (STOP_WAIT_MS) are abandoned; their rows are `unknown`.
      const abandoned = stop.signal.aborted ? await abandonSending(ctx, batchId, hooks.owner) : 0;
      const left = await liveStats(ctx, batchId);
      const status = left.pending === 0 && left.sending === 0 && abandoned === 0 ? 'done' : stop.signal.aborted || failure ? 'interrupted' : 'paused';
      const reason = status === 'paused' ? pauseReason() : undefined;
      // (A cancel cannot race this: it needs the lease, which this run holds until this update.)
      if (!(await endRun(ctx, batchId, hooks.owner, { status, stats: left, pausedReason: reason }))) leaseLost = true;
    }
  }
  if (failure && !leaseLost) throw failure;
  const summary = await summarize(ctx, batchId, o.started, { alreadyFinished: false, resumed: o.resumed });
  if (ownEnd) summary.status = ownEnd;
  if (ownEnd === 'paused') summary.pausedReason = dispatcher.unavailable;
  return { ...summary, leaseLost, duplicateRecipients: o.duplicates ?? 0 };
}

/** Waits for the running tasks to end; once `signal` aborts, at most {@link STOP_WAIT_MS} more. */
async function settle(ctx: CoreContext, slots: TaskSlots, signal: AbortSignal): Promise<void> {
  const idle = new AbortController();
  const stopped = new Promise<void>((resolve) => {
    const wait = () => void ctx.clock.sleep(STOP_WAIT_MS, idle.signal).then(resolve);
    if (signal.aborted) wait();
    else signal.addEventListener('abort', wait, { once: true });
  });
  await Promise.race([slots.onIdle(), stopped]);
  idle.abort();
}

function dryRunSummary(rows: number, skipped: number, elapsedMs: number): BatchSummary {
  return {
    ...emptyStats(rows),
    pending: rows - skipped,
    skipped,
    batchId: null,
    status: 'dry-run',
    idempotencyKey: null,
    elapsedMs,
    alreadyFinished: false,
    resumed: false,
    pausedReason: null,
    pausedAt: null,
    createdAt: null,
    finishedAt: null,
    leaseLost: false,
    duplicateRecipients: 0,
  };
}

/** The summary of a stored batch as it is now. */
async function summarize(ctx: CoreContext, batchId: string, started: number, flags: { alreadyFinished: boolean; resumed: boolean }): Promise<BatchSummary> {
  const b = await getBatchRow(ctx, batchId);
  return {
    batchId,
    status: b.status,
    idempotencyKey: b.idempotency_key,
    ...(await batchStats(ctx, b)),
    elapsedMs: ctx.clock.now().getTime() - started,
    pausedReason: b.paused_reason,
    pausedAt: b.paused_at,
    createdAt: b.created_at,
    finishedAt: b.finished_at,
    leaseLost: false,
    duplicateRecipients: 0,
    ...flags,
  };
}
