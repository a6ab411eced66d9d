/**
 * Group commit: writes queued during one turn of the event loop are committed together, in one transaction,
 * when the turn ends (setImmediate). A bulk send queues a row's `sending` mark, its attempt record and its
 * outcome here instead of committing each on its own: with 16 requests in flight, one commit carries the
 * writes of many rows, and the order of writes is kept.
 *
 * A commit that meets a lock held past the busy timeout is tried again (see `retryBusy`).
 *
 * The crash guarantee stays with the caller: whoever must know a write is durable before acting (a row is
 * `sending` before its request leaves) awaits {@link GroupCommit.commit}.
 */
import { retryBusy, type Db } from './db.js';

/** Queues synchronous store writes and commits them in one transaction per event-loop turn. */
export class GroupCommit {
  private writes: Array<() => void> = [];
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  private scheduled = false;
  /** The first failed commit; every later call throws it. */
  private failure: unknown;

  /** One transaction function for every commit (better-sqlite3 builds a new wrapper per `transaction()` call). */
  private readonly commitAll: (writes: ReadonlyArray<() => void>) => void;

  constructor(db: Db) {
    this.commitAll = db.transaction((writes: ReadonlyArray<() => void>) => {
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
      setImmediate(() => this.run());
    }
  }

  /** Commits everything queued now. @throws the store's error (also for an earlier deferred write). */
  flush(): void {
    this.run();
    if (this.failure !== undefined) throw this.failure;
  }

  private run(): void {
    this.scheduled = false;
    const writes = this.writes;
    const waiters = this.waiters;
    if (writes.length === 0) return;
    this.writes = [];
    this.waiters = [];
    try {
      // A lock held past the busy timeout (a long reader or writer elsewhere) delays the commit, not fails it.
      retryBusy(() => this.commitAll(writes));
    } catch (err) {
      this.failure ??= err;
      for (const w of waiters) w.reject(err);
      return;
    }
    for (const w of waiters) w.resolve();
  }
}
