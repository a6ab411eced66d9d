/**
 * The audit log: one row per configuration change (tenants, providers, keys, templates, suppressions,
 * domains). Rows name the fields that changed, never their values.
 */
import type { CoreContext } from './context.js';

/** One audit row as returned by {@link listAudit}. `fields` are field names only. */
export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  tenantId: string | null;
  fields: string[];
}

/**
 * Appends an audit row. Call inside the same transaction as the change it records.
 * @param action e.g. `tenant.add`, `provider.update`, `key.init`
 * @param target e.g. a tenant id or a provider ref
 * @param fields names of the fields set or changed (never values)
 */
export function audit(ctx: CoreContext, action: string, target: string, tenantId: string | null, fields: string[] = []): void {
  ctx.db
    .prepare('INSERT INTO audit_log (at, actor, action, target, tenant_id, fields) VALUES (?, ?, ?, ?, ?, ?)')
    .run(ctx.clock.now().toISOString(), ctx.actor, action, target, tenantId, JSON.stringify([...fields].sort()));
}

/** Audit rows, newest last, optionally for one tenant and since a time (ISO 8601). */
export function listAudit(ctx: CoreContext, filter: { tenantId?: string; since?: Date; limit?: number } = {}): AuditEntry[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.tenantId) {
    where.push('tenant_id = ?');
    args.push(filter.tenantId);
  }
  if (filter.since) {
    where.push('at >= ?');
    args.push(filter.since.toISOString());
  }
  const sql = `SELECT id, at, actor, action, target, tenant_id, fields FROM audit_log
    ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ?`;
  const rows = ctx.db.prepare(sql).all(...args, filter.limit ?? 1000) as Array<{
    id: number;
    at: string;
    actor: string;
    action: string;
    target: string;
    tenant_id: string | null;
    fields: string;
  }>;
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
