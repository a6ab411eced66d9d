/**
 * Stored templates (`template add|list|show|preview|remove`): a subject, an HTML body and/or a text body per
 * tenant, all Handlebars, kept in the store's `templates` table and usable as `send batch --template <name>`.
 * Checked (they must parse) when stored; audited.
 */
import type { CoreContext } from './context.js';
import { recordAudit } from './audit.js';
import { NotFoundError, UsageError } from '../errors.js';
import { compileTemplate, type Rendered, type TemplateSource } from './templates.js';
import { getTenant } from './tenants.js';
import { openCsv } from './csv.js';
import { deleteTemplate, selectTemplate, selectTemplates, upsertTemplate, type TemplateRow as Row } from '../store/repos/templates.js';

/** A stored template. At least one of `html` and `text` is set. */
export interface StoredTemplate {
  tenantId: string;
  name: string;
  subject: string | null;
  html: string | null;
  text: string | null;
  /** Variables the template needs a non-empty value for, and those it only tests with {{#if}}. */
  required: string[];
  optional: string[];
  createdAt: string;
  updatedAt: string;
}

/** The sources a batch compiles: the HTML body (text part from `text` or derived), or the text body. */
export function storedSource(t: Pick<StoredTemplate, 'subject' | 'html' | 'text'>): TemplateSource {
  const subject = t.subject ?? undefined;
  if (t.html !== null) return { subject, body: t.html, html: true, ...(t.text !== null ? { text: t.text } : {}) };
  return { subject, body: t.text ?? '', html: false };
}

function toTemplate(r: Row): StoredTemplate {
  const c = compileTemplate(storedSource(r));
  return {
    tenantId: r.tenant_id,
    name: r.name,
    subject: r.subject,
    html: r.html,
    text: r.text,
    required: c.required,
    optional: c.optional,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** What `template add` stores. */
export interface TemplateInput {
  tenantId: string;
  name: string;
  subject?: string;
  html?: string;
  text?: string;
  /** Overwrite a template of the same name instead of failing. */
  replace?: boolean;
}

/**
 * Stores a template (audited, field names only).
 * @throws UsageError (bad name, no body, a part that does not parse, name taken without `replace`),
 *   NotFoundError (tenant).
 */
export async function addTemplate(ctx: CoreContext, input: TemplateInput): Promise<StoredTemplate> {
  await getTenant(ctx, input.tenantId);
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(input.name)) throw new UsageError(`template name ${input.name}: use 1-63 lower-case letters, digits, . _ -`);
  if (input.html === undefined && input.text === undefined) throw new UsageError('a template needs --html-file or --text-file (or both)');
  compileTemplate(storedSource({ subject: input.subject ?? null, html: input.html ?? null, text: input.text ?? null }));
  const now = ctx.clock.now().toISOString();
  await ctx.sql.tx(async (t) => {
    const exists = (await selectTemplate(t, input.tenantId, input.name)) !== undefined;
    const taken = () => new UsageError(`template ${input.name} exists for tenant ${input.tenantId}; use --replace to overwrite it`);
    if (exists && !input.replace) throw taken();
    // Without --replace the insert refuses a taken name too: on PostgreSQL another process may add it after the check.
    const row = { tenantId: input.tenantId, name: input.name, subject: input.subject ?? null, html: input.html ?? null, text: input.text ?? null, at: now };
    if (!(await upsertTemplate(t, { ...row, replace: input.replace === true }))) throw taken();
    const fields = (['subject', 'html', 'text'] as const).filter((f) => input[f] !== undefined);
    await recordAudit(ctx, t, exists ? 'template.replace' : 'template.add', `${input.tenantId}/${input.name}`, input.tenantId, fields);
  });
  return getTemplate(ctx, input.tenantId, input.name);
}

/** A tenant's templates by name. @throws NotFoundError (tenant). */
export async function listTemplates(ctx: CoreContext, tenantId: string): Promise<StoredTemplate[]> {
  await getTenant(ctx, tenantId);
  return (await selectTemplates(ctx.sql, tenantId)).map(toTemplate);
}

/** One template. @throws NotFoundError. */
export async function getTemplate(ctx: CoreContext, tenantId: string, name: string): Promise<StoredTemplate> {
  const r = await selectTemplate(ctx.sql, tenantId, name);
  if (!r) throw notFound(tenantId, name);
  return toTemplate(r);
}

function notFound(tenantId: string, name: string): NotFoundError {
  return new NotFoundError(`tenant ${tenantId} has no template ${name} (see \`switchboard template list --tenant ${tenantId}\`)`);
}

/** Removes a template (audited). @throws NotFoundError. */
export async function removeTemplate(ctx: CoreContext, tenantId: string, name: string): Promise<void> {
  await ctx.sql.tx(async (t) => {
    if (!(await deleteTemplate(t, tenantId, name))) throw notFound(tenantId, name);
    await recordAudit(ctx, t, 'template.remove', `${tenantId}/${name}`, tenantId, []);
  });
}

/**
 * Renders a template with one CSV row (`row` counts data rows from 1), reading no further than that row.
 * `encoding` is the CSV's encoding (a WHATWG label; default UTF-8).
 * @throws UsageError (no such row, a variable with no column or an empty value, a render error), NotFoundError.
 */
export async function previewTemplate(ctx: CoreContext, tenantId: string, name: string, csvPath: string, row = 1, encoding?: string): Promise<{ row: number; line: number; vars: Record<string, string> } & Rendered> {
  const t = await getTemplate(ctx, tenantId, name);
  const compiled = compileTemplate(storedSource(t));
  const csv = await openCsv(csvPath, encoding);
  const missing = compiled.required.filter((v) => !csv.columns.includes(v));
  if (missing.length) throw new UsageError(`template ${name} uses ${missing.map((v) => `{{${v}}}`).join(', ')} but --csv ${csvPath} has no such column (columns: ${csv.columns.join(', ')})`);
  for await (const r of csv.rows) {
    if (r.row !== row) continue;
    const empty = compiled.required.filter((v) => !(r.record[v] ?? '').trim());
    if (empty.length) throw new UsageError(`--csv ${csvPath} line ${r.line}: ${empty.map((v) => `column "${v}"`).join(', ')} empty`);
    await csv.rows.return(undefined);
    return { row, line: r.line, vars: r.record, ...compiled.render(r.record) };
  }
  throw new UsageError(`--row ${row}: --csv ${csvPath} has fewer data rows`);
}
