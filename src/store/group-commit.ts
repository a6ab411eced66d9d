/**
 * Group commit: writes queued during one turn of the event loop are committed together, in one transaction,
 * when the turn ends (setImmediate). A bulk send queues a row's `sending` mark, its attempt record and its
 * outcome here instead of committing each on its own: with 16 requests in flight, one commit carries the
 * writes of many rows, and the order of writes is kept (commits run one after another).
 *
 * A commit runs through {@link SqliteSql.exclusive}, so never inside another caller's open transaction of the
 * same executor. A commit that meets a lock held past the busy timeout (another process) is tried again after
 * an asynchronous pause (see `retryBusyAsync`): timers keep running meanwhile, so the run's lease renewal does.
 *
 * The crash guarantee stays with the caller: whoever must know a write is durable before acting (a row is
 * `sending` before its request leaves) awaits {@link GroupCommit.commit}.
 */
import { retryBusyAsync, type SqliteSql } from './sql.js';

/** Queues synchronous store writes and commits them in one transaction per event-loop turn. */
export class GroupCommit {
  private writes: Array<() => void> = [];
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  /** The first failed commit; every later call throws it. */
  private failure: unknown;
  /** The last commit started (commits run in order). */
  private tail: Promise<void> = Promise.resolve();

  /** One transaction function for every commit (better-sqlite3 builds a new wrapper per `transaction()` call). */
  private readonly commitAll: (writes: ReadonlyArray<() => void>) => void;

  constructor(private readonly sql: SqliteSql) {
    this.commitAll = sql.db.transaction((writes: ReadonlyArray<() => void>) => {
      for (const w of writes) w();
    });
  }

  /** Queues `write`; resolves once it is committed. @throws (rejects with) the store's error. */
  commit(write: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.defer(write);
      this.waiters.push({ resolve, reject });
    });
  }

  /** Queues `write` without waiting for it. A failure rejects the next {@link commit} and {@link flush}. */
  defer(write: () => void): void {
    if (this.failure !== undefined) throw this.failure;
    this.writes.push(write);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.run());
    }
  }

  /** Commits everything queued now. @throws (rejects with) the store's error (also for an earlier deferred write). */
  async flush(): Promise<void> {
    await this.run();
    if (this.failure !== undefined) throw this.failure;
  }

  /** Starts a commit of what is queued, after the commits before it; resolves when it (and they) ended. */
  private run(): Promise<void> {
    this.scheduled = false;
    const writes = this.writes;
    const waiters = this.waiters;
    if (writes.length === 0) return this.tail;
    this.writes = [];
    this.waiters = [];
    this.tail = this.tail.then(async () => {
      try {
        if (this.failure !== undefined) throw this.failure;
        // Fast path: no transaction of the executor is open, commit at once (no await).
        const once = () => (this.sql.busy ? this.sql.exclusive(() => this.commitAll(writes)) : Promise.resolve(this.commitAll(writes)));
        // A lock held past the busy timeout (a long reader or writer elsewhere) delays the commit, not fails it.
        await retryBusyAsync(async () => once());
      } catch (err) {
        this.failure ??= err;
        for (const w of waiters) w.reject(err);
        return;
      }
      for (const w of waiters) w.resolve();
    });
    return this.tail;
  }
}
