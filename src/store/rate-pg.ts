/**
 * A provider's rate shared by the workers of one batch on a PostgreSQL store (issue 14; the rule and its proof:
 * `core/limiter.ts`). The counter is the `rate_grants` table: a worker takes `n` tokens as one grant row under
 * `pg_advisory_xact_lock(key)` (one taker at a time per key), stamped with the database's clock
 * (`clock_timestamp()`, so the hosts' clocks do not matter), when the grants still counting leave room: a grant
 * counts while its worker holds its lease and it is not done, and for one second after it was marked done.
 * Round trips: one transaction per take (lock, count, insert), the done marks of one event-loop turn in one
 * statement.
 */
import type { SharedRate } from '../core/limiter.js';
import type { Sql } from './sql.js';

/** The database's clock in epoch ms. */
const NOW_MS = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';
/** Window length in ms, plus one for the truncation of the stamps to whole ms. */
const WINDOW_MS = 1001;
/** How often (in takes) grants done more than a minute ago are deleted. */
const CLEAN_EVERY = 200;

/** The shared rate `rate` (requests per second) of one key (provider config and batch), for one worker. */
export class PgSharedRate implements SharedRate {
  private doneIds: number[] = [];
  private flushing = false;
  private takes = 0;

  constructor(
    private readonly sql: Sql,
    private readonly key: string,
    private readonly rate: number,
    private readonly batchId: string,
    private readonly worker: string,
  ) {}

  take(want: number): Promise<{ n: number; grant: number; waitMs: number }> {
    return this.sql.tx(async (t) => {
      await t.get('SELECT pg_advisory_xact_lock(hashtextextended(?, 7))', `rate|${this.key}`);
      const u = (await t.get<{ now_ms: number; used: number; oldest: number | null }>(
        `SELECT c.now_ms, COALESCE(sum(g.n), 0) AS used, min(g.done_ms) AS oldest
         FROM (SELECT ${NOW_MS} AS now_ms) c
         LEFT JOIN rate_grants g ON g.rate_key = ? AND (g.done_ms >= c.now_ms - ${WINDOW_MS}
           OR (g.done_ms IS NULL AND EXISTS (SELECT 1 FROM batch_workers w WHERE w.batch_id = g.batch_id AND w.worker = g.worker)))
         GROUP BY c.now_ms`,
        this.key,
      ))!;
      const free = this.rate - Number(u.used);
      if (free <= 0) {
        // Room comes when the oldest done grant leaves the window (or when a running one is done: ask again soon).
        const waitMs = u.oldest === null ? 20 : Math.min(1000, Math.max(1, Number(u.oldest) + WINDOW_MS + 1 - Number(u.now_ms)));
        return { n: 0, grant: 0, waitMs };
      }
      const n = Math.min(want, free);
      const row = (await t.get<{ id: number }>(
        'INSERT INTO rate_grants (rate_key, batch_id, worker, n, granted_ms) VALUES (?, ?, ?, ?, ?) RETURNING id',
        this.key, this.batchId, this.worker, n, Number(u.now_ms),
      ))!;
      if (++this.takes % CLEAN_EVERY === 0) await t.run(`DELETE FROM rate_grants WHERE rate_key = ? AND done_ms < ${NOW_MS} - 60000`, this.key);
      return { n, grant: Number(row.id), waitMs: 0 };
    });
  }

  done(grant: number): void {
    this.doneIds.push(grant);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  /** Marks the grants done so far, in one statement; a failed mark leaves them counting until the worker's lease ends. */
  private async flush(): Promise<void> {
    const ids = this.doneIds;
    this.doneIds = [];
    try {
      if (ids.length > 0) await this.sql.run(`UPDATE rate_grants SET done_ms = ${NOW_MS} WHERE id = ANY(?::bigint[])`, ids);
    } catch {
      // (see above)
    } finally {
      this.flushing = false;
      if (this.doneIds.length > 0) this.done(this.doneIds.pop()!);
    }
  }
}

/** Marks every grant of `worker` on `batchId` done (its run ends). */
export async function endRateGrants(sql: Sql, batchId: string, worker: string): Promise<void> {
  await sql.run(`UPDATE rate_grants SET done_ms = ${NOW_MS} WHERE batch_id = ? AND worker = ? AND done_ms IS NULL`, batchId, worker);
}
