/**
 * The audit log's table (`audit_log`): append-only (the schema refuses UPDATE and DELETE), one row per
 * configuration change, naming fields, never values.
 */
import type { Sql } from '../sql.js';

/** One audit row. `at` is ISO 8601 UTC; `fields` are field names only. */
export interface AuditRecord {
  at: string;
  actor: string;
  action: string;
  target: string;
  tenantId: string | null;
  fields: string[];
}

/** Appends one audit row. Run it on the handle of the transaction that makes the change it records. */
export async function insertAudit(sql: Sql, r: AuditRecord): Promise<void> {
  await sql.run(
    'INSERT INTO audit_log (at, actor, action, target, tenant_id, fields) VALUES (?, ?, ?, ?, ?, ?)',
    r.at,
    r.actor,
    r.action,
    r.target,
    r.tenantId,
    JSON.stringify([...r.fields].sort()),
  );
}

/**
 * Audit rows, newest last: the newest `limit` rows, optionally of one tenant and at or after `since` (ISO 8601).
 * @returns rows with their id (ascending).
 */
export async function selectAudit(
  sql: Sql,
  filter: { tenantId?: string; since?: string; limit: number },
): Promise<Array<AuditRecord & { id: number }>> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.tenantId) {
    where.push('tenant_id = ?');
    args.push(filter.tenantId);
  }
  if (filter.since) {
    where.push('at >= ?');
    args.push(filter.since);
  }
  const rows = await sql.all<{ id: number; at: string; actor: string; action: string; target: string; tenant_id: string | null; fields: string }>(
    `SELECT id, at, actor, action, target, tenant_id, fields FROM audit_log
     ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ?`,
    ...args,
    filter.limit,
  );
  return rows.reverse().map((r) => ({
    id: r.id,
    at: r.at,
    actor: r.actor,
    action: r.action,
    target: r.target,
    tenantId: r.tenant_id,
    fields: JSON.parse(r.fields) as string[],
  }));
}
