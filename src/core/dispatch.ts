/**
 * The one send path (DESIGN §1, §5): `Dispatcher.send(message)` and `Dispatcher.sendMany(messages)` walk the
 * tenant's route through one loop ({@link Dispatcher.tryProvider}), calling adapters, retrying transient and
 * rate-limited failures with exponential backoff and jitter (time and randomness from the injected clock),
 * falling back on auth/config/transient failures, never on recipient failures (an opt-out adds a suppression
 * for the tenant), and recording every attempt in `messages`.
 *
 * Circuit breaker: a provider's circuit opens for the rest of the run after an auth or config failure, or after
 * {@link CIRCUIT_THRESHOLD} consecutive transient or rate-limited failures. Once every provider of the route is
 * open, {@link Dispatcher.unavailable} says why, waits in backoff end at once, and nothing more is tried: the
 * bulk-send runner pauses the batch.
 * A test send, every row of a bulk send, and anything later all go through here.
 */
import type { CoreContext, Channel } from './context.js';
import { UsageError } from '../errors.js';
import { configSecrets, getProvider, resolveRoute, setHealth, type ProviderConfig, type RouteEntry } from './providers.js';
import { requireKey } from './vault.js';
import { addSuppression } from './suppressions.js';
import { RequestLimiter, type SharedRate } from './limiter.js';
import { insertMessageAttempts, type AttemptJournal, type MessageAttempt } from '../store/repos/messages.js';
import { KINDS } from '../providers/registry.js';
import {
  ProviderError,
  sendThrough,
  type BatchItemResult,
  type EmailMessage,
  type OutboundMessage,
  type Provider,
  type ProviderErrorKind,
} from '../providers/types.js';

/** Retry bounds for one provider before moving to the next. Delays in ms. */
export interface RetryPolicy {
  /** Attempts per provider for transient/rate-limited failures, including the first (≥ 1). */
  maxAttempts: number;
  /** First backoff delay in ms; doubles per attempt, with ±50 % jitter. */
  baseDelayMs: number;
  /** Cap for any single wait in ms, including a provider's Retry-After. */
  maxDelayMs: number;
}

/** Default retry policy: 3 attempts, 500 ms doubling, capped at 60 s. */
export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 60_000 };

/**
 * Consecutive transient (or rate-limited) failures of one provider that open its circuit for the run (or
 * `maxAttempts`, when that is larger, so one message can use all its attempts).
 */
export const CIRCUIT_THRESHOLD = 3;

/** How to build the chain for a dispatcher. */
export interface DispatchOptions {
  /** Start with this provider ref (it must serve the tenant and channel). */
  providerRef?: string;
  /** Use only the first provider of the chain. */
  noFallback?: boolean;
  /** Retry bounds; fields not given come from {@link DEFAULT_RETRY}. */
  retry?: Partial<RetryPolicy>;
  /** Messages in flight at once; sizes adapter connection pools. */
  maxConcurrency?: number;
  /**
   * Most requests per second to each provider of the chain for this run (`--rate`); lowers, never raises,
   * a provider's own `rate` setting.
   */
  rate?: number;
  /** Once aborted, no request starts (requests on the wire finish) and backoff waits end. */
  signal?: AbortSignal;
  /**
   * Where attempt records go: queued on this journal (a bulk run's ledger: committed with the row outcomes of
   * the same turn) instead of committed one by one.
   */
  journal?: AttemptJournal;
}

/** One attempt as recorded in `messages`. */
export interface AttemptRecord {
  provider: string;
  attempt: number;
  status: 'sent' | 'failed';
  messageId?: string;
  errorKind?: ProviderErrorKind;
  error?: string;
  /** The provider's own error code (SMTP reply code such as `535`, HTTP status, API error code), when it gave one. */
  errorCode?: string;
}

/**
 * Outcome of one message. `fallback` is true when a provider other than the first in the chain took it.
 * A `failed` result with an error other than `recipient` means no provider took it for a reason not the
 * recipient's (or no request started: `started` false); the message may be sent again later.
 */
export interface DispatchResult {
  status: 'sent' | 'failed';
  provider?: string;
  messageId?: string;
  fallback: boolean;
  attempts: AttemptRecord[];
  error?: { kind: ProviderErrorKind; message: string; code?: string };
  /** Whether a request for it started (false: the gate refused, the run was stopped, or every circuit was open). */
  started: boolean;
}

/** Where a message comes from, recorded with each attempt. */
export interface DispatchOrigin {
  batchId?: string;
  rowNo?: number;
}

/**
 * Called once, in the provider's rate/concurrency slot, just before the first request for a message (or a
 * batched request's messages) leaves: the bulk-send runner commits its rows `sending` there. Resolves false
 * to stop the request (e.g. the run lost its lease); the messages then come back not started.
 */
export type SendGate = () => Promise<boolean>;

/**
 * The gate of a batched send ({@link Dispatcher.sendMany}): called in a provider's slot just before a request
 * leaves, with the indices (into `messages`) of the rows that request carries and that no earlier request has
 * claimed: all of a batched request's rows at once, or one row when the messages fall back row by row. Resolves
 * false to stop the request.
 */
export type GroupGate = (indices: readonly number[]) => Promise<boolean>;

/** One attempt to record: the config that took it, for which recipient and row, and how it ended. */
interface AttemptRow {
  config: ProviderConfig;
  recipient: string;
  origin: DispatchOrigin;
  attempt: number;
  fallback: boolean;
  outcome: { messageId?: string; error?: ProviderError };
}

interface Step {
  entry: RouteEntry;
  secrets: Record<string, string>;
  adapter?: Promise<Provider>;
  /** Every request to this provider runs in here: its concurrency and rate (see {@link RequestLimiter}). */
  limiter: RequestLimiter;
  /** Consecutive transient failures (reset by a success). */
  failures: number;
  /** Why the circuit is open (`connection refused`, `401 …`), or undefined while closed. */
  openReason?: string;
}

/** A gate that runs its function once, for every caller that passes through it. */
class OnceGate {
  private result?: Promise<boolean>;
  constructor(private readonly fn?: SendGate) {}
  pass(): Promise<boolean> {
    this.result ??= this.fn ? this.fn() : Promise.resolve(true);
    return this.result;
  }
}

/**
 * The claims of one {@link Dispatcher.sendMany} call: each request's gate claims the rows it carries that no
 * earlier request claimed, so a row is claimed when the first request carrying it leaves, never before (rows
 * waiting for a slot after a fallback row by row stay unclaimed) and never twice.
 */
class RowClaims {
  private readonly claimed = new Map<number, Promise<boolean>>();
  constructor(private readonly fn?: GroupGate) {}

  /** The gate of a request carrying rows `ks` (indices into the sendMany messages). */
  gate(ks: readonly number[]): OnceGate {
    return new OnceGate(() => {
      const fresh = ks.filter((k) => !this.claimed.has(k));
      const claim = fresh.length === 0 || !this.fn ? Promise.resolve(true) : this.fn(fresh);
      for (const k of fresh) this.claimed.set(k, claim);
      return Promise.all(ks.map((k) => this.claimed.get(k)!)).then((oks) => oks.every(Boolean));
    });
  }
}

/** What one provider did with a request, after its retries (see {@link Dispatcher.tryProvider}). */
type StepOutcome<T> =
  | { ok: true; value: T; attempt: number }
  | { ok: false; error: ProviderError; attempt: number }
  | { ok: false; notStarted: true };

const NOT_STARTED = Symbol('not started');

/** The smaller of two optional limits. */
function minLimit(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function numberSetting(v: unknown): number | undefined {
  return typeof v === 'number' && v > 0 ? v : undefined;
}

function asProviderError(err: unknown, kind: string): ProviderError {
  return err instanceof ProviderError ? err : new ProviderError('transient', `${kind} adapter failed: ${(err as Error).message}`, { cause: err });
}

/**
 * Sends messages for one tenant and channel through its route. Open with {@link Dispatcher.open}, which
 * decrypts every config in the chain first, so a missing or wrong key fails before anything is written.
 */
export class Dispatcher {
  /** The health last written per config id this run (written again only when it changes). */
  private readonly healthWritten = new Map<number, ProviderConfig['health']>();
  /** Aborted once every circuit is open (ends backoff waits at once), or by the caller's signal. */
  private readonly down = new AbortController();
  private readonly waits: AbortSignal;
  private constructor(
    private readonly ctx: CoreContext,
    readonly tenantId: string,
    readonly channel: Channel,
    private readonly chain: readonly Step[],
    private readonly opts: { retry: RetryPolicy; maxConcurrency: number; signal?: AbortSignal; journal?: AttemptJournal },
  ) {
    this.waits = opts.signal ? AbortSignal.any([opts.signal, this.down.signal]) : this.down.signal;
  }

  /**
   * Resolves the chain and opens its secrets.
   * @throws NotFoundError (tenant, provider ref), UsageError (empty route, ref not serving this tenant/channel),
   *   KeyError (no key, wrong key, tampered secrets).
   */
  static async open(ctx: CoreContext, tenantId: string, channel: Channel, options: DispatchOptions = {}): Promise<Dispatcher> {
    // Every send requires the store's key, so a wrong key never gets as far as writing a batch; with it, every
    // config of the route is checked against its MAC before any connection.
    const key = await requireKey(ctx);
    const route = await resolveRoute(ctx, tenantId, channel, key);
    let entries = route.entries;
    if (options.providerRef) {
      const pinned = await getProvider(ctx, options.providerRef);
      if (pinned.channel !== channel || (pinned.tenantId !== null && pinned.tenantId !== tenantId)) {
        throw new UsageError(`--provider ${options.providerRef} does not serve tenant ${tenantId} on channel ${channel}`);
      }
      entries = [
        { config: pinned, source: pinned.tenantId === null ? 'system' : 'tenant' },
        ...entries.filter((e) => e.config.id !== pinned.id),
      ];
    }
    if (options.noFallback) entries = entries.slice(0, 1);
    if (entries.length === 0) {
      throw new UsageError(
        `tenant ${tenantId} has no enabled ${channel} provider and there is no system default: add one with \`switchboard provider add --tenant ${tenantId} --channel ${channel} …\` or \`--system\``,
      );
    }
    const secrets: Array<Record<string, string>> = [];
    for (const entry of entries) secrets.push(await configSecrets(ctx, key, entry.config));
    const chain: Step[] = entries.map((entry, i) => ({
      entry,
      secrets: secrets[i]!,
      limiter: new RequestLimiter(
        { rate: minLimit(numberSetting(entry.config.settings.rate), options.rate), concurrency: numberSetting(entry.config.settings.concurrency) },
        ctx.clock,
        options.signal,
      ),
      failures: 0,
    }));
    return new Dispatcher(ctx, tenantId, channel, chain, {
      retry: { ...DEFAULT_RETRY, ...options.retry },
      maxConcurrency: options.maxConcurrency ?? 1,
      signal: options.signal,
      journal: options.journal,
    });
  }

  /**
   * Sends this dispatcher's attempt records to `journal` from now on (a bulk run's ledger, once its batch is
   * known) instead of writing each at once.
   */
  useJournal(journal: AttemptJournal): void {
    this.opts.journal = journal;
  }

  /**
   * Shares each rate-limited provider's rate with other processes from now on (the workers of a batch on a
   * PostgreSQL store): `make(providerConfigId, rate)` gives the shared counter (see `limiter.ts`).
   */
  shareRates(make: (providerId: number, rate: number) => SharedRate): void {
    for (const step of this.chain) {
      const rate = step.limiter.rateLimit;
      if (rate !== undefined) step.limiter.share(make(step.entry.config.id, rate));
    }
  }

  /**
   * Why no provider of the route can take messages any more in this run (`ref: reason; ref: reason`, in
   * route order), or null while one can.
   */
  get unavailable(): string | null {
    if (!this.chain.every((s) => s.openReason !== undefined)) return null;
    return this.chain.map((s) => `${s.entry.config.ref}: ${s.openReason}`).join('; ');
  }

  /**
   * Sends one message (of this dispatcher's channel) through the chain, from provider `startAt` on. Never
   * throws for provider failures: they are in the result. `gate` runs once, in the first provider's slot,
   * before the first request leaves (see {@link SendGate}).
   */
  async send(message: OutboundMessage, origin: DispatchOrigin = {}, gate?: SendGate): Promise<DispatchResult> {
    return this.sendFrom(0, message, origin, new OnceGate(gate), []);
  }

  /** {@link send} from provider `startAt` on; `last` is the error that brought it there, if any. */
  private async sendFrom(startAt: number, message: OutboundMessage, origin: DispatchOrigin, gate: OnceGate, attempts: AttemptRecord[], last?: ProviderError): Promise<DispatchResult> {
    for (let i = startAt; i < this.chain.length; i++) {
      const step = this.chain[i]!;
      const config = step.entry.config;
      const record = (attempt: number, outcome: AttemptRow['outcome']): Promise<void> => {
        attempts.push(outcome.error
          ? failedAttempt(config.ref, attempt, outcome.error)
          : { provider: config.ref, attempt, status: 'sent', messageId: outcome.messageId });
        return this.record([{ config, recipient: message.to, origin, attempt, fallback: i > 0, outcome }]);
      };
      const out = await this.tryProvider(i, (adapter) => sendThrough(adapter, message), gate, record);
      if ('notStarted' in out) return { status: 'failed', fallback: false, attempts, error: this.stopError(last), started: attempts.length > 0 };
      if (out.ok) {
        await record(out.attempt, { messageId: out.value.messageId });
        return { status: 'sent', provider: config.ref, messageId: out.value.messageId, fallback: i > 0, attempts, started: true };
      }
      last = out.error;
      if (out.error.kind === 'recipient') {
        if (out.error.details.optOut) await this.suppressOptOut(config, message.to, out.error);
        return { status: 'failed', provider: config.ref, fallback: i > 0, attempts, error: errorOf(out.error), started: true };
      }
    }
    return { status: 'failed', fallback: false, attempts, error: this.stopError(last), started: attempts.length > 0 };
  }

  /** The error of a message no provider took: the last one seen, else why nothing was tried. */
  private stopError(last: ProviderError | undefined): NonNullable<DispatchResult['error']> {
    if (last) return errorOf(last);
    if (this.opts.signal?.aborted) return { kind: 'transient', message: 'not sent: the run was stopped' };
    return { kind: 'transient', message: `no provider of the route can take messages now (${this.unavailable ?? 'circuits open'})` };
  }

  /**
   * The one retry loop: sends a request through provider `i` with its retries. Skips a provider whose circuit
   * is open; opens it after an auth/config failure or {@link CIRCUIT_THRESHOLD} consecutive transient ones;
   * stops retrying once the circuit is open or the run is stopped. `record` is told of every failed attempt
   * (the caller records a success with what it returned).
   */
  private async tryProvider<T>(
    i: number,
    request: (adapter: Provider) => Promise<T>,
    gate: OnceGate,
    record: (attempt: number, outcome: AttemptRow['outcome']) => Promise<void>,
  ): Promise<StepOutcome<T>> {
    const step = this.chain[i]!;
    const config = step.entry.config;
    for (let attempt = 1; ; attempt++) {
      if (step.openReason !== undefined) return { ok: false, error: new ProviderError('transient', `circuit open: ${step.openReason}`), attempt };
      let adapter: Provider;
      try {
        adapter = await this.adapter(step);
      } catch (err) {
        const e = err instanceof ProviderError ? err : new ProviderError('config', `cannot start ${config.kind} adapter: ${(err as Error).message}`, { cause: err });
        await record(attempt, { error: e });
        await this.fail(step, e);
        return { ok: false, error: e, attempt };
      }
      let value: T | typeof NOT_STARTED;
      try {
        value = await step.limiter.run<T | typeof NOT_STARTED>(
          async () => {
            // In the slot: nothing starts after a stop, or once the circuit opened while this request waited.
            if (this.opts.signal?.aborted || step.openReason !== undefined) return NOT_STARTED;
            if (!(await gate.pass())) return NOT_STARTED;
            return request(adapter);
          },
          () => NOT_STARTED,
        );
      } catch (err) {
        const e = asProviderError(err, config.kind);
        await record(attempt, { error: e });
        if (e.kind === 'recipient') return { ok: false, error: e, attempt };
        await this.fail(step, e);
        if (step.openReason !== undefined || attempt >= this.opts.retry.maxAttempts || this.waits.aborted) return { ok: false, error: e, attempt };
        await this.ctx.clock.sleep(this.backoff(attempt, e, step), this.waits);
        if (this.opts.signal?.aborted) return { ok: false, error: e, attempt };
        continue;
      }
      if (value === NOT_STARTED) {
        if (step.openReason !== undefined && !this.opts.signal?.aborted) continue; // loops once more to report the open circuit
        return { ok: false, notStarted: true };
      }
      step.failures = 0;
      await this.markHealthy(config);
      return { ok: true, value, attempt };
    }
  }

  /** Counts a failure against a provider's circuit; opens it (and marks auth/config unhealthy) when due. */
  private async fail(step: Step, e: ProviderError): Promise<void> {
    if (e.kind === 'recipient' || step.openReason !== undefined) return;
    if (e.kind === 'auth' || e.kind === 'config') {
      step.openReason = e.message;
      await this.markUnhealthy(step.entry.config, e);
    } else if (++step.failures >= Math.max(CIRCUIT_THRESHOLD, this.opts.retry.maxAttempts)) {
      step.openReason = e.message;
    }
    if (step.openReason !== undefined && this.chain.every((s) => s.openReason !== undefined)) this.down.abort();
  }

  /**
   * How many messages the bulk-send runner should group per request: the `maxBatchSize` (capped at `limit`)
   * of the first usable provider of the chain if its adapter can `sendMany`, else 1 (one message per request).
   */
  async batchSize(limit = 1000): Promise<number> {
    const step = this.chain.find((s) => s.openReason === undefined);
    if (!step) return 1;
    try {
      const adapter = await this.adapter(step);
      if (adapter.channel === 'email' && adapter.sendMany && adapter.maxBatchSize) return Math.max(1, Math.min(limit, adapter.maxBatchSize));
    } catch {
      // The adapter does not start: per-message mode reports the failure row by row.
    }
    return 1;
  }

  /**
   * Sends e-mails in one batched request through the first usable provider of the chain (see
   * {@link BatchSender}), with the same retry loop as {@link send}. If the request fails as a whole, or the
   * adapter cannot batch, every message falls back row by row through {@link send} (DESIGN §5): after an
   * auth/config/transient failure from the next provider on, after a recipient failure (one bad address
   * refuses the whole request) from the same provider, so the bad row fails alone. Messages the adapter
   * returns `deferred` (left out of its request) go in a further batched request, or one by one if the adapter
   * deferred them all. `gate` claims rows as the requests carrying them leave (see {@link GroupGate}).
   * Never throws for provider failures. @returns one result per message, in order.
   */
  async sendMany(messages: EmailMessage[], origins: DispatchOrigin[], gate?: GroupGate): Promise<DispatchResult[]> {
    return this.sendManyWith(
      messages,
      origins,
      new RowClaims(gate),
      messages.map((_, k) => k),
    );
  }

  /** `idx`: each message's index in the original sendMany call (what `claims` knows rows by). */
  private async sendManyWith(messages: EmailMessage[], origins: DispatchOrigin[], claims: RowClaims, idx: readonly number[]): Promise<DispatchResult[]> {
    const i = this.chain.findIndex((s) => s.openReason === undefined);
    const rowByRow = (from: number, last?: ProviderError) => Promise.all(messages.map((m, k) => this.sendFrom(from, m, origins[k] ?? {}, claims.gate([idx[k]!]), [], last)));
    if (i < 0) return rowByRow(this.chain.length);
    const step = this.chain[i]!;
    const config = step.entry.config;
    let adapter: Provider;
    try {
      adapter = await this.adapter(step);
    } catch {
      return rowByRow(i);
    }
    if (adapter.channel !== 'email' || !adapter.sendMany) return rowByRow(i);
    const many = adapter.sendMany.bind(adapter);
    const out = await this.tryProvider(
      i,
      async () => {
        const results = await many(messages);
        if (results.length !== messages.length) throw new ProviderError('transient', `${config.kind} returned ${results.length} results for ${messages.length} messages`);
        return results;
      },
      claims.gate(idx),
      (attempt, outcome) =>
        outcome.error ? this.record(messages.map((m, k) => ({ config, recipient: m.to, origin: origins[k] ?? {}, attempt, fallback: i > 0, outcome }))) : Promise.resolve(),
    );
    if ('notStarted' in out) return messages.map(() => ({ status: 'failed', fallback: false, attempts: [], error: this.stopError(undefined), started: false }));
    if (!out.ok) return out.error.kind === 'recipient' ? rowByRow(i) : rowByRow(i + 1, out.error);
    const { value: results, attempt } = out;
    // Messages the adapter left out of the request go in a further one (fewer each time), or one by one.
    const deferred = results.flatMap((r, k) => ('deferred' in r ? [k] : []));
    const later =
      deferred.length === 0
        ? []
        : deferred.length < messages.length
          ? this.sendManyWith(
              deferred.map((k) => messages[k]!),
              deferred.map((k) => origins[k] ?? {}),
              claims,
              deferred.map((k) => idx[k]!),
            )
          : Promise.all(deferred.map((k) => this.sendFrom(i, messages[k]!, origins[k] ?? {}, claims.gate([idx[k]!]), [])));
    if (deferred.length === messages.length) return later;
    // Adapters give the rows of one outcome one result object (BatchItemResult); so do the records and results
    // made from it here (one per outcome, not per row: fewer objects live while the next requests are packed).
    // Results are read, never changed.
    const outcomes = new Map<BatchItemResult, AttemptRow['outcome']>();
    const outcomeOf = (r: Exclude<BatchItemResult, { deferred: string }>): AttemptRow['outcome'] => {
      let o = outcomes.get(r);
      if (!o) outcomes.set(r, (o = r.ok ? { messageId: r.messageId } : { error: r.error }));
      return o;
    };
    await this.record(
      results.flatMap((r: BatchItemResult, k) =>
        'deferred' in r ? [] : [{ config, recipient: messages[k]!.to, origin: origins[k] ?? {}, attempt, fallback: i > 0, outcome: outcomeOf(r) }],
      ),
    );
    outcomes.clear();
    const rest = await later;
    for (const [k, r] of results.entries()) {
      if (!('deferred' in r) && !r.ok && r.error.details.optOut) await this.suppressOptOut(config, messages[k]!.to, r.error);
    }
    const made = new Map<BatchItemResult, DispatchResult>();
    return results.map((r, k): DispatchResult => {
      if ('deferred' in r) return rest[deferred.indexOf(k)]!;
      const same = made.get(r);
      if (same) return same;
      const a: AttemptRecord = r.ok
        ? { provider: config.ref, attempt, status: 'sent', messageId: r.messageId }
        : failedAttempt(config.ref, attempt, r.error);
      const d: DispatchResult = r.ok
        ? { status: 'sent', provider: config.ref, messageId: r.messageId, fallback: i > 0, attempts: [a], started: true }
        : { status: 'failed', provider: config.ref, fallback: i > 0, attempts: [a], error: errorOf(r.error), started: true };
      made.set(r, d);
      return d;
    });
  }

  private async suppressOptOut(config: ProviderConfig, address: string, e: ProviderError): Promise<void> {
    await addSuppression(this.ctx, { tenantId: this.tenantId, channel: this.channel, address, reason: `opt-out reported by ${config.ref}: ${e.message}`, source: config.ref });
  }

  /** Closes adapters (connection pools). */
  async close(): Promise<void> {
    await Promise.allSettled(this.chain.map(async (s) => s.adapter && (await s.adapter).close()));
  }

  private adapter(step: Step): Promise<Provider> {
    if (!step.adapter) {
      const config = step.entry.config;
      const spec = KINDS.get(config.kind);
      if (!spec) return Promise.reject(new ProviderError('config', `provider ${config.ref} has unknown kind ${config.kind}`));
      step.adapter = spec.create({
        ref: config.ref,
        settings: config.settings,
        secrets: step.secrets,
        maxConcurrency: Math.min(this.opts.maxConcurrency, numberSetting(config.settings.concurrency) ?? Number.POSITIVE_INFINITY),
        channel: this.channel,
      });
      // A failed start is retried on the next message rather than cached.
      step.adapter.catch(() => (step.adapter = undefined));
    }
    return step.adapter;
  }

  /**
   * Backoff before attempt `attempt + 1`, in ms: Retry-After when given, else base·2^(n-1) with ±50 % jitter
   * (from the clock's `random`). A rate-limited answer (429) also pauses the provider's limiter for that long,
   * so every other request to it waits too: a 429 slows the whole run, not just the one message.
   */
  private backoff(attempt: number, e: ProviderError, step: Step): number {
    const { baseDelayMs, maxDelayMs } = this.opts.retry;
    if (e.details.retryAfterMs !== undefined) {
      const wait = Math.min(e.details.retryAfterMs, maxDelayMs);
      if (e.kind === 'rate_limited') step.limiter.pauseFor(wait);
      return wait;
    }
    const exp = baseDelayMs * 2 ** (attempt - 1);
    return Math.min(maxDelayMs, Math.round(exp * (0.5 + this.ctx.clock.random())));
  }

  /**
   * Records attempts in `messages`: queued on the journal when there is one (committed with the row outcomes
   * of the same turn; resolves at once), else written at once in one transaction.
   * @throws (rejects with) the store's error when written at once.
   */
  private record(rows: readonly AttemptRow[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    const at = this.ctx.clock.now().toISOString();
    const attempts = rows.map((r): MessageAttempt => {
      const e = r.outcome.error;
      return {
        at,
        tenantId: this.tenantId,
        channel: this.channel,
        provider: r.config.ref,
        providerKind: r.config.kind,
        recipient: r.recipient,
        attempt: r.attempt,
        fallback: r.fallback,
        messageId: r.outcome.messageId ?? null,
        error: e ? errorOf(e) : null,
        batchId: r.origin.batchId ?? null,
        rowNo: r.origin.rowNo ?? null,
      };
    });
    if (this.opts.journal) {
      this.opts.journal.logAttempts(attempts);
      return Promise.resolve();
    }
    return insertMessageAttempts(this.ctx.sql, attempts);
  }

  /** Marks a config unhealthy after an auth/config failure, even if it sent earlier in this run (e.g. a key revoked mid-batch). */
  private async markUnhealthy(config: ProviderConfig, e: ProviderError): Promise<void> {
    if (e.kind !== 'auth' && e.kind !== 'config') return;
    if (this.healthWritten.get(config.id) === 'unhealthy') return;
    this.healthWritten.set(config.id, 'unhealthy');
    await setHealth(this.ctx, config.id, 'unhealthy', `${e.kind}: ${e.message}`);
  }

  private async markHealthy(config: ProviderConfig): Promise<void> {
    if (this.healthWritten.has(config.id)) return;
    this.healthWritten.set(config.id, 'healthy');
    if (config.health !== 'healthy') await setHealth(this.ctx, config.id, 'healthy', null);
  }
}

function errorOf(e: ProviderError): NonNullable<DispatchResult['error']> {
  return { kind: e.kind, message: e.message, ...(e.details.code ? { code: e.details.code } : {}) };
}

/** The record of a failed attempt through `provider`: the error's kind, one-line message and provider code (if any). */
function failedAttempt(provider: string, attempt: number, e: ProviderError): AttemptRecord {
  return { provider, attempt, status: 'failed', errorKind: e.kind, error: e.message, ...(e.details.code ? { errorCode: e.details.code } : {}) };
}
