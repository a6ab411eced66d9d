/**
 * The one send path (DESIGN §1, §5): `Dispatcher.send(message)` walks the tenant's route, calling adapters,
 * retrying transient and rate-limited failures with exponential backoff and jitter, falling back on
 * auth/config/transient failures, never on recipient failures (an opt-out adds a suppression for the
 * tenant), and recording every attempt in `messages`.
 * A test send, every row of a bulk send, and anything later all go through here.
 */
import type { CoreContext, Channel } from './context.js';
import { UsageError } from '../errors.js';
import { configSecrets, getProvider, resolveRoute, setHealth, type ProviderConfig, type RouteEntry } from './providers.js';
import { requireKey } from './vault.js';
import { addSuppression } from './suppressions.js';
import { RequestLimiter } from './limiter.js';
import { prepared } from '../store/db.js';
import type { GroupCommit } from '../store/group-commit.js';
import { KINDS } from '../providers/registry.js';
import {
  ProviderError,
  sendThrough,
  type BatchItemResult,
  type EmailMessage,
  type OutboundMessage,
  type Provider,
  type ProviderErrorKind,
  type SendResult,
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
  /** Aborts backoff waits (not in-flight requests). */
  signal?: AbortSignal;
  /**
   * Where attempt records go: queued on this group commit (committed with the row outcomes of the same turn)
   * instead of committed one by one.
   */
  journal?: GroupCommit;
}

/** One attempt as recorded in `messages`. */
export interface AttemptRecord {
  provider: string;
  attempt: number;
  status: 'sent' | 'failed';
  messageId?: string;
  errorKind?: ProviderErrorKind;
  error?: string;
}

/** Outcome of one message. `fallback` is true when a provider other than the first in the chain took it. */
export interface DispatchResult {
  status: 'sent' | 'failed';
  provider?: string;
  messageId?: string;
  fallback: boolean;
  attempts: AttemptRecord[];
  error?: { kind: ProviderErrorKind; message: string; code?: string };
}

/** Where a message comes from, recorded with each attempt. */
export interface DispatchOrigin {
  batchId?: string;
  rowNo?: number;
}

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
}

/** The smaller of two optional limits. */
function minLimit(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function numberSetting(v: unknown): number | undefined {
  return typeof v === 'number' && v > 0 ? v : undefined;
}

/**
 * Sends messages for one tenant and channel through its route. Open with {@link Dispatcher.open}, which
 * decrypts every config in the chain first, so a missing or wrong key fails before anything is written.
 */
export class Dispatcher {
  /** Config ids whose circuit is open for the rest of this run (auth/config failure). */
  private readonly open = new Set<number>();
  /** The health last written per config id this run (written again only when it changes). */
  private readonly healthWritten = new Map<number, ProviderConfig['health']>();
  private constructor(
    private readonly ctx: CoreContext,
    readonly tenantId: string,
    readonly channel: Channel,
    readonly chain: readonly Step[],
    private readonly opts: { retry: RetryPolicy; maxConcurrency: number; signal?: AbortSignal; rate?: number; journal?: GroupCommit },
  ) {}

  /**
   * Resolves the chain and opens its secrets.
   * @throws NotFoundError (tenant, provider ref), UsageError (empty route, ref not serving this tenant/channel),
   *   KeyError (no key, wrong key, tampered secrets).
   */
  static open(ctx: CoreContext, tenantId: string, channel: Channel, options: DispatchOptions = {}): Dispatcher {
    // Every send requires the store's key, so a wrong key never gets as far as writing a batch; with it, every
    // config of the route is checked against its MAC before any connection.
    const key = requireKey(ctx);
    const route = resolveRoute(ctx, tenantId, channel, key);
    let entries = route.entries;
    if (options.providerRef) {
      const pinned = getProvider(ctx, options.providerRef);
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
    const chain: Step[] = entries.map((entry) => ({
      entry,
      secrets: configSecrets(ctx, key, entry.config),
      limiter: new RequestLimiter(
        {
          rate: minLimit(numberSetting(entry.config.settings.rate), options.rate),
          concurrency: numberSetting(entry.config.settings.concurrency),
        },
        ctx.clock,
      ),
    }));
    return new Dispatcher(ctx, tenantId, channel, chain, {
      retry: { ...DEFAULT_RETRY, ...options.retry },
      maxConcurrency: options.maxConcurrency ?? 1,
      signal: options.signal,
      rate: options.rate,
      journal: options.journal,
    });
  }

  /** Refs of the chain, in order. */
  get refs(): string[] {
    return this.chain.map((s) => s.entry.config.ref);
  }

  /**
   * Sends one message (of this dispatcher's channel) through the chain. Never throws for provider failures:
   * they are in the result.
   */
  async send(message: OutboundMessage, origin: DispatchOrigin = {}, startAt = 0): Promise<DispatchResult> {
    const attempts: AttemptRecord[] = [];
    let last: ProviderError | undefined;
    for (let i = startAt; i < this.chain.length; i++) {
      const step = this.chain[i]!;
      const config = step.entry.config;
      if (this.open.has(config.id)) continue;
      for (let attempt = 1; ; attempt++) {
        let adapter: Provider;
        try {
          adapter = await this.adapter(step);
        } catch (err) {
          last = err instanceof ProviderError ? err : new ProviderError('config', `cannot start ${config.kind} adapter: ${(err as Error).message}`, { cause: err });
          this.record([{ config, recipient: message.to, origin, attempt, fallback: i > 0, outcome: { error: last } }]);
          attempts.push({ provider: config.ref, attempt, status: 'failed', errorKind: last.kind, error: last.message });
          if (last.kind === 'auth' || last.kind === 'config') this.open.add(config.id);
          this.markUnhealthy(config, last);
          break;
        }
        try {
          const res = await this.request(step, () => sendThrough(adapter, message));
          this.record([{ config, recipient: message.to, origin, attempt, fallback: i > 0, outcome: { messageId: res.messageId } }]);
          attempts.push({ provider: config.ref, attempt, status: 'sent', messageId: res.messageId });
          this.markHealthy(config);
          return { status: 'sent', provider: config.ref, messageId: res.messageId, fallback: i > 0, attempts };
        } catch (err) {
          const e =
            err instanceof ProviderError ? err : new ProviderError('transient', `${config.kind} adapter failed: ${(err as Error).message}`, { cause: err });
          last = e;
          this.record([{ config, recipient: message.to, origin, attempt, fallback: i > 0, outcome: { error: e } }]);
          attempts.push({ provider: config.ref, attempt, status: 'failed', errorKind: e.kind, error: e.message });
          if (e.kind === 'recipient') {
            if (e.details.optOut) this.suppressOptOut(config, message.to, e);
            return { status: 'failed', provider: config.ref, fallback: i > 0, attempts, error: errorOf(e) };
          }
          if (e.kind === 'auth' || e.kind === 'config') {
            this.open.add(config.id);
            this.markUnhealthy(config, e);
            break;
          }
          if (attempt >= this.opts.retry.maxAttempts || this.opts.signal?.aborted) break;
          await this.ctx.clock.sleep(this.backoff(attempt, e, step), this.opts.signal);
        }
      }
    }
    const error = last ? errorOf(last) : { kind: 'config' as const, message: 'every provider in the route is disabled for this run (auth or configuration failures)' };
    return { status: 'failed', fallback: false, attempts, error };
  }

  /**
   * How many messages the bulk-send runner should group per request: the `maxBatchSize` (capped at `limit`)
   * of the first usable provider of the chain if its adapter can `sendMany`, else 1 (one message per request).
   */
  async batchSize(limit = 1000): Promise<number> {
    const step = this.chain.find((s) => !this.open.has(s.entry.config.id));
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
   * {@link BatchSender}), with the same retry rules as {@link send}. If the request fails as a whole, or the
   * adapter cannot batch, every message falls back row by row through {@link send} (DESIGN §5): after an
   * auth/config/transient failure from the next provider on, after a recipient failure (one bad address
   * refuses the whole request) from the same provider, so the bad row fails alone. Messages the adapter
   * returns `deferred` (left out of its request) go in a further batched request, or one by one if the adapter
   * deferred them all.
   * Never throws for provider failures. @returns one result per message, in order.
   */
  async sendMany(messages: EmailMessage[], origins: DispatchOrigin[]): Promise<DispatchResult[]> {
    const i = this.chain.findIndex((s) => !this.open.has(s.entry.config.id));
    const step = this.chain[i];
    const rowByRow = (from: number) => Promise.all(messages.map((m, k) => this.send(m, origins[k], from)));
    if (!step) return rowByRow(this.chain.length);
    const config = step.entry.config;
    let adapter: Provider;
    try {
      adapter = await this.adapter(step);
    } catch {
      return rowByRow(i);
    }
    if (adapter.channel !== 'email' || !adapter.sendMany) return rowByRow(i);
    const many = adapter.sendMany.bind(adapter);
    for (let attempt = 1; ; attempt++) {
      let results: BatchItemResult[];
      try {
        results = await this.request(step, () => many(messages));
        if (results.length !== messages.length) {
          throw new ProviderError('transient', `${config.kind} returned ${results.length} results for ${messages.length} messages`);
        }
      } catch (err) {
        const e = err instanceof ProviderError ? err : new ProviderError('transient', `${config.kind} adapter failed: ${(err as Error).message}`, { cause: err });
        this.record(messages.map((m, k) => ({ config, recipient: m.to, origin: origins[k] ?? {}, attempt, fallback: i > 0, outcome: { error: e } })));
        if (e.kind === 'recipient') return rowByRow(i);
        if (e.kind === 'auth' || e.kind === 'config') {
          this.open.add(config.id);
          this.markUnhealthy(config, e);
          return rowByRow(i + 1);
        }
        if (attempt >= this.opts.retry.maxAttempts || this.opts.signal?.aborted) return rowByRow(i + 1);
        await this.ctx.clock.sleep(this.backoff(attempt, e, step), this.opts.signal);
        continue;
      }
      // Messages the adapter left out of the request go in a further one (fewer each time), or one by one.
      const deferred = results.flatMap((r, k) => ('deferred' in r ? [k] : []));
      const later =
        deferred.length === 0
          ? []
          : deferred.length < messages.length
            ? this.sendMany(deferred.map((k) => messages[k]!), deferred.map((k) => origins[k] ?? {}))
            : Promise.all(deferred.map((k) => this.send(messages[k]!, origins[k], i)));
      if (deferred.length === messages.length) return later;
      this.markHealthy(config);
      this.record(
        results.flatMap((r, k) =>
          'deferred' in r
            ? []
            : [{ config, recipient: messages[k]!.to, origin: origins[k] ?? {}, attempt, fallback: i > 0, outcome: r.ok ? { messageId: r.messageId } : { error: r.error } }],
        ),
      );
      const rest = await later;
      return results.map((r, k): DispatchResult => {
        if ('deferred' in r) return rest[deferred.indexOf(k)]!;
        const a: AttemptRecord = r.ok
          ? { provider: config.ref, attempt, status: 'sent', messageId: r.messageId }
          : { provider: config.ref, attempt, status: 'failed', errorKind: r.error.kind, error: r.error.message };
        if (r.ok) return { status: 'sent', provider: config.ref, messageId: r.messageId, fallback: i > 0, attempts: [a] };
        if (r.error.details.optOut) this.suppressOptOut(config, messages[k]!.to, r.error);
        return { status: 'failed', provider: config.ref, fallback: i > 0, attempts: [a], error: errorOf(r.error) };
      });
    }
  }

  /** Runs one request to a provider inside its limiter (concurrency, rate, 429 pause). */
  private request<T extends SendResult | BatchItemResult[]>(step: Step, fn: () => Promise<T>): Promise<T> {
    return step.limiter.run(fn);
  }

  private suppressOptOut(config: ProviderConfig, address: string, e: ProviderError): void {
    addSuppression(this.ctx, { tenantId: this.tenantId, channel: this.channel, address, reason: `opt-out reported by ${config.ref}: ${e.message}`, source: config.ref });
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
   * Backoff before attempt `attempt + 1`, in ms: Retry-After when given, else base·2^(n-1) with ±50 % jitter.
   * A rate-limited answer (429) also pauses the provider's limiter for that long, so every other request to
   * it waits too: a 429 slows the whole run, not just the one message.
   */
  private backoff(attempt: number, e: ProviderError, step: Step): number {
    const { baseDelayMs, maxDelayMs } = this.opts.retry;
    if (e.details.retryAfterMs !== undefined) {
      const wait = Math.min(e.details.retryAfterMs, maxDelayMs);
      if (e.kind === 'rate_limited') step.limiter.pauseFor(wait);
      return wait;
    }
    const exp = baseDelayMs * 2 ** (attempt - 1);
    return Math.min(maxDelayMs, Math.round(exp * (0.5 + Math.random())));
  }

  /**
   * Records attempts in `messages`: queued on the journal as one write when there is one (committed with the
   * row outcomes of the same turn), else written at once in one transaction.
   */
  private record(rows: readonly AttemptRow[]): void {
    if (rows.length === 0) return;
    const at = this.ctx.clock.now().toISOString();
    const insert = prepared(
      this.ctx.db,
      `INSERT INTO messages (created_at, tenant_id, channel, provider, provider_kind, recipient, status, message_id,
         error_kind, error_code, error, fallback, attempt, batch_id, row_no)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const write = () => {
      for (const r of rows) {
        const e = r.outcome.error;
        insert.run(at, this.tenantId, this.channel, r.config.ref, r.config.kind, r.recipient, e ? 'failed' : 'sent', r.outcome.messageId ?? null,
          e?.kind ?? null, e?.details.code ?? null, e?.message ?? null, r.fallback ? 1 : 0, r.attempt, r.origin.batchId ?? null, r.origin.rowNo ?? null);
      }
    };
    if (this.opts.journal) this.opts.journal.defer(write);
    else this.ctx.db.transaction(write)();
  }

  /** Marks a config unhealthy after an auth/config failure, even if it sent earlier in this run (e.g. a key revoked mid-batch). */
  private markUnhealthy(config: ProviderConfig, e: ProviderError): void {
    if (e.kind !== 'auth' && e.kind !== 'config') return;
    if (this.healthWritten.get(config.id) === 'unhealthy') return;
    this.healthWritten.set(config.id, 'unhealthy');
    setHealth(this.ctx, config.id, 'unhealthy', `${e.kind}: ${e.message}`);
  }

  private markHealthy(config: ProviderConfig): void {
    if (this.healthWritten.has(config.id)) return;
    this.healthWritten.set(config.id, 'healthy');
    if (config.health !== 'healthy') setHealth(this.ctx, config.id, 'healthy', null);
  }
}

function errorOf(e: ProviderError): NonNullable<DispatchResult['error']> {
  return { kind: e.kind, message: e.message, ...(e.details.code ? { code: e.details.code } : {}) };
}
