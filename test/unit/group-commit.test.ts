/**
 * The run ledger's group commit on a real SQLite store file: it never lands inside another caller's open
 * transaction of the same executor, and it waits for a lock held past the busy timeout without blocking the
 * event loop (timers run meanwhile).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../src/store/db.js';
import { SqliteSql } from '../../src/store/sql.js';
import { GroupCommit } from '../../src/store/group-commit.js';

let dir: string;
let file: string;
let db: Db;
let sql: SqliteSql;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-group-commit-'));
  file = path.join(dir, 'sb.db');
  db = openStore(file);
  sql = new SqliteSql(db);
});

afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const meta = (key: string) => db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
const setMeta = (key: string) => () => void db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run(key, 'x');

describe('GroupCommit', () => {
  it('waits for an open transaction of the executor: its writes survive that transaction rolling back', async () => {
    const gc = new GroupCommit(sql);
    let committed: Promise<void> | undefined;
    await expect(
      sql.tx(async (t) => {
        await t.run("INSERT INTO meta (key, value) VALUES ('in-tx', 'x')");
        committed = gc.commit(setMeta('grouped'));
        // Several turns of the event loop pass while the transaction is open: the group commit is due in them.
        await new Promise((resolve) => setTimeout(resolve, 30));
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    await committed;
    expect(meta('in-tx')).toBeUndefined();
    expect(meta('grouped')?.value).toBe('x');
  });

  it('a lock held by another connection past the busy timeout: timers run while it waits, then it commits', async () => {
    db.pragma('busy_timeout = 20');
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    let ticks = 0;
    const tick = setInterval(() => ticks++, 10);
    setTimeout(() => other.exec('COMMIT'), 300);
    try {
      await new GroupCommit(sql).commit(setMeta('after-lock'));
    } finally {
      clearInterval(tick);
      if (other.inTransaction) other.exec('ROLLBACK');
      other.close();
    }
    expect(meta('after-lock')?.value).toBe('x');
    // The event loop turned while the commit waited (a synchronous retry would have held it the whole time).
    expect(ticks).toBeGreaterThan(3);
  });
});
