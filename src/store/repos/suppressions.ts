/**
 * The suppression list's table (`suppressions`): per tenant, channel and normalised address, a reason, who added
 * it (`source`), when, and an optional expiry (ISO 8601 UTC; null for none). Automatic suppressions from
 * delivery events are written by `repos/events.ts` (`suppressFromEvent`).
 */
import { byteOrder, inList, type Sql } from '../sql.js';

/** A suppression row as stored. Times are ISO 8601 UTC. */
export interface SuppressionRow {
  tenant_id: string;
  channel: string;
  address: string;
  reason: string;
  source: string;
  created_at: string;
  expires_at: string | null;
}

/**
 * Adds a suppression, or refreshes the reason and source of an existing one and clears its expiry. `createdAt` is
 * ISO 8601. Two statements, so that exactly one of two concurrent callers for one address learns it added it (an
 * `INSERT … ON CONFLICT DO NOTHING` waits for the other's uncommitted row on PostgreSQL and then does nothing; a
 * read before the write would let both see "absent" under READ COMMITTED and both audit an add).
 * @returns true if the row was inserted, false if an existing one was updated.
 */
export async function upsertSuppression(
  sql: Sql,
  s: { tenantId: string; channel: string; address: string; reason: string; source: string; createdAt: string },
): Promise<boolean> {
  const inserted = await sql.run(
    `INSERT INTO suppressions (tenant_id, channel, address, reason, source, created_at) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (tenant_id, channel, address) DO NOTHING`,
    s.tenantId,
    s.channel,
    s.address,
    s.reason,
    s.source,
    s.createdAt,
  );
  if (inserted.changes > 0) return true;
  await sql.run(
    'UPDATE suppressions SET reason = ?, source = ?, expires_at = NULL WHERE tenant_id = ? AND channel = ? AND address = ?',
    s.reason,
    s.source,
    s.tenantId,
    s.channel,
    s.address,
  );
  return false;
}

/**
 * The active suppressions (no expiry, or one after `now`, ISO 8601) among `addresses` of a tenant and channel, in
 * one statement: an address by itself for one, else the list condition of the dialect (`inList`).
 * @returns address and reason of each one found, in no particular order.
 */
export async function selectSuppressionReasons(
  sql: Sql,
  tenantId: string,
  channel: string,
  addresses: readonly string[],
  now: string,
): Promise<Array<{ address: string; reason: string }>> {
  // One address (every row of a bulk send through a provider that cannot batch) is looked up by itself: the
  // list condition costs a JSON parse and a temporary table per call on SQLite.
  const list = addresses.length === 1 ? { cond: 'address = ?', arg: addresses[0] } : inList(sql, 'address', addresses);
  return sql.all<{ address: string; reason: string }>(
    `SELECT address, reason FROM suppressions WHERE tenant_id = ? AND channel = ? AND ${list.cond} AND (expires_at IS NULL OR expires_at > ?)`,
    tenantId,
    channel,
    list.arg,
    now,
  );
}

/** Suppressions of a tenant, optionally of one channel and one address, by channel and address (expired ones too). */
export async function selectSuppressions(sql: Sql, tenantId: string, channel?: string, address?: string): Promise<SuppressionRow[]> {
  const q = suppressionsQuery(sql, tenantId, channel, address);
  return sql.all<SuppressionRow>(q.text, ...q.args);
}

/** A tenant's suppressions as {@link selectSuppressions} gives them, read lazily (see `Sql.iterate`): for `suppress list`. */
export function iterateSuppressions(sql: Sql, tenantId: string, channel?: string): AsyncIterable<SuppressionRow> {
  const q = suppressionsQuery(sql, tenantId, channel);
  return sql.iterate<SuppressionRow>(q.text, ...q.args);
}

/** The query of {@link selectSuppressions}: by channel, then address in byte order. */
function suppressionsQuery(sql: Sql, tenantId: string, channel?: string, address?: string): { text: string; args: unknown[] } {
  const where = ['tenant_id = ?'];
  const args: unknown[] = [tenantId];
  if (channel !== undefined) {
    where.push('channel = ?');
    args.push(channel);
  }
  if (address !== undefined) {
    where.push('address = ?');
    args.push(address);
  }
  return {
    text: `SELECT tenant_id, channel, address, reason, source, created_at, expires_at FROM suppressions WHERE ${where.join(' AND ')} ORDER BY channel, ${byteOrder(sql, 'address')}`,
    args,
  };
}

/** Deletes a suppression. @returns whether there was one. */
export async function deleteSuppression(sql: Sql, tenantId: string, channel: string, address: string): Promise<boolean> {
  return (await sql.run('DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ?', tenantId, channel, address)).changes > 0;
}
