/**
 * The SQLite run ledger (see `ledger.ts` for the interface and its guarantees): better-sqlite3 statements
 * prepared once per run, every write queued on a {@link GroupCommit} (one transaction per event-loop turn).
 * Rows are named by a JSON array of row numbers, so a request's rows (up to 1000) take one statement; a single
 * row (every request of a provider that cannot batch) is named by its number, which spares SQLite the JSON
 * parse and the temporary table of `IN (SELECT value FROM json_each(?))` on every row.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { ItemRow } from '../core/batch/types.js';
import { GroupCommit } from './group-commit.js';
import type { Outcome, OutcomeGroup, RunLedger } from './ledger.js';
import { MESSAGE_INSERT_SQL, messageAttemptArgs, type MessageAttempt } from './repos/messages.js';
import type { SqliteSql } from './sql.js';

/** The SQLite {@link RunLedger}. */
export class SqliteRunLedger implements RunLedger {
  private readonly journal: GroupCommit;
  private readonly pageStmt: BetterSqlite3.Statement;
  private readonly claimStmt: BetterSqlite3.Statement;
  private readonly claimOneStmt: BetterSqlite3.Statement;
  private readonly finishStmt: BetterSqlite3.Statement;
  private readonly finishOneStmt: BetterSqlite3.Statement;
  private readonly releaseStmt: BetterSqlite3.Statement;
  private readonly messageStmt: BetterSqlite3.Statement;

  constructor(
    private readonly sql: SqliteSql,
    readonly batchId: string,
    readonly owner: string,
    private readonly now: () => Date,
  ) {
    const db = sql.db;
    this.journal = new GroupCommit(sql);
    this.pageStmt = db.prepare(
      "SELECT row_no, line_no, recipient, vars, state FROM batch_items WHERE batch_id = ? AND state = 'pending' AND row_no > ? ORDER BY row_no LIMIT ?",
    );
    // Only while this process holds the lease: a run whose lease was taken over claims nothing.
    const claim = `UPDATE batch_items SET state = 'sending', attempts = attempts + 1, updated_at = ?
       WHERE batch_id = ? AND row_no %s AND state = 'pending'
         AND EXISTS (SELECT 1 FROM batches WHERE id = ? AND lease_owner = ?)`;
    this.claimStmt = db.prepare(`${claim.replace('%s', 'IN (SELECT value FROM json_each(?))')} RETURNING row_no`);
    this.claimOneStmt = db.prepare(claim.replace('%s', '= ?'));
    // Outcomes and hand-backs too only while this process holds the lease: a run whose lease was taken over
    // (it was stopped past the lease) never writes rows another run now owns.
    const held = 'AND EXISTS (SELECT 1 FROM batches WHERE id = ? AND lease_owner = ?)';
    const finish = `UPDATE batch_items SET state = ?, provider = ?, message_id = ?, fallback = ?, error = ?, error_kind = ?, updated_at = ? WHERE batch_id = ? AND row_no %s ${held}`;
    this.finishStmt = db.prepare(finish.replace('%s', 'IN (SELECT value FROM json_each(?))'));
    this.finishOneStmt = db.prepare(finish.replace('%s', '= ?'));
    this.releaseStmt = db.prepare(
      `UPDATE batch_items SET state = 'pending', updated_at = ? WHERE batch_id = ? AND row_no IN (SELECT value FROM json_each(?)) AND state = 'sending' ${held}`,
    );
    this.messageStmt = db.prepare(MESSAGE_INSERT_SQL);
  }

  page(cursor: number, limit: number): Promise<ItemRow[]> {
    return this.sql.exclusive(() => this.pageStmt.all(this.batchId, cursor, limit) as ItemRow[]);
  }

  async claim(rows: readonly number[]): Promise<boolean> {
    let ok = false;
    await this.journal.commit(() => {
      const now = this.now().toISOString();
      if (rows.length === 1) {
        ok = this.claimOneStmt.run(now, this.batchId, rows[0], this.batchId, this.owner).changes === 1;
        return;
      }
      const got = this.claimStmt.all(now, this.batchId, JSON.stringify(rows), this.batchId, this.owner) as Array<{ row_no: number }>;
      ok = got.length === rows.length;
      // All or none: rows claimed of a request that cannot leave go back at once.
      if (!ok && got.length > 0) this.release(got.map((g) => g.row_no), now);
    });
    return ok;
  }

  settle(groups: readonly OutcomeGroup[]): Promise<void> {
    return this.journal.commit(() => {
      const now = this.now().toISOString();
      for (const g of groups) {
        if (g.outcome.state === 'pending') this.release(g.rows, now);
        else this.finish(g.rows, g.outcome, now);
      }
    });
  }

  logAttempts(rows: readonly MessageAttempt[]): void {
    if (rows.length === 0) return;
    this.journal.defer(() => {
      for (const r of rows) this.messageStmt.run(...messageAttemptArgs(r));
    });
  }

  flush(): Promise<void> {
    return this.journal.flush();
  }

  private finish(rows: readonly number[], o: Outcome, now: string): void {
    const args = [o.state, o.provider, o.messageId, o.fallback ? 1 : 0, o.error, o.errorKind, now, this.batchId] as const;
    if (rows.length === 1) this.finishOneStmt.run(...args, rows[0], this.batchId, this.owner);
    else this.finishStmt.run(...args, JSON.stringify(rows), this.batchId, this.owner);
  }

  private release(rows: readonly number[], now: string): void {
    this.releaseStmt.run(now, this.batchId, JSON.stringify(rows), this.batchId, this.owner);
  }
}
