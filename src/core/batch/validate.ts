/**
 * The CSV pass of a bulk send: checks the template flags, then streams the CSV once and checks every row (the
 * recipient, and a value for every variable the template needs) without writing anything.
 */
import { normaliseRecipient } from '../address.js';
import type { Channel } from '../context.js';
import { FieldError } from '../../errors.js';
import { openCsv } from '../csv.js';
import { isHtmlTemplate, readTemplateFile, type CompiledTemplate, type Rendered, type TemplateSource } from '../templates.js';
import type { BatchRequest } from './types.js';
import type { BatchPreviewer } from './preview.js';

/** How many validation errors are kept for the message (the count is always exact). */
const MAX_REPORTED_ERRORS = 50;

/**
 * Checks the template fields for the channel and reads the body file.
 * @throws FieldError naming the field that is missing or does not apply.
 */
export function templateSource(req: BatchRequest): TemplateSource {
  const { channel, templatePath, subject, whatsappTemplate } = req;
  if (req.stored) {
    if (templatePath || subject !== undefined || whatsappTemplate) throw new FieldError((f) => `${f('stored template')} gives the subject and body: leave out ${f('template file')}, ${f('subject')} and ${f('template name')}`);
    if (channel !== 'email' && req.stored.source.html) throw new FieldError((f) => `${f('stored template')} ${req.stored!.name} has an HTML body; ${channel} messages are plain text`);
    return channel === 'email' ? req.stored.source : { ...req.stored.source, subject: undefined };
  }
  if (channel !== 'email' && subject !== undefined) throw new FieldError((f) => `${f('subject')} applies to e-mail only, not ${channel}`);
  if (channel !== 'whatsapp' && whatsappTemplate) throw new FieldError((f) => `${f('template name')} applies to whatsapp only, not ${channel}`);
  if (channel === 'email' && (subject === undefined || subject.trim() === '')) {
    throw new FieldError((f) => `${f('subject')} is required for e-mail (a Handlebars template, e.g. "Hello {{name}}")`);
  }
  if (channel === 'whatsapp' && whatsappTemplate) {
    if (templatePath) throw new FieldError((f) => `give either ${f('template file')} (free-form text) or ${f('template name')} (an approved template), not both`);
    return { html: false, whatsappTemplate };
  }
  if (!templatePath) throw new FieldError((f) => `${f('template file')} is required${channel === 'whatsapp' ? ` (or ${f('template name')} with ${f('template lang')})` : ''}`);
  const html = isHtmlTemplate(templatePath);
  if (html && channel !== 'email') throw new FieldError((f) => `${f('template file')} ${templatePath}: ${channel} messages are plain text; use a .txt template`);
  return { subject, body: readTemplateFile(templatePath, { encoding: req.templateEncoding }), html };
}

/** The column holding the recipient for a channel. */
export function recipientColumn(channel: Channel): string {
  return channel === 'email' ? 'email' : 'phone';
}

/** What the CSV pass found. */
export interface Validation {
  rows: number;
  hash: string;
  recipientKey: string;
  errors: string[];
  errorCount: number;
  sample?: { to: string } & Rendered;
}

/**
 * Pass 1: stream the CSV and check every row without writing anything: the recipient, and a value for every
 * variable the template needs. Rendering is checked on the first row (what can fail there — a missing helper
 * or partial — fails for every row), or on every row with `renderAll` (`--dry-run`). A row that still fails
 * to render when it is sent is recorded `failed` with the reason. A dry run's `preview` gets every rendered row.
 */
export async function validate(
  csvPath: string,
  channel: Channel,
  template: CompiledTemplate,
  region: string | undefined,
  renderAll: boolean,
  encoding?: string,
  preview?: BatchPreviewer,
): Promise<Validation> {
  const csv = await openCsv(csvPath, encoding);
  const want = recipientColumn(channel);
  const recipientKey = csv.columns.find((c) => c.toLowerCase() === want);
  if (!recipientKey) throw new FieldError((f) => `${f('csv')} ${csvPath} line 1: no recipient column "${want}" (columns: ${csv.columns.join(', ')})`);
  const missing = template.required.concat(template.optional).filter((v) => !csv.columns.includes(v));
  const missingRequired = missing.filter((v) => template.required.includes(v));
  if (missingRequired.length > 0) {
    throw new FieldError(
      (f) =>
        `template variable${missingRequired.length > 1 ? 's' : ''} ${missingRequired.map((v) => `{{${v}}}`).join(', ')} ha${missingRequired.length > 1 ? 've' : 's'} no column in ${f('csv')} ${csvPath} (columns: ${csv.columns.join(', ')}); nothing was sent`,
    );
  }
  const errors: string[] = [];
  let errorCount = 0;
  let rows = 0;
  let sample: Validation['sample'];
  const fail = (msg: string) => {
    errorCount++;
    if (errors.length < MAX_REPORTED_ERRORS) errors.push(msg);
  };
  for await (const { row, line, record } of csv.rows) {
    rows++;
    const raw = (record[recipientKey] ?? '').trim();
    const r = raw ? normaliseRecipient(channel, raw, region) : { error: 'is empty' };
    if ('error' in r) fail(`line ${line}: ${recipientKey} ${r.error}`);
    const to = 'to' in r ? r.to : raw;
    const empty = template.required.filter((v) => v !== recipientKey && !(record[v] ?? '').trim());
    if (empty.length) fail(`line ${line}: ${empty.map((v) => `column "${v}"`).join(', ')} empty (the template uses ${empty.map((v) => `{{${v}}}`).join(', ')})`);
    if (sample && !renderAll) continue;
    let rendered: Rendered | undefined;
    try {
      rendered = template.render(record);
      sample ??= { to, ...rendered };
    } catch (err) {
      fail(`line ${line}: template does not render: ${(err as Error).message.split('\n')[0]}`);
    }
    if (rendered) await preview?.add(row, line, to, rendered);
  }
  if (rows === 0) throw new FieldError((f) => `${f('csv')} ${csvPath} has a header but no data rows`);
  return { rows, hash: csv.hash(), recipientKey, errors, errorCount, sample };
}

