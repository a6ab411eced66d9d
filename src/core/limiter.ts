/**
 * The request limiter of one provider (DESIGN §8: never above the configured rate in any one-second window).
 *
 * Why requests are counted until they finish, not when they start: the provider counts a request when it
 * arrives, and that moment lies somewhere between our start and the answer. Connection pools (nodemailer's
 * SMTP pool), connection set-up, TLS handshakes and slow commands move it by a different amount for each
 * request, so a limiter that only spaces request *starts* one second apart (p-queue's strict interval) lets
 * requests that were held up arrive together with the next second's: 216 in one second at `--rate 200`,
 * measured at an SMTP sink. This limiter instead lets a request start only while fewer than `rate` requests
 * are in flight or finished less than one second ago.
 *
 * Proof that no window [t, t + 1 s) at the provider holds more than `rate` arrivals: take `rate + 1` arrivals
 * in one such window and let j be the request of them that started last. Each other one i started before j
 * and arrived at a_i ≥ t, so it finished at c_i ≥ a_i ≥ t > a_j − 1 s ≥ s_j − 1 s: at j's start it was in
 * flight or had finished less than a second before. That makes `rate` such requests at s_j, and j would not
 * have been let through. This holds whatever the delays on the wire are.
 *
 * The cost: each of the `rate` slots is busy for the request's latency L plus one second, so a run that is
 * bound by the rate averages rate · 1 s / (1 s + L): −0.5 % at L = 5 ms, −4.8 % at L = 50 ms.
 *
 * Several processes (the workers of one batch on a PostgreSQL store) share a rate through a {@link SharedRate}
 * ({@link RequestLimiter.share}): a request then also needs a token of a grant taken from the shared counter,
 * and a grant counts there until one second after the last of its requests finished — the same rule, so the
 * same proof holds across processes, with "started" read as "granted" (a grant comes before its requests start,
 * and is marked done after they finished). Tokens are taken several at a time when several requests wait.
 */
import type { Clock } from './context.js';

/** Length of the rate window in ms. */
const WINDOW_MS = 1000;

/**
 * At most `limit` tasks at once: the bulk-send runner's `--concurrency` (its loop waits for {@link TaskSlots.free}
 * before it starts each request's rows). A counter and two lists of waiters, where the runner used a p-queue:
 * per task p-queue made two promises, emitted five events (eventemitter3) and kept the task's function in its
 * array until it compacted it; at 5,000 one-row tasks that was about 2 % of a bulk SMTP run's CPU (README, issue
 * 15). A started task holds nothing here once it has ended.
 */
export class TaskSlots {
  private running = 0;
  private readonly freed: Array<() => void> = [];
  private readonly idle: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  /** Resolves (at once when one is) when fewer than `limit` tasks run. */
  free(): Promise<void> {
    if (this.running < this.limit) return Promise.resolve();
    return new Promise((resolve) => this.freed.push(resolve));
  }

  /**
   * Starts `task` now, in a slot (take one with {@link free} first, or it runs beyond the limit).
   * @returns what `task` resolves or rejects with.
   */
  run<T>(task: () => Promise<T>): Promise<T> {
    this.running++;
    const done = () => {
      this.running--;
      this.freed.shift()?.();
      if (this.running === 0) for (const resolve of this.idle.splice(0)) resolve();
    };
    const p = task();
    p.then(done, done);
    return p;
  }

  /** Resolves once no task runs (at once when none does). */
  onIdle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }
}

/**
 * A rate shared by several processes (see the module comment). Implementations: `store/repos/rates.ts` on
 * PostgreSQL.
 */
export interface SharedRate {
  /**
   * Takes up to `want` tokens (≥ 1). @returns the tokens granted (`n`, maybe fewer, maybe 0) under grant id
   * `grant`; when none, `waitMs`: when to ask again. @throws (rejects with) the store's error.
   */
  take(want: number): Promise<{ n: number; grant: number; waitMs: number }>;
  /** Every request of grant `grant` finished (or will not start): from now it counts for one more second only. */
  done(grant: number): void;
}

/** Limits of one provider; both optional. */
export interface RequestLimits {
  /** Most requests per second (see {@link RequestLimiter}). */
  rate?: number;
  /** Most requests in flight at once. */
  concurrency?: number;
}

/**
 * Runs requests to one provider within its concurrency and rate, in the order they were given, and can be
 * paused (after a 429). Both limits are counted here (one waiting list, no task queue per request: a bulk send
 * passes every row through it, and a test send loads no queue library); the rate as described in this
 * module's comment.
 */
export class RequestLimiter {
  private readonly rate: number | undefined;
  private readonly concurrency: number;
  /** Requests admitted and not finished. */
  private inFlight = 0;
  /** Finish times (epoch ms) of recent requests, oldest first, from index `head` on. */
  private finished: number[] = [];
  private head = 0;
  /** Requests waiting for a slot, in order: each is told whether it was admitted. */
  private readonly waiting: Array<(admitted: boolean) => void> = [];
  /** Epoch ms until which nothing starts (a provider's Retry-After). */
  private pausedUntil = 0;
  private timerAt = Number.POSITIVE_INFINITY;
  /** The shared rate, when several processes share this provider's rate (see {@link share}). */
  private shared: SharedRate | undefined;
  /** Grants of the shared rate still in use: tokens not yet used and requests running on them. */
  private readonly grants = new Map<number, { unused: number; running: number }>();
  /** A take from the shared rate is under way. */
  private taking = false;

  constructor(
    limits: RequestLimits,
    private readonly clock: Pick<Clock, 'now' | 'sleep'>,
    private readonly signal?: AbortSignal,
  ) {
    this.rate = limits.rate;
    this.concurrency = limits.concurrency ?? Number.POSITIVE_INFINITY;
    // After an abort nothing waiting starts (and unused shared tokens are given up).
    signal?.addEventListener(
      'abort',
      () => {
        this.waiting.splice(0).forEach((tell) => tell(false));
        this.dropUnused();
      },
      { once: true },
    );
  }

  /**
   * From now on every request also needs a token of `shared` (only with a rate: a limiter without one ignores
   * it). The local rate still holds too.
   */
  share(shared: SharedRate): void {
    if (this.rate !== undefined) this.shared = shared;
  }

  /** The rate this limiter holds (requests per second), if any. */
  get rateLimit(): number | undefined {
    return this.rate;
  }

  /** Gives up the shared tokens no request uses (the run stops). */
  dropUnused(): void {
    for (const [id, g] of this.grants) {
      g.unused = 0;
      if (g.running === 0) {
        this.grants.delete(id);
        this.shared?.done(id);
      }
    }
  }

  /**
   * Runs `fn` when a slot is free; resolves or rejects as `fn` does. Once `signal` (of the constructor) has
   * aborted, requests still waiting for a slot do not start: they resolve with `skipped()` instead (without
   * it, reject with "stopped").
   */
  async run<T>(fn: () => Promise<T>, skipped?: () => T): Promise<T> {
    const slot = await this.admit();
    if (slot === false) {
      if (skipped) return skipped();
      throw new Error('stopped before the request started');
    }
    try {
      return await fn();
    } finally {
      this.release(slot);
    }
  }

  /** Starts nothing for `ms` (a pause already running for longer stays). */
  pauseFor(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.now() + ms);
  }

  private now(): number {
    return this.clock.now().getTime();
  }

  /**
   * Resolves once the request may start: true, or the shared grant whose token it uses; false if the signal
   * aborted first.
   */
  private admit(): Promise<boolean | number> {
    if (this.signal?.aborted) return Promise.resolve(false);
    if (this.waiting.length === 0 && this.free(this.now())) {
      const grant = this.token();
      if (grant !== false) {
        this.inFlight++;
        return Promise.resolve(grant);
      }
    }
    return new Promise((resolve) => {
      this.waiting.push((admitted) => resolve(admitted ? this.lastToken : false));
      this.wake();
    });
  }

  /** The grant of the token {@link wake} just handed to a waiting request (true without a shared rate). */
  private lastToken: boolean | number = true;

  /** Uses a shared token: its grant id; true without a shared rate; false when none is at hand (one is asked for). */
  private token(): boolean | number {
    if (!this.shared) return true;
    for (const [id, g] of this.grants) {
      if (g.unused > 0) {
        g.unused--;
        g.running++;
        return id;
      }
    }
    this.takeTokens();
    return false;
  }

  /** Asks the shared rate for as many tokens as requests could start now (at least one). */
  private takeTokens(): void {
    if (this.taking || !this.shared) return;
    this.taking = true;
    const want = Math.max(1, Math.min(this.waiting.length + 1, this.concurrency - this.inFlight, this.rate ?? 1));
    this.shared.take(want).then(
      (r) => {
        this.taking = false;
        if (r.n > 0) {
          this.grants.set(r.grant, { unused: r.n, running: 0 });
          if (this.signal?.aborted) this.dropUnused();
          this.wake();
        } else this.wakeIn(r.waitMs);
      },
      // The store did not answer: ask again shortly (the run's other writes report a store that is gone).
      () => {
        this.taking = false;
        this.wakeIn(200);
      },
    );
  }

  private release(slot: boolean | number): void {
    this.inFlight--;
    if (this.rate !== undefined) this.finished.push(this.now());
    if (typeof slot === 'number') {
      const g = this.grants.get(slot);
      if (g && --g.running === 0 && g.unused === 0) {
        this.grants.delete(slot);
        this.shared?.done(slot);
      }
    }
    this.wake();
  }

  /** Wakes the waiting requests again in `ms`. */
  private wakeIn(ms: number): void {
    void this.clock.sleep(Math.max(1, ms)).then(() => this.wake());
  }

  /** Whether a request may start at `now`; drops finish times that left the window. */
  private free(now: number): boolean {
    if (now < this.pausedUntil || this.inFlight >= this.concurrency) return false;
    if (this.rate === undefined) return true;
    // A request that finished at c (ms, rounded down) no longer counts once c + 1 ≤ now − WINDOW_MS: its true
    // finish time is then more than a full window before this start, whatever the sub-millisecond parts were.
    while (this.head < this.finished.length && this.finished[this.head]! + 1 <= now - WINDOW_MS) this.head++;
    if (this.head > 1024 && this.head * 2 > this.finished.length) {
      this.finished = this.finished.slice(this.head);
      this.head = 0;
    }
    return this.inFlight + (this.finished.length - this.head) < this.rate;
  }

  /** Lets waiting requests start while there is room, then sets a timer for the next moment room appears. */
  private wake(): void {
    const now = this.now();
    while (this.waiting.length > 0 && this.free(now)) {
      const grant = this.token();
      if (grant === false) break;
      this.inFlight++;
      this.lastToken = grant;
      this.waiting.shift()!(true);
    }
    if (this.waiting.length === 0) return;
    // Room appears when the pause ends or when the oldest finish leaves the window; a request still in
    // flight frees nothing before it finishes (release() wakes then).
    let at = this.pausedUntil;
    if (this.rate !== undefined && this.head < this.finished.length && this.inFlight + this.finished.length - this.head >= this.rate) {
      at = Math.max(at, this.finished[this.head]! + 1 + WINDOW_MS);
    }
    if (at <= now || at >= this.timerAt) return;
    this.timerAt = at;
    void this.clock.sleep(at - now).then(() => {
      if (this.timerAt === at) this.timerAt = Number.POSITIVE_INFINITY;
      this.wake();
    });
  }
}
