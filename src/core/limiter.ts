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
 */
import type PQueue from 'p-queue';
import type { Clock } from './context.js';

/** Length of the rate window in ms. */
const WINDOW_MS = 1000;

/**
 * Adds `task` to a p-queue so that, once it has started, the queue no longer holds what `task` captures.
 * p-queue (9.x) keeps the functions of started tasks in its array until it compacts it (after more than 100
 * and half the array), and a queue that never drains — a bulk send keeps a few tasks waiting — never resets
 * it: with tasks that capture a 1000-row request, that kept most of a 100,000-row batch in memory. The queue
 * here keeps a small closure whose reference to `task` is dropped when it starts.
 * @returns what `task` resolves or rejects with.
 */
export function addTask<T>(queue: PQueue, task: () => Promise<T>): Promise<T> {
  let pending: (() => Promise<T>) | undefined = task;
  return queue.add(() => {
    const run = pending!;
    pending = undefined;
    return run();
  }) as Promise<T>;
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

  constructor(
    limits: RequestLimits,
    private readonly clock: Pick<Clock, 'now' | 'sleep'>,
    private readonly signal?: AbortSignal,
  ) {
    this.rate = limits.rate;
    this.concurrency = limits.concurrency ?? Number.POSITIVE_INFINITY;
    // After an abort nothing waiting starts.
    signal?.addEventListener('abort', () => this.waiting.splice(0).forEach((tell) => tell(false)), { once: true });
  }

  /**
   * Runs `fn` when a slot is free; resolves or rejects as `fn` does. Once `signal` (of the constructor) has
   * aborted, requests still waiting for a slot do not start: they resolve with `skipped()` instead (without
   * it, reject with "stopped").
   */
  async run<T>(fn: () => Promise<T>, skipped?: () => T): Promise<T> {
    if (!(await this.admit())) {
      if (skipped) return skipped();
      throw new Error('stopped before the request started');
    }
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Starts nothing for `ms` (a pause already running for longer stays). */
  pauseFor(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.now() + ms);
  }

  private now(): number {
    return this.clock.now().getTime();
  }

  /** Resolves true once the request may start, or false if the signal aborted first. */
  private admit(): Promise<boolean> {
    if (this.signal?.aborted) return Promise.resolve(false);
    if (this.waiting.length === 0 && this.free(this.now())) {
      this.inFlight++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.wake();
    });
  }

  private release(): void {
    this.inFlight--;
    if (this.rate !== undefined) this.finished.push(this.now());
    this.wake();
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
      this.inFlight++;
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
