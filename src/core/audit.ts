/**
 * The audit log: one row per configuration change (tenants, providers, keys, templates, suppressions,
 * domains). Rows name the fields that changed, never their values.
 */
import type { CoreContext } from './context.js';
import type { Sql } from '../store/sql.js';
import { insertAudit, selectAudit, type AuditRecord } from '../store/repos/audit.js';

/** One audit row as returned by {@link listAudit}: its id and the stored record (`fields` are field names only). */
export type AuditEntry = AuditRecord & { id: number };

/**
 * Appends an audit row. Pass the handle of the transaction that makes the change it records (`sql`), so the
 * change and its record commit together.
 * @param action e.g. `tenant.add`, `provider.update`, `key.init`
 * @param target e.g. a tenant id or a provider ref
 * @param fields names of the fields set or changed (never values)
 */
export async function recordAudit(
  ctx: CoreContext,
  sql: Sql,
  action: string,
  target: string,
  tenantId: string | null,
  fields: string[] = [],
): Promise<void> {
  await insertAudit(sql, { at: ctx.clock.now().toISOString(), actor: ctx.actor, action, target, tenantId, fields });
}

/** Audit rows, newest last, optionally for one tenant and since a time; at most `limit` (default 1000), the newest. */
export async function listAudit(ctx: CoreContext, filter: { tenantId?: string; since?: Date; limit?: number } = {}): Promise<AuditEntry[]> {
  return selectAudit(ctx.sql, { tenantId: filter.tenantId, since: filter.since?.toISOString(), limit: filter.limit ?? 1000 });
}
