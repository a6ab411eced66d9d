// Workers' leases on PostgreSQL (issue 14) where a test of the binary cannot reach in reasonable time: a worker on
// another host whose lease expired (the e2e test's killed worker runs on this host and is ended at once, by its
// pid). Its `sending` rows become `unknown`, its reserved rows go back, a live worker's rows are left alone, and the
// dead worker's ledger writes no longer land; the shared rate counts the dead worker's open grants no more.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgSql, type PgSql } from '../../src/store/pg.js';
import { migratePg } from '../../src/store/pg-migrations.js';
import { iterateBatchExport, iterateBatchItems, reapBatchWorkers } from '../../src/store/repos/batches.js';
import { PgRunLedger } from '../../src/store/ledger-pg.js';
import { PgSharedRate } from '../../src/store/rate-pg.js';
import { createTestDatabase } from '../helpers/postgres.js';

let sql: PgSql;
const T0 = '2026-01-01T00:00:00.000Z';
const NOW = '2026-01-01T00:01:00.000Z';
const LIVE = 'live@host-a/1', DEAD = 'dead@host-b/2';

beforeAll(async () => {
  sql = createPgSql((await createTestDatabase('int_workers')).url, 'test');
  await migratePg(sql);
  await sql.run("INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('acme', 'Acme', ?, ?)", T0, T0);
  await sql.run(
    "INSERT INTO batches (id, tenant_id, channel, idempotency_key, input_path, input_hash, template_path, template_hash, template, status, total, created_at) VALUES ('b1', 'acme', 'email', 'k1', 'x', 'h', 't', 'th', '{}', 'running', 6, ?)",
    T0,
  );
  // Rows 1-2: the dead worker's, sending and reserved; 3-4: the live worker's, sending and reserved; 5: sent by the dead one; 6: free.
  const rows: Array<[number, string, string | null]> = [[1, 'sending', DEAD], [2, 'pending', DEAD], [3, 'sending', LIVE], [4, 'pending', LIVE], [5, 'sent', DEAD], [6, 'pending', null]];
  for (const [n, state, worker] of rows) {
    await sql.run("INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, worker, updated_at) VALUES ('b1', ?, ?, ?, '{}', ?, ?, ?)", n, n + 1, `r${n}@example.com`, state, worker, T0);
  }
  await sql.run("INSERT INTO batch_workers (batch_id, worker, lease_expires_at, joined_at) VALUES ('b1', ?, '2026-01-01T00:00:30.000Z', ?), ('b1', ?, '2026-01-01T00:01:30.000Z', ?)", DEAD, T0, LIVE, T0);
});
afterAll(async () => sql?.close());

describe('a worker whose lease expired', () => {
  it('is ended by the next worker: its sending rows unknown, its reserved rows free again, the live worker untouched; its writes no longer land', async () => {
    // The dead worker holds an open grant of 3 of a shared rate of 4: a live worker gets only 1 while the dead one is registered.
    const rate = new PgSharedRate(sql, 'p|b1', 4, 'b1', LIVE);
    await sql.run("INSERT INTO rate_grants (rate_key, batch_id, worker, n, granted_ms) VALUES ('p|b1', 'b1', ?, 3, 0)", DEAD);
    expect((await rate.take(4)).n).toBe(1);

    expect(await reapBatchWorkers(sql, 'b1', NOW)).toBe(1);
    const rows = await sql.all<{ row_no: number; state: string; worker: string | null; error: string | null }>("SELECT row_no, state, worker, error FROM batch_items WHERE batch_id = 'b1' ORDER BY row_no");
    expect(rows.map((r) => [r.row_no, r.state, r.worker])).toEqual([
      [1, 'unknown', DEAD],
      [2, 'pending', null],
      [3, 'sending', LIVE],
      [4, 'pending', LIVE],
      [5, 'sent', DEAD],
      [6, 'pending', null],
    ]);
    expect(rows[0]!.error).toBe('interrupted while sending; outcome unknown');
    expect((await sql.all('SELECT worker FROM batch_workers')).map((w) => (w as { worker: string }).worker)).toEqual([LIVE]);

    // The dead worker's ledger (it was only stopped, say a suspended VM) writes nothing any more.
    const ghost = new PgRunLedger(sql, 'b1', DEAD, () => new Date(NOW));
    expect(await ghost.claim([2])).toBe(false);
    expect(await ghost.page(0, 10)).toEqual([]);
    // The live worker pages the freed rows.
    const live = new PgRunLedger(sql, 'b1', LIVE, () => new Date(NOW));
    expect((await live.page(0, 10)).map((r) => r.row_no)).toEqual([2, 6]);
    expect(await live.claim([2, 6])).toBe(true);

    // The dead worker's open grant no longer counts: 4 − the live worker's 1.
    expect((await rate.take(4)).n).toBe(3);
  });
});

describe('a worker paging a batch', () => {
  it('pages above the last row it reserved first, then rows freed below it', async () => {
    await sql.run(
      "INSERT INTO batches (id, tenant_id, channel, idempotency_key, input_path, input_hash, template_path, template_hash, template, status, total, created_at) VALUES ('b2', 'acme', 'email', 'k2', 'x', 'h', 't', 'th', '{}', 'running', 6, ?)",
      T0,
    );
    for (let n = 1; n <= 6; n++) {
      await sql.run("INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, updated_at) VALUES ('b2', ?, ?, ?, '{}', 'pending', ?)", n, n + 1, `r${n}@example.com`, T0);
    }
    const W = 'pager@host-a/3';
    await sql.run("INSERT INTO batch_workers (batch_id, worker, lease_expires_at, joined_at) VALUES ('b2', ?, '2026-01-01T00:01:30.000Z', ?)", W, T0);
    const ledger = new PgRunLedger(sql, 'b2', W, () => new Date(NOW));
    expect((await ledger.page(0, 2)).map((r) => r.row_no)).toEqual([1, 2]);
    expect((await ledger.page(0, 2)).map((r) => r.row_no)).toEqual([3, 4]);
    // Row 1 is free again (as when a reap gives a dead worker's reserved rows back): rows above the last
    // reserved one come first, then the freed one, then nothing.
    await sql.run("UPDATE batch_items SET worker = NULL WHERE batch_id = 'b2' AND row_no = 1");
    expect((await ledger.page(0, 2)).map((r) => r.row_no)).toEqual([5, 6]);
    expect((await ledger.page(0, 2)).map((r) => r.row_no)).toEqual([1]);
    expect(await ledger.page(0, 2)).toEqual([]);
  });
});

/** A migrated store with tenant `acme`, on one connection so that its table statistics can be flushed on demand. */
async function oneConnectionStore(name: string): Promise<PgSql> {
  const one = createPgSql((await createTestDatabase(name)).url, 'test', 1);
  await migratePg(one);
  await one.run("INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('acme', 'Acme', ?, ?)", T0, T0);
  return one;
}

/** Adds batch `id` of `rows` rows numbered 1…rows, every one in `state` and reserved to `worker`. */
async function addBatch(sql: PgSql, id: string, rows: number, state: string, worker: string | null = null): Promise<void> {
  await sql.run(
    "INSERT INTO batches (id, tenant_id, channel, idempotency_key, input_path, input_hash, template_path, template_hash, template, status, total, created_at) VALUES (?, 'acme', 'email', ?, 'x', 'h', 't', 'th', '{}', 'running', ?, ?)",
    id, id, rows, T0,
  );
  await sql.run(
    "INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, worker, updated_at) SELECT ?, n, n + 1, 'r' || n || '@example.com', '{}', ?, ?, ? FROM generate_series(1, ?::int) n",
    id, state, worker, T0, rows,
  );
}

/** Heap tuples of batch_items read so far on `sql`'s connection (sequential scans and index fetches). */
async function tuplesRead(sql: PgSql): Promise<number> {
  await sql.get('SELECT pg_stat_force_next_flush()');
  return (await sql.get<{ n: number }>("SELECT (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::int AS n FROM pg_stat_user_tables WHERE relname = 'batch_items'"))!.n;
}

describe('reading a large batch the table statistics do not know (no ANALYZE yet)', () => {
  it('`batch show --items` and `batch export` read each row once, not every later row for each page', async () => {
    const one = await oneConnectionStore('int_items_paging');
    try {
      await addBatch(one, 'big', 100000, 'sent');
      for (const read of [() => iterateBatchItems(one, 'big'), () => iterateBatchExport(one, 'big')]) {
        const start = await tuplesRead(one);
        let n = 0;
        let last = 0;
        for await (const r of read()) {
          expect(r.row_no).toBe(last + 1);
          last = r.row_no;
          n++;
        }
        expect(n).toBe(100000);
        // Each row once, and the last row's number. Paged by `row_no > ? ORDER BY row_no LIMIT 1000`, the planner
        // (estimating a few hundred rows) read and sorted every row after the page's start for each page.
        expect((await tuplesRead(one)) - start).toBeLessThan(110000);
      }
    } finally {
      await one.close();
    }
  });
});

describe('Sql.iterate on PostgreSQL (a cursor in a read-only transaction)', () => {
  it('gives every row across fetches of 1,000, with its parameters; a loop that breaks off gives the connection back clean', async () => {
    const one = createPgSql((await createTestDatabase('int_iterate')).url, 'test', 1);
    try {
      const all: number[] = [];
      for await (const r of one.iterate<{ n: number }>('SELECT n::int AS n FROM generate_series(1, ?::int) n WHERE n % ? = 0 ORDER BY n', 5000, 2)) all.push(r.n);
      expect(all).toEqual(Array.from({ length: 2500 }, (_, i) => 2 * (i + 1)));
      let seen = 0;
      for await (const _r of one.iterate('SELECT n FROM generate_series(1, 5000) n')) if (++seen === 1500) break;
      // The pool's one connection: no transaction or cursor left open on it.
      expect(await one.get<{ s: string }>('SELECT pg_catalog.txid_current_if_assigned() IS NULL AS s')).toEqual({ s: true });
      expect(await one.get<{ n: number }>('SELECT count(*)::int AS n FROM pg_cursors')).toEqual({ n: 0 });
      await one.run('CREATE TABLE t (x int)');
      // Inside a transaction: the cursor runs on its connection and sees its writes.
      const inTx = await one.tx(async (t) => {
        await t.run('INSERT INTO t SELECT generate_series(1, 1200)');
        let n = 0;
        for await (const _r of t.iterate('SELECT x FROM t')) n++;
        return n;
      });
      expect(inTx).toBe(1200);
    } finally {
      await one.close();
    }
  });
});

describe('the ledger statements of a batch loaded after the last ANALYZE', () => {
  it('read only the rows they change (not every row of the batch or of the worker)', async () => {
    const one = await oneConnectionStore('int_workers_plan');
    try {
      // An earlier batch, done by another worker, is all the statistics know of; then a new batch comes.
      await addBatch(one, 'old', 3000, 'sent', 'old@host-a/1');
      await one.run('ANALYZE batch_items');
      await addBatch(one, 'new', 3000, 'pending');
      const W = 'new@host-a/2';
      await one.run("INSERT INTO batch_workers (batch_id, worker, lease_expires_at, joined_at) VALUES ('new', ?, '2026-01-01T00:01:30.000Z', ?)", W, T0);
      const ledger = new PgRunLedger(one, 'new', W, () => new Date(NOW));
      // A page of 64 rows looks among the next 256 row numbers and reserves 64 (the batch has 3,000). Its bounds come
      // from the rows it picked: as a join to them, the planner (which thinks the new batch has one row) scanned all
      // of the batch's rows and computed the bounds again for each (measured: 1.1 s a page of 20,000 rows, sends 20×
      // slower), in both the plan for these arguments and the generic one.
      for (const mode of ['auto', 'force_generic_plan']) {
        await one.run(`SET plan_cache_mode = ${mode}`);
        for (let k = 0; k < 6; k++) {
          const start = await tuplesRead(one);
          const page = await ledger.page(0, 64);
          expect(page.map((r) => r.row_no)).toEqual(Array.from({ length: 64 }, (_, i) => (mode === 'auto' ? 0 : 384) + k * 64 + i + 1));
          expect((await tuplesRead(one)) - start, `${mode}, page ${k + 1}`).toBeLessThan(1000);
        }
      }
      await one.run('SET plan_cache_mode = auto');
      expect((await ledger.page(0, 3000)).length).toBe(3000 - 768);
      const before = await tuplesRead(one);
      expect(await ledger.claim([1500, 1501])).toBe(true);
      await ledger.settle([{ rows: [1500, 1501], outcome: { state: 'sent', provider: 'p', messageId: 'm', fallback: false, error: null, errorKind: null } }]);
      await ledger.flush();
      const read = (await tuplesRead(one)) - before;
      // Two statements, two rows each (with the worker's lease check): far below the batch's 3,000 rows.
      expect(read).toBeLessThan(50);
      expect((await one.all<{ state: string }>("SELECT state FROM batch_items WHERE batch_id = 'new' AND row_no IN (1500, 1501)")).map((r) => r.state)).toEqual(['sent', 'sent']);
      // The statements are prepared once per connection: after five runs the server may plan them once for any
      // arguments (a generic plan). Forced here: it must still read only the rows' range.
      await one.run('SET plan_cache_mode = force_generic_plan');
      const generic = await tuplesRead(one);
      expect(await ledger.claim([2500, 2501])).toBe(true);
      await ledger.settle([{ rows: [2500, 2501], outcome: { state: 'sent', provider: 'p', messageId: 'm', fallback: false, error: null, errorKind: null } }]);
      await ledger.flush();
      expect((await tuplesRead(one)) - generic).toBeLessThan(50);
      expect((await one.all<{ state: string }>("SELECT state FROM batch_items WHERE batch_id = 'new' AND row_no IN (2500, 2501)")).map((r) => r.state)).toEqual(['sent', 'sent']);
    } finally {
      await one.close();
    }
  });
});
