/**
 * The stored templates' table (`templates`): per tenant and name, a subject, an HTML body and a text body (each
 * optional text), created and updated times (ISO 8601 UTC).
 */
import { byteOrder, type Sql } from '../sql.js';

/** A template row as stored. */
export interface TemplateRow {
  tenant_id: string;
  name: string;
  subject: string | null;
  html: string | null;
  text: string | null;
  created_at: string;
  updated_at: string;
}

const TEMPLATE_COLUMNS = 'tenant_id, name, subject, html, text, created_at, updated_at';

/** One template of a tenant, or undefined. */
export async function selectTemplate(sql: Sql, tenantId: string, name: string): Promise<TemplateRow | undefined> {
  return sql.get<TemplateRow>(`SELECT ${TEMPLATE_COLUMNS} FROM templates WHERE tenant_id = ? AND name = ?`, tenantId, name);
}

/** A tenant's templates by name. */
export async function selectTemplates(sql: Sql, tenantId: string): Promise<TemplateRow[]> {
  return sql.all<TemplateRow>(`SELECT ${TEMPLATE_COLUMNS} FROM templates WHERE tenant_id = ? ORDER BY ${byteOrder(sql, 'name')}`, tenantId);
}

/**
 * Inserts a template; with `replace`, replaces the subject and bodies of the one of the same name instead (keeping
 * its `created_at`). `at` is ISO 8601.
 * @returns false (nothing written) when the name is taken and `replace` is false, also by a transaction that
 * committed meanwhile.
 */
export async function upsertTemplate(
  sql: Sql,
  t: { tenantId: string; name: string; subject: string | null; html: string | null; text: string | null; at: string; replace: boolean },
): Promise<boolean> {
  const r = await sql.run(
    `INSERT INTO templates (tenant_id, name, subject, html, text, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (tenant_id, name) DO ${t.replace ? 'UPDATE SET subject = excluded.subject, html = excluded.html, text = excluded.text, updated_at = excluded.updated_at' : 'NOTHING'}`,
    t.tenantId,
    t.name,
    t.subject,
    t.html,
    t.text,
    t.at,
    t.at,
  );
  return r.changes > 0;
}

/** Deletes a template. @returns whether there was one. */
export async function deleteTemplate(sql: Sql, tenantId: string, name: string): Promise<boolean> {
  return (await sql.run('DELETE FROM templates WHERE tenant_id = ? AND name = ?', tenantId, name)).changes > 0;
}
