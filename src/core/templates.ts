/**
 * Message templates (Handlebars). A body template is HTML when its file name ends in `.html`/`.htm`
 * (values are HTML-escaped, and a plain-text part is derived with html-to-text), plain text otherwise.
 * The subject is a Handlebars template too. Templates are checked before anything is sent: every
 * variable they need must be a CSV column with a value in every row.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import type HandlebarsNs from 'handlebars';
import type * as HtmlToText from 'html-to-text';
import { UsageError } from '../errors.js';
import { decodeStrict, encodingName } from './encoding.js';
import type { OutboundMessage } from '../providers/types.js';

// Both libraries are required on first use (their CommonJS builds), not at import (issue 15): Handlebars when a
// template is compiled, html-to-text only when an HTML body needs a derived text part.
const requireLib = createRequire(import.meta.url);
let handlebarsLib: typeof HandlebarsNs | undefined;
/** Handlebars, loaded once on first use. */
function handlebars(): typeof HandlebarsNs {
  handlebarsLib ??= requireLib('handlebars') as typeof HandlebarsNs;
  return handlebarsLib;
}
let htmlToTextLib: typeof HtmlToText | undefined;
/** html-to-text's `convert` (HTML → plain text, lines wrapped at 78), loaded once on first use. */
function htmlToText(html: string): string {
  htmlToTextLib ??= requireLib('html-to-text') as typeof HtmlToText;
  return htmlToTextLib.convert(html, { wordwrap: 78 });
}

/** An approved WhatsApp template: its name, language, and the CSV columns for body parameters {{1}}, {{2}}, …. */
export interface WhatsAppTemplateRef {
  name: string;
  language: string;
  params: string[];
}

/**
 * Template sources as stored with a batch (so a resume needs nothing but the store). E-mail has a subject and
 * a body; SMS a body; WhatsApp a body (free-form text) or an approved template.
 */
export interface TemplateSource {
  subject?: string;
  body?: string;
  html: boolean;
  /** Handlebars plain-text part for an HTML body (stored templates); without it the text is derived from the HTML. */
  text?: string;
  whatsappTemplate?: WhatsAppTemplateRef;
}

/** A compiled template with the variables it needs. */
export interface CompiledTemplate {
  source: TemplateSource;
  /** Variables used outside `{{#if}}`/`{{#unless}}` tests: a row must give each a non-empty value. */
  required: string[];
  /** Variables only tested with `{{#if}}`/`{{#unless}}`: may be empty or absent. */
  optional: string[];
  /** SHA-256 (hex) of the sources: part of a batch's derived idempotency key. */
  hash: string;
  render(vars: Record<string, string>): Rendered;
}

/** Content after rendering. `parameters` are the WhatsApp template's body parameters. */
export interface Rendered {
  subject?: string;
  text: string;
  html?: string;
  parameters?: string[];
}

/** True if `file` names an HTML template. */
export function isHtmlTemplate(file: string): boolean {
  return /\.html?(\.hbs|\.handlebars)?$/i.test(file);
}

/** How {@link readTemplateFile} decodes a file and names it in errors. */
export interface TemplateFileOptions {
  /** The file's encoding as a WHATWG label (default UTF-8; a BOM is dropped). */
  encoding?: string;
  /** The flag that named the file (default `--template-file`). */
  flag?: string;
  /** The flag that names its encoding (default `--template-encoding`). */
  encodingFlag?: string;
}

/**
 * Reads a template file's text, decoded strictly (./encoding.ts).
 * @throws UsageError naming the flag and file if it cannot be read, or the line and column of an invalid byte.
 */
export function readTemplateFile(file: string, opts: TemplateFileOptions = {}): string {
  const flag = opts.flag ?? '--template-file';
  const encodingFlag = opts.encodingFlag ?? '--template-encoding';
  const charset = encodingName(opts.encoding, encodingFlag);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  return decodeStrict(bytes, charset, { what: `${flag} ${file}`, flag: encodingFlag });
}

/** The body an sms or whatsapp text message carries: the rendered text, trimmed (what segments are counted on). */
export function phoneBody(r: Pick<Rendered, 'text'>): string {
  return r.text.trim();
}

/**
 * Builds the message for one recipient from rendered content, by channel: e-mail gets subject, text and
 * html; SMS the text as its body; WhatsApp an approved template with its parameters, or the text.
 */
export function composeMessage(channel: 'email' | 'sms' | 'whatsapp', to: string, source: TemplateSource, r: Rendered, headers?: Record<string, string>): OutboundMessage {
  if (channel === 'email') return { to, subject: r.subject ?? '', text: r.text, ...(r.html !== undefined ? { html: r.html } : {}), ...(headers ? { headers } : {}) };
  if (channel === 'sms') return { to, body: phoneBody(r) };
  const wa = source.whatsappTemplate;
  if (wa) return { to, template: { name: wa.name, language: wa.language, parameters: r.parameters ?? [] } };
  return { to, text: phoneBody(r) };
}

/**
 * Handlebars runtime options: inherited properties and methods are never resolved (Handlebars' default), and
 * saying so explicitly keeps it from printing a warning when a CSV column is named like one (`toString`,
 * `valueOf`): row values are looked up as the row's own properties, so such a column renders as any other.
 * See https://handlebarsjs.com/api-reference/runtime-options.html#options-to-control-prototype-access.
 */
const RUNTIME: HandlebarsNs.RuntimeOptions = { allowProtoPropertiesByDefault: false, allowProtoMethodsByDefault: false };

/** Compiles template sources. @throws UsageError on a Handlebars syntax error. */
export function compileTemplate(source: TemplateSource): CompiledTemplate {
  const used = new Map<string, boolean>(); // name → required
  const subjectAst = source.subject === undefined ? undefined : parse(source.subject, '--subject');
  const bodyAst = source.body === undefined ? undefined : parse(source.body, '--template-file');
  const textAst = source.text === undefined || !source.html ? undefined : parse(source.text, 'text template');
  collect(subjectAst, used, false);
  collect(bodyAst, used, false);
  collect(textAst, used, false);
  for (const p of source.whatsappTemplate?.params ?? []) used.set(p, true);
  const subject = subjectAst && handlebars().compile(subjectAst, { noEscape: true });
  const body = bodyAst && handlebars().compile(bodyAst, { noEscape: !source.html });
  const textPart = textAst && handlebars().compile(textAst, { noEscape: true });
  const wa = source.whatsappTemplate;
  // (`text` joins the hash only when set, so hashes of file templates, and their derived batch keys, stay as they were.)
  const hash = createHash('sha256')
    .update(JSON.stringify([source.subject, source.body, source.html, wa ?? null, ...(textAst ? [source.text] : [])]))
    .digest('hex');
  return {
    source,
    required: [...used].filter(([, r]) => r).map(([n]) => n).sort(),
    optional: [...used].filter(([, r]) => !r).map(([n]) => n).sort(),
    hash,
    render(vars) {
      const out: Rendered = { text: '' };
      if (subject) out.subject = subject(vars, RUNTIME).replace(/\s+/g, ' ').trim();
      if (body) {
        const rendered = body(vars, RUNTIME);
        if (source.html) {
          out.html = rendered;
          out.text = textPart ? textPart(vars, RUNTIME) : htmlToText(rendered);
        } else {
          out.text = rendered;
        }
      }
      if (wa) {
        out.parameters = wa.params.map((p) => vars[p] ?? '');
        if (!body) out.text = `[template ${wa.name} (${wa.language})] ${out.parameters.join(' | ')}`;
      }
      return out;
    },
  };
}

function parse(text: string, flag: string): hbs.AST.Program {
  try {
    return handlebars().parse(text);
  } catch (err) {
    throw new UsageError(`${flag}: template does not parse: ${(err as Error).message.split('\n')[0]}`);
  }
}

const CONDITIONALS = new Set(['if', 'unless']);

/**
 * Walks a Handlebars AST and records top-level variables. A variable is `required` if it is used outside
 * any `{{#if}}`/`{{#unless}}` block; tests and uses inside such blocks are optional.
 */
function collect(node: hbs.AST.Node | undefined, used: Map<string, boolean>, insideScope: boolean, conditional = false): void {
  if (!node) return;
  const note = (expr: hbs.AST.Expression, mustHave: boolean) => {
    if (insideScope) return;
    const required = mustHave && !conditional;
    if (expr.type === 'PathExpression') {
      const p = expr as hbs.AST.PathExpression;
      if (p.data || p.depth > 0 || p.parts.length === 0) return;
      const name = p.parts[0]!;
      used.set(name, (used.get(name) ?? false) || required);
    } else if (expr.type === 'SubExpression') {
      for (const param of (expr as hbs.AST.SubExpression).params) note(param, required);
    }
  };
  switch (node.type) {
    case 'Program':
      for (const s of (node as hbs.AST.Program).body) collect(s, used, insideScope, conditional);
      break;
    case 'MustacheStatement': {
      const m = node as hbs.AST.MustacheStatement;
      if (m.params.length === 0) note(m.path as hbs.AST.Expression, true);
      for (const p of m.params) note(p, true);
      break;
    }
    case 'BlockStatement': {
      const b = node as hbs.AST.BlockStatement;
      const helper = (b.path as hbs.AST.PathExpression).original;
      const isIf = CONDITIONALS.has(helper);
      for (const p of b.params) note(p, !isIf);
      // Inside #each/#with the context changes: names there are not CSV columns.
      const scoped = insideScope || !isIf;
      collect(b.program, used, scoped, conditional || isIf);
      collect(b.inverse, used, insideScope, conditional || isIf);
      break;
    }
    default:
      break;
  }
}
