/**
 * The provider configs' table (`provider_configs`): one row per config, per tenant or system-wide (`tenant_id`
 * NULL), with its settings (JSON text), sealed secrets (blob), masked hints (JSON text), the key version that
 * sealed them and the row's MAC. `enabled` is INTEGER 0/1; times are ISO 8601 UTC.
 */
import { byteOrder, type Sql } from '../sql.js';

/** A whole `provider_configs` row. */
export interface ProviderConfigRow {
  id: number;
  tenant_id: string | null;
  channel: string;
  kind: string;
  name: string;
  priority: number;
  /** 0 or 1. */
  enabled: number;
  /** JSON object text. */
  settings: string;
  sealed_secrets: Buffer | null;
  /** JSON object text: secret name → masked hint. */
  secret_hints: string;
  key_id: number | null;
  health: 'unknown' | 'healthy' | 'unhealthy';
  health_detail: string | null;
  last_verified_at: string | null;
  last_verify_result: string | null;
  created_at: string;
  updated_at: string;
  /** HMAC of the row (core/config-auth.ts); null only in stores not yet upgraded. */
  mac: string | null;
}

/** The columns a new row is inserted with (see {@link insertProviderConfig}). */
export type NewProviderConfigRow = Pick<
  ProviderConfigRow,
  'tenant_id' | 'channel' | 'kind' | 'name' | 'priority' | 'enabled' | 'settings' | 'sealed_secrets' | 'secret_hints' | 'key_id' | 'mac'
>;

/** The columns `provider update` rewrites. */
export type ProviderConfigChange = Pick<ProviderConfigRow, 'settings' | 'priority' | 'enabled' | 'sealed_secrets' | 'secret_hints' | 'key_id' | 'mac'>;

const SELECT = 'SELECT * FROM provider_configs';

/** `tenant_id` as the ref index has it (NULL as ''): SQLite's expression index is on `ifnull`, so it says that. */
function tenantKey(sql: Sql): string {
  return sql.dialect === 'sqlite' ? "ifnull(tenant_id, '')" : "COALESCE(tenant_id, '')";
}

/** Rows as read: ids, priorities and flags as numbers on either engine. */
function norm(r: ProviderConfigRow): ProviderConfigRow {
  return { ...r, id: Number(r.id), priority: Number(r.priority), enabled: Number(r.enabled), key_id: r.key_id === null ? null : Number(r.key_id) };
}

/** The row `id`, or undefined. */
export async function selectProviderConfigById(sql: Sql, id: number): Promise<ProviderConfigRow | undefined> {
  const row = await sql.get<ProviderConfigRow>(`${SELECT} WHERE id = ?`, id);
  return row && norm(row);
}

/** The row of a ref (`tenantId` null for a system default), or undefined. */
export async function selectProviderConfigByRef(sql: Sql, tenantId: string | null, channel: string, name: string): Promise<ProviderConfigRow | undefined> {
  const row = await sql.get<ProviderConfigRow>(`${SELECT} WHERE ${tenantKey(sql)} = ? AND channel = ? AND name = ?`, tenantId ?? '', channel, name);
  return row && norm(row);
}

/**
 * Rows ordered by tenant (system first), channel, priority, id. `tenantId` null means system defaults only,
 * undefined means all; `channel` undefined means every channel.
 */
export async function selectProviderConfigs(sql: Sql, filter: { tenantId?: string | null; channel?: string } = {}): Promise<ProviderConfigRow[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.tenantId !== undefined) {
    where.push(`${tenantKey(sql)} = ?`);
    args.push(filter.tenantId ?? '');
  }
  if (filter.channel) {
    where.push('channel = ?');
    args.push(filter.channel);
  }
  const rows = await sql.all<ProviderConfigRow>(
    `${SELECT} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY ${byteOrder(sql, tenantKey(sql))}, channel, priority, id`,
    ...args,
  );
  return rows.map(norm);
}

/** Every row by id (for re-sealing and re-MACing the whole table). */
export async function selectProviderConfigsById(sql: Sql): Promise<ProviderConfigRow[]> {
  return (await sql.all<ProviderConfigRow>(`${SELECT} ORDER BY id`)).map(norm);
}

/** How many rows hold sealed secrets. */
export async function countSealedProviderConfigs(sql: Sql): Promise<number> {
  const row = await sql.get<{ n: number }>('SELECT count(*) AS n FROM provider_configs WHERE sealed_secrets IS NOT NULL');
  return Number(row?.n ?? 0);
}

/** How many rows a tenant has. */
export async function countTenantProviderConfigs(sql: Sql, tenantId: string): Promise<number> {
  const row = await sql.get<{ n: number }>('SELECT count(*) AS n FROM provider_configs WHERE tenant_id = ?', tenantId);
  return Number(row?.n ?? 0);
}

/**
 * Inserts a row created and updated at `now` (ISO 8601).
 * @returns its id; undefined (nothing written) when its ref is taken, also by a transaction that committed meanwhile.
 */
export async function insertProviderConfig(sql: Sql, r: NewProviderConfigRow, now: string): Promise<number | undefined> {
  const row = await sql.get<{ id: number }>(
    `INSERT INTO provider_configs (tenant_id, channel, kind, name, priority, enabled, settings, sealed_secrets, secret_hints, key_id, mac, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id`,
    r.tenant_id,
    r.channel,
    r.kind,
    r.name,
    r.priority,
    r.enabled,
    r.settings,
    r.sealed_secrets,
    r.secret_hints,
    r.key_id,
    r.mac,
    now,
    now,
  );
  return row === undefined ? undefined : Number(row.id);
}

/** Rewrites a row's settings, priority, flag, secrets and MAC (`provider update`), updated at `now`. */
export async function updateProviderConfig(sql: Sql, id: number, c: ProviderConfigChange, now: string): Promise<void> {
  await sql.run(
    `UPDATE provider_configs SET settings = ?, priority = ?, enabled = ?, updated_at = ?, sealed_secrets = ?, secret_hints = ?, key_id = ?, mac = ?
     WHERE id = ?`,
    c.settings,
    c.priority,
    c.enabled,
    now,
    c.sealed_secrets,
    c.secret_hints,
    c.key_id,
    c.mac,
    id,
  );
}

/** Sets a row's sealed secrets, their key version and its MAC (key rotation, the MAC upgrade). */
export async function updateProviderConfigSeal(sql: Sql, id: number, sealed: Buffer | null, keyId: number | null, mac: string): Promise<void> {
  await sql.run('UPDATE provider_configs SET sealed_secrets = ?, key_id = ?, mac = ? WHERE id = ?', sealed, keyId, mac, id);
}

/** Sets a row's MAC. */
export async function updateProviderConfigMac(sql: Sql, id: number, mac: string): Promise<void> {
  await sql.run('UPDATE provider_configs SET mac = ? WHERE id = ?', mac, id);
}

/** Drops a row's secrets (`key reset`): no blob, no hints, health unknown with a note to enter them again. */
export async function dropProviderConfigSecrets(sql: Sql, id: number, now: string): Promise<void> {
  await sql.run(
    "UPDATE provider_configs SET sealed_secrets = NULL, key_id = NULL, secret_hints = '{}', health = 'unknown', health_detail = 'secrets dropped by key reset: enter them again', updated_at = ? WHERE id = ?",
    now,
    id,
  );
}

/** Deletes a row. @returns false when there was none (removed meanwhile by another process). */
export async function deleteProviderConfig(sql: Sql, id: number): Promise<boolean> {
  return (await sql.run('DELETE FROM provider_configs WHERE id = ?', id)).changes > 0;
}

/** Sets a row's health and its detail (no secret values). */
export async function updateProviderConfigHealth(sql: Sql, id: number, health: ProviderConfigRow['health'], detail: string | null): Promise<void> {
  await sql.run('UPDATE provider_configs SET health = ?, health_detail = ? WHERE id = ?', health, detail, id);
}

/** Records a `provider verify` outcome: when (ISO 8601), the result text, and the health it implies. */
export async function updateProviderConfigVerification(
  sql: Sql,
  id: number,
  v: { at: string; result: string; health: ProviderConfigRow['health']; detail: string | null },
): Promise<void> {
  await sql.run(
    'UPDATE provider_configs SET last_verified_at = ?, last_verify_result = ?, health = ?, health_detail = ? WHERE id = ?',
    v.at,
    v.result,
    v.health,
    v.detail,
    id,
  );
}
