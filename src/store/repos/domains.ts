/**
 * The sender domains' table (`domains`): per owner (a tenant, or NULL for the system defaults) and name, the
 * provider config it was created with (joined for its ref), the provider's id for it, the DNS records to publish
 * (JSON text), the status (`pending` | `verified` | `failed`), the last check's one-line detail and time, and
 * created/updated times (ISO 8601 UTC).
 */
import { byteOrder, type Sql } from '../sql.js';

/** A domain row joined with its provider config's tenant, channel and name (null when the config was removed). */
export interface DomainRow {
  id: number;
  tenant_id: string | null;
  domain: string;
  provider_id: number | null;
  provider_kind: string | null;
  external_id: string | null;
  records: string;
  status: string;
  detail: string | null;
  checked_at: string | null;
  created_at: string;
  p_tenant: string | null;
  p_channel: string | null;
  p_name: string | null;
}

const SELECT = `SELECT d.id, d.tenant_id, d.domain, d.provider_id, d.provider_kind, d.external_id, d.records, d.status, d.detail,
  d.checked_at, d.created_at, p.tenant_id AS p_tenant, p.channel AS p_channel, p.name AS p_name
  FROM domains d LEFT JOIN provider_configs p ON p.id = d.provider_id`;

/** Domains, by owner (system first) and name; `owner` given (a tenant id, or '' for the system defaults): that owner's only. */
export async function selectDomains(sql: Sql, owner?: string): Promise<DomainRow[]> {
  return owner === undefined
    ? sql.all<DomainRow>(`${SELECT} ORDER BY ${byteOrder(sql, "COALESCE(d.tenant_id, '')")}, ${byteOrder(sql, 'd.domain')}`)
    : sql.all<DomainRow>(`${SELECT} WHERE COALESCE(d.tenant_id, '') = ? ORDER BY ${byteOrder(sql, 'd.domain')}`, owner);
}

/** One domain by id, or undefined. */
export async function selectDomainById(sql: Sql, id: number): Promise<DomainRow | undefined> {
  return sql.get<DomainRow>(`${SELECT} WHERE d.id = ?`, id);
}

/** Whether the owner (tenant id, or null for the system defaults) has added this domain name. */
export async function selectDomainExists(sql: Sql, tenantId: string | null, domain: string): Promise<boolean> {
  return (await sql.get("SELECT 1 AS one FROM domains WHERE COALESCE(tenant_id, '') = ? AND domain = ?", tenantId ?? '', domain)) !== undefined;
}

/**
 * Inserts a `pending` domain. `records` is JSON text, `at` ISO 8601.
 * @returns its id, or undefined when the owner already has this domain (added meanwhile by another process: the
 *   unique index on owner and name, checked without a read first so that two at once cannot both pass).
 */
export async function insertDomain(
  sql: Sql,
  d: { tenantId: string | null; domain: string; providerId: number | null; providerKind: string; externalId: string | null; records: string; at: string },
): Promise<number | undefined> {
  const r = await sql.get<{ id: number }>(
    `INSERT INTO domains (tenant_id, domain, provider_id, provider_kind, external_id, records, status, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING RETURNING id`,
    d.tenantId,
    d.domain,
    d.providerId,
    d.providerKind,
    d.externalId,
    d.records,
    d.at,
    d.at,
  );
  return r === undefined ? undefined : Number(r.id);
}

/** Records a check or validation: its time (ISO 8601) and detail; the status and records (JSON text) when given. */
export async function updateDomainChecked(sql: Sql, id: number, c: { at: string; detail: string; status: string | null; records: string | null }): Promise<void> {
  await sql.run(
    'UPDATE domains SET checked_at = ?, detail = ?, status = COALESCE(?, status), records = COALESCE(?, records), updated_at = ? WHERE id = ?',
    c.at,
    c.detail,
    c.status,
    c.records,
    c.at,
    id,
  );
}

/** Deletes a domain by id. */
export async function deleteDomain(sql: Sql, id: number): Promise<boolean> {
  return (await sql.run('DELETE FROM domains WHERE id = ?', id)).changes > 0;
}

/** The provider id, name and status of every domain that has a provider config. */
export async function selectDomainsOfProviders(sql: Sql): Promise<Array<{ provider_id: number; domain: string; status: string }>> {
  return sql.all<{ provider_id: number; domain: string; status: string }>('SELECT provider_id, domain, status FROM domains WHERE provider_id IS NOT NULL');
}
