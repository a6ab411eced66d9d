/**
 * The tenants' tables: `tenants` (one row per tenant) and `tenant_channels` (the per-channel fallback switch,
 * a row only where it was set; INTEGER 0/1).
 */
import { byteOrder, type Sql } from '../sql.js';

/** A `tenants` row. Times are ISO 8601 UTC. */
export interface TenantRow {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
}

/** A `tenant_channels` row: `fallback` is 0 or 1. */
export interface TenantSwitchRow {
  tenant_id: string;
  channel: string;
  fallback: number;
}

/** The tenant `id`, or undefined. */
export async function selectTenantRow(sql: Sql, id: string): Promise<TenantRow | undefined> {
  return sql.get<TenantRow>('SELECT id, name, created_at, updated_at FROM tenants WHERE id = ?', id);
}

/** All tenants, by id. */
export async function selectTenantRows(sql: Sql): Promise<TenantRow[]> {
  return sql.all<TenantRow>(`SELECT id, name, created_at, updated_at FROM tenants ORDER BY ${byteOrder(sql, 'id')}`);
}

/** The fallback switches of one tenant, or of every tenant when `tenantId` is undefined (one query either way). */
export async function selectTenantSwitches(sql: Sql, tenantId?: string): Promise<TenantSwitchRow[]> {
  return tenantId === undefined
    ? sql.all<TenantSwitchRow>('SELECT tenant_id, channel, fallback FROM tenant_channels')
    : sql.all<TenantSwitchRow>('SELECT tenant_id, channel, fallback FROM tenant_channels WHERE tenant_id = ?', tenantId);
}

/**
 * Inserts a tenant; `now` (ISO 8601) is its creation and update time.
 * @returns false (nothing written) when the id is taken, also by a transaction that committed meanwhile.
 */
export async function insertTenant(sql: Sql, id: string, name: string, now: string): Promise<boolean> {
  const r = await sql.run('INSERT INTO tenants (id, name, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING', id, name, now, now);
  return r.changes > 0;
}

/** Renames a tenant. */
export async function updateTenantName(sql: Sql, id: string, name: string, now: string): Promise<void> {
  await sql.run('UPDATE tenants SET name = ?, updated_at = ? WHERE id = ?', name, now, id);
}

/** Sets one channel's fallback switch of a tenant (insert or replace). */
export async function upsertTenantSwitch(sql: Sql, id: string, channel: string, on: boolean): Promise<void> {
  await sql.run(
    `INSERT INTO tenant_channels (tenant_id, channel, fallback) VALUES (?, ?, ?)
     ON CONFLICT (tenant_id, channel) DO UPDATE SET fallback = excluded.fallback`,
    id,
    channel,
    on ? 1 : 0,
  );
}

/** Sets a tenant's `updated_at` (ISO 8601). */
export async function touchTenant(sql: Sql, id: string, now: string): Promise<void> {
  await sql.run('UPDATE tenants SET updated_at = ? WHERE id = ?', now, id);
}

/**
 * Deletes a tenant and its message log; the schema's cascades remove its switches, provider configs, templates,
 * domains, suppressions and batches. Run inside a transaction.
 */
export async function deleteTenantCascade(sql: Sql, id: string): Promise<void> {
  await sql.run('DELETE FROM messages WHERE tenant_id = ?', id);
  await sql.run('DELETE FROM tenants WHERE id = ?', id);
}
