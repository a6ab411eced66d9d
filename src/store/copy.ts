/**
 * `store copy` (issue 14, DESIGN §3): every row of one store into another, empty store, generic over the two
 * stores' {@link Sql} executors: the tables, their columns, primary keys and foreign keys are read from each
 * schema (SQLite `sqlite_master` and `pragma_table_info`/`pragma_foreign_key_list`, PostgreSQL
 * `information_schema`), so no table has code of its own here. Values travel as they are read: both schemas keep
 * booleans as INTEGER 0/1, times and JSON as text and blobs as BLOB/BYTEA (Buffer), so sealed secrets and config
 * MACs arrive byte for byte (the MAC covers values, not the store: see ../crypto/config-mac.ts).
 *
 * How rows move: the source is read inside one read snapshot (SQLite: a deferred read transaction, so writers of
 * the source are not blocked; PostgreSQL: REPEATABLE READ, READ ONLY), table by table in foreign-key order, in
 * pages ordered by primary key; the target is written inside one transaction with multi-row INSERTs that keep
 * every explicit id. Before it commits, the target's row counts are compared with the source's, the caller's
 * `check` runs on it (the MAC check), and on PostgreSQL every identity/serial sequence is moved past the copied
 * ids (`setval`). Any failure rolls the target back: nothing is written.
 *
 * The `meta` table (store id, creation time, markers) is merged, not counted as content: a new store has its own
 * rows there; the source's values replace them (the copy keeps the source's store id, see README "store copy").
 */
import { OperationFailed, UsageError } from '../errors.js';
import type { StoreHandle } from './open.js';
import type { Sql } from './sql.js';

/** One table as the copy sees it. */
export interface CopyTable {
  name: string;
  /** Column names in the schema's order. */
  columns: string[];
  /** Primary key columns in key order (empty: none; then the table is read in one piece). */
  primaryKey: string[];
  /** Tables this one references with a foreign key (itself excluded). */
  parents: string[];
  /** PostgreSQL: columns filled from a sequence (identity or serial); always empty on SQLite. */
  sequenced: string[];
}

/** Rows copied per table, in copy order. */
export interface CopyCount {
  table: string;
  rows: number;
}

/** The table of store-level facts (store id, creation time, markers): merged into the target, not content. */
export const META_TABLE = 'meta';

/**
 * Tables of one engine's own bookkeeping, not copied and not content: PostgreSQL's `schema_version` (SQLite keeps
 * its version in `PRAGMA user_version`). Both stores are at this build's schema version once opened.
 */
const ENGINE_TABLES: ReadonlySet<string> = new Set(['schema_version']);

/** One side of a copy: a store handle's executor, engine and name (`db` for a SQLite store's read snapshot). */
export type CopyEnd = Pick<StoreHandle, 'backend' | 'location' | 'sql' | 'db'>;

/** Rows read from the source per query. */
const PAGE_ROWS = 500;

/** Bound values per INSERT statement (below SQLite's and PostgreSQL's limits). */
const MAX_PARAMS = 900;

/** A quoted SQL identifier. */
function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The tables of a store with their columns, keys and references, parents before children (foreign-key order;
 * ties by name). Internal tables of the engine (`sqlite_*`) are left out.
 */
export async function copyTables(sql: Sql): Promise<CopyTable[]> {
  const tables: CopyTable[] = [];
  if (sql.dialect === 'sqlite') {
    const names = await sql.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name");
    for (const { name } of names) {
      const cols = await sql.all<{ name: string; pk: number }>('SELECT name, pk FROM pragma_table_info(?) ORDER BY cid', name);
      const fks = await sql.all<{ parent: string }>('SELECT DISTINCT "table" AS parent FROM pragma_foreign_key_list(?)', name);
      tables.push({
        name,
        columns: cols.map((c) => c.name),
        primaryKey: cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name),
        parents: fks.map((f) => f.parent).filter((p) => p !== name),
        sequenced: [],
      });
    }
  } else {
    const names = await sql.all<{ name: string }>(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
    );
    for (const { name } of names) {
      const cols = await sql.all<{ name: string; sequenced: number }>(
        `SELECT column_name AS name,
                CASE WHEN is_identity = 'YES' OR column_default LIKE 'nextval(%' THEN 1 ELSE 0 END AS sequenced
         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`,
        name,
      );
      const pk = await sql.all<{ name: string }>(
        `SELECT k.column_name AS name FROM information_schema.table_constraints c
         JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema AND k.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND c.table_name = ? AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position`,
        name,
      );
      const fks = await sql.all<{ parent: string }>(
        `SELECT DISTINCT u.table_name AS parent FROM information_schema.table_constraints c
         JOIN information_schema.constraint_column_usage u ON u.constraint_name = c.constraint_name AND u.constraint_schema = c.table_schema
         WHERE c.table_schema = current_schema() AND c.table_name = ? AND c.constraint_type = 'FOREIGN KEY'`,
        name,
      );
      tables.push({
        name,
        columns: cols.map((c) => c.name),
        primaryKey: pk.map((c) => c.name),
        parents: fks.map((f) => f.parent).filter((p) => p !== name),
        sequenced: cols.filter((c) => Number(c.sequenced) === 1).map((c) => c.name),
      });
    }
  }
  return foreignKeyOrder(tables);
}

/** `tables` with every table after the tables it references (ties kept in name order). */
function foreignKeyOrder(tables: CopyTable[]): CopyTable[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const done = new Set<string>();
  const out: CopyTable[] = [];
  const visit = (t: CopyTable, path: Set<string>): void => {
    if (done.has(t.name) || path.has(t.name)) return;
    path.add(t.name);
    for (const p of [...t.parents].sort()) {
      const parent = byName.get(p);
      if (parent) visit(parent, path);
    }
    path.delete(t.name);
    done.add(t.name);
    out.push(t);
  };
  for (const t of [...tables].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) visit(t, new Set());
  return out;
}

/**
 * The tables both stores have, in the source's foreign-key order, each with the target's sequence columns.
 * @throws OperationFailed when a table of the source is missing from the target or their columns differ (stores
 * of different schema versions), naming the table.
 */
function pairTables(source: CopyTable[], target: CopyTable[], skip: ReadonlySet<string>): Array<{ table: CopyTable; sequenced: string[] }> {
  const targets = new Map(target.map((t) => [t.name, t]));
  const pairs: Array<{ table: CopyTable; sequenced: string[] }> = [];
  for (const t of source) {
    if (skip.has(t.name)) continue;
    const other = targets.get(t.name);
    if (!other) throw new OperationFailed(`store copy: the target has no table ${t.name} (are both stores at the same schema version?); nothing was written`);
    const a = [...t.columns].sort().join(',');
    const b = [...other.columns].sort().join(',');
    if (a !== b) throw new OperationFailed(`store copy: table ${t.name} has columns (${a}) in the source but (${b}) in the target; nothing was written`);
    pairs.push({ table: t, sequenced: other.sequenced });
  }
  return pairs;
}

/**
 * A value read from one engine as the other binds it: a Date (a PostgreSQL time column) as ISO 8601 text, a
 * boolean as 0/1 for SQLite; everything else (numbers, text, Buffer, null) as it is.
 */
function carry(value: unknown, to: Sql['dialect']): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'boolean' && to === 'sqlite') return value ? 1 : 0;
  if (typeof value === 'bigint') return Number(value);
  return value;
}

/** Rows in each table of `tables` but `meta`, on `sql`. */
async function countRows(sql: Sql, tables: CopyTable[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const t of tables) {
    const row = await sql.get<{ n: number }>(`SELECT count(*) AS n FROM ${ident(t.name)}`);
    counts.set(t.name, Number(row?.n ?? 0));
  }
  return counts;
}

/**
 * Reads `t` in pages ordered by its primary key (keyset pagination: `(pk…) > (last…)`), calling `each` with each
 * page. A table without a primary key is read in one piece.
 */
async function readPages(sql: Sql, t: CopyTable, each: (rows: Array<Record<string, unknown>>) => Promise<void>): Promise<void> {
  const cols = t.columns.map(ident).join(', ');
  if (t.primaryKey.length === 0) {
    const rows = await sql.all<Record<string, unknown>>(`SELECT ${cols} FROM ${ident(t.name)}`);
    if (rows.length) await each(rows);
    return;
  }
  const key = t.primaryKey.map(ident);
  const keyList = key.length === 1 ? key[0]! : `(${key.join(', ')})`;
  const after = key.length === 1 ? '?' : `(${key.map(() => '?').join(', ')})`;
  const first = `SELECT ${cols} FROM ${ident(t.name)} ORDER BY ${key.join(', ')} LIMIT ?`;
  const next = `SELECT ${cols} FROM ${ident(t.name)} WHERE ${keyList} > ${after} ORDER BY ${key.join(', ')} LIMIT ?`;
  let last: unknown[] | null = null;
  for (;;) {
    const rows: Array<Record<string, unknown>> = last ? await sql.all(next, ...last, PAGE_ROWS) : await sql.all(first, PAGE_ROWS);
    if (rows.length === 0) return;
    await each(rows);
    if (rows.length < PAGE_ROWS) return;
    const end = rows[rows.length - 1]!;
    last = t.primaryKey.map((k) => end[k]);
  }
}

/** Inserts `rows` of `t` into the target with their explicit ids, as multi-row INSERTs. */
async function insertRows(sql: Sql, t: CopyTable, sequenced: string[], rows: Array<Record<string, unknown>>): Promise<void> {
  const per = Math.max(1, Math.floor(MAX_PARAMS / t.columns.length));
  const override = sql.dialect === 'postgres' && sequenced.length > 0 ? ' OVERRIDING SYSTEM VALUE' : '';
  const tuple = `(${t.columns.map(() => '?').join(', ')})`;
  for (let i = 0; i < rows.length; i += per) {
    const chunk = rows.slice(i, i + per);
    const args = chunk.flatMap((r) => t.columns.map((c) => carry(r[c], sql.dialect)));
    await sql.run(
      `INSERT INTO ${ident(t.name)} (${t.columns.map(ident).join(', ')})${override} VALUES ${chunk.map(() => tuple).join(', ')}`,
      ...args,
    );
  }
}

/**
 * Runs `fn` on a consistent read snapshot of `store`: SQLite a deferred (read) transaction on its connection, so
 * other processes keep writing meanwhile; PostgreSQL a REPEATABLE READ, READ ONLY transaction.
 */
async function readSnapshot<T>(store: CopyEnd, fn: (sql: Sql) => Promise<T>): Promise<T> {
  if (store.backend === 'postgres') {
    return store.sql.tx(async (t) => {
      await t.run('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      return fn(t);
    });
  }
  const db = store.db!;
  db.exec('BEGIN DEFERRED');
  try {
    return await fn(store.sql);
  } finally {
    if (db.inTransaction) db.exec('COMMIT');
  }
}

/** What {@link copyStore} did. */
export interface CopyResult {
  /** Rows copied per table, in the order they were copied (`meta`: the source's rows merged into the target's). */
  tables: CopyCount[];
  /** Every copied row, all tables. */
  totalRows: number;
}

/** Options of {@link copyStore}. */
export interface CopyOptions {
  /**
   * Runs on the target's transaction after the rows are in and counted, before it commits (the MAC check, the
   * target's audit row). A rejection rolls the whole copy back.
   */
  check?: (target: Sql, result: CopyResult) => Promise<void>;
}

/**
 * Copies every row of `source` into `target` (see the module comment): refuses a target that holds any row in
 * any table but `meta` (and an engine's own bookkeeping such as PostgreSQL's `schema_version`); rows keep their ids; counts are compared in the target's transaction; `opts.check` runs
 * last in it.
 * @throws UsageError (exit 2) when the target is not empty, naming the first table with rows; nothing is written.
 * @throws OperationFailed when the schemas differ or a count does not match (nothing is written); whatever
 * `opts.check` throws (nothing is written).
 */
export async function copyStore(source: CopyEnd, target: CopyEnd, opts: CopyOptions = {}): Promise<CopyResult> {
  return readSnapshot(source, async (src) => {
    const sourceTables = (await copyTables(src)).filter((t) => !ENGINE_TABLES.has(t.name));
    return target.sql.tx(async (dst) => {
      const targetTables = (await copyTables(dst)).filter((t) => !ENGINE_TABLES.has(t.name));
      const present = await countRows(dst, targetTables.filter((t) => t.name !== META_TABLE));
      const full = [...present].find(([, n]) => n > 0);
      if (full) {
        throw new UsageError(`--to ${target.location} is not empty (table ${full[0]} has ${full[1]} row${full[1] === 1 ? '' : 's'}): store copy writes only into a new, empty store; nothing was written`);
      }
      const pairs = pairTables(sourceTables, targetTables, new Set([META_TABLE]));
      const expected = await countRows(src, pairs.map((p) => p.table));
      const tables: CopyCount[] = [];
      const meta = sourceTables.find((t) => t.name === META_TABLE);
      if (meta) {
        const rows = await src.all<{ key: string; value: string }>(`SELECT key, value FROM ${ident(META_TABLE)} ORDER BY key`);
        for (const r of rows) {
          await dst.run(`DELETE FROM ${ident(META_TABLE)} WHERE key = ?`, r.key);
          await dst.run(`INSERT INTO ${ident(META_TABLE)} (key, value) VALUES (?, ?)`, r.key, r.value);
        }
        tables.push({ table: META_TABLE, rows: rows.length });
      }
      for (const { table, sequenced } of pairs) {
        let rows = 0;
        await readPages(src, table, async (page) => {
          await insertRows(dst, table, sequenced, page);
          rows += page.length;
        });
        tables.push({ table: table.name, rows });
      }
      const copied = await countRows(dst, pairs.map((p) => p.table));
      for (const { table } of pairs) {
        const want = expected.get(table.name) ?? 0;
        const got = copied.get(table.name) ?? 0;
        const read = tables.find((c) => c.table === table.name)?.rows ?? 0;
        if (got !== want || read !== want) {
          throw new OperationFailed(`store copy: table ${table.name} has ${want} rows in the source but ${got} in the target; nothing was written`);
        }
      }
      if (dst.dialect === 'postgres') {
        for (const { table, sequenced } of pairs) {
          for (const col of sequenced) {
            await dst.get(
              `SELECT setval(pg_get_serial_sequence(?, ?), max(${ident(col)})) AS v FROM ${ident(table.name)} HAVING max(${ident(col)}) IS NOT NULL`,
              table.name,
              col,
            );
          }
        }
      }
      const result: CopyResult = { tables, totalRows: tables.reduce((n, c) => n + c.rows, 0) };
      await opts.check?.(dst, result);
      return result;
    });
  });
}
