/**
 * The master key's versions (`keys`: fingerprint only, the key itself is never stored) and the store's `meta`
 * table (store id, markers such as `config_macs`).
 */
import type { Sql } from '../sql.js';

/** A `keys` row with how many provider configs have secrets sealed under it. Times are ISO 8601 UTC. */
export interface KeyVersionRow {
  id: number;
  fingerprint: string;
  created_at: string;
  retired_at: string | null;
  /** Provider configs with sealed secrets under this version. */
  n: number;
}

/** Every key version, oldest first, with its count of sealed configs. */
export async function selectKeyVersionRows(sql: Sql): Promise<KeyVersionRow[]> {
  const rows = await sql.all<KeyVersionRow>(
    `SELECT k.id, k.fingerprint, k.created_at, k.retired_at,
            (SELECT count(*) FROM provider_configs p WHERE p.key_id = k.id AND p.sealed_secrets IS NOT NULL) AS n
     FROM keys k ORDER BY k.id`,
  );
  return rows.map((r) => ({ ...r, id: Number(r.id), n: Number(r.n) }));
}

/**
 * The id of the current (unretired) key version, or undefined for an unbound store. `lock` (inside a transaction;
 * PostgreSQL `FOR SHARE`/`FOR UPDATE`, nothing on SQLite, whose write transactions already exclude each other):
 * `share` for a write that seals or MACs under the current key, `update` for the rotation that retires it, so the
 * two never overlap (a rotation waits for the sealing writes under way; a write that waited for a rotation finds
 * the new key).
 */
export async function selectCurrentKeyId(sql: Sql, lock?: 'share' | 'update'): Promise<number | undefined> {
  const suffix = lock && sql.dialect === 'postgres' ? (lock === 'share' ? ' FOR SHARE' : ' FOR UPDATE') : '';
  const row = await sql.get<{ id: number }>(`SELECT id FROM keys WHERE retired_at IS NULL${suffix}`);
  return row === undefined ? undefined : Number(row.id);
}

/**
 * Locks the key versions against every other writer of them until the transaction ends (run it first in the
 * transaction that checks for a current key and then binds one). PostgreSQL `LOCK TABLE … SHARE ROW EXCLUSIVE`
 * (readers go on; a second binder waits, then sees the first one's key); a no-op on SQLite, whose write
 * transactions (`BEGIN IMMEDIATE`) already exclude each other.
 */
export async function lockKeyVersions(sql: Sql): Promise<void> {
  if (sql.dialect === 'postgres') await sql.run('LOCK TABLE keys IN SHARE ROW EXCLUSIVE MODE');
}

/** Records a new key version. @returns its id. */
export async function insertKeyVersion(sql: Sql, fingerprint: string, now: string): Promise<number> {
  const row = await sql.get<{ id: number }>('INSERT INTO keys (fingerprint, created_at) VALUES (?, ?) RETURNING id', fingerprint, now);
  return Number(row!.id);
}

/** Retires key version `id` at `now` (ISO 8601). */
export async function retireKeyVersion(sql: Sql, id: number, now: string): Promise<void> {
  await sql.run('UPDATE keys SET retired_at = ? WHERE id = ?', now, id);
}

/** Retires every unretired key version at `now` (ISO 8601). */
export async function retireCurrentKeyVersions(sql: Sql, now: string): Promise<void> {
  await sql.run('UPDATE keys SET retired_at = ? WHERE retired_at IS NULL', now);
}

/** The `meta` value of `key`, or undefined. */
export async function selectMetaValue(sql: Sql, key: string): Promise<string | undefined> {
  const row = await sql.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', key);
  return row?.value;
}

/** Sets `meta.key` to `value` unless it is set already. */
export async function insertMetaIfAbsent(sql: Sql, key: string, value: string): Promise<void> {
  await sql.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING', key, value);
}

/** The store's id (`meta.store_id`: the keychain account of its key), or '' when it has none. */
export async function selectMetaStoreId(sql: Sql): Promise<string> {
  return (await selectMetaValue(sql, 'store_id')) ?? '';
}
