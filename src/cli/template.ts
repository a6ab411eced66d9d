/**
 * `switchboard template add|list|show|preview|remove`: stored Handlebars templates per tenant, usable as
 * `send batch --template <name>`.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, channelFlag, examples, intFlag, required } from './command.js';
import { addTemplate, getTemplate, listTemplates, previewTemplate, removeTemplate } from '../core/template-store.js';
import { phoneBody, readTemplateFile } from '../core/templates.js';
import { confirmOrYes } from './prompt.js';
import { templateJson } from './json.js';
import { messageSegments } from '../core/segments.js';
import { routePrice } from '../core/batch/preview.js';
import { priceFlag, segmentsText, withCurrency } from './preview.js';

/** Registers the `template` commands. */
export function registerTemplate(program: Command, io: Io): void {
  const template = program.command('template').description('stored message templates per tenant (Handlebars subject, HTML and text)');
  examples(template, ['switchboard template add reminder --tenant acme-dental --subject "Hi {{first_name}}" --html-file reminder.html', 'switchboard template preview reminder-sms --tenant acme-dental --csv patients.csv --channel sms']);

  examples(
    template
      .command('add <name>')
      .description('store a template: a subject and an HTML and/or a text body (the text part is derived from the HTML if not given)')
      .option('--tenant <id>', 'the tenant')
      .option('--subject <template>', 'Handlebars subject (e-mail)')
      .option('--html-file <file>', 'Handlebars HTML body')
      .option('--text-file <file>', 'Handlebars plain-text body (the SMS text, or the e-mail text part)')
      .option('--replace', 'overwrite a template of the same name')
      .option('--encoding <label>', 'the files\' encoding, e.g. windows-1252, latin1, utf-16le (default utf-8, checked strictly)')
      .action(
        action<{ tenant?: string; subject?: string; htmlFile?: string; textFile?: string; replace?: boolean; encoding?: string }>(io, async (cli, [name], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const read = (file: string, flag: string) => readTemplateFile(path.resolve(file), { encoding: opts.encoding, flag, encodingFlag: '--encoding' });
          const html = opts.htmlFile === undefined ? undefined : read(opts.htmlFile, '--html-file');
          const text = opts.textFile === undefined ? undefined : read(opts.textFile, '--text-file');
          const t = await addTemplate(await cli.core(), {
            tenantId,
            name: name!,
            subject: opts.subject,
            html,
            text,
            replace: opts.replace,
          });
          cli.out.result(templateJson(t), () => `Stored template ${t.name} for ${tenantId} (variables: ${[...t.required, ...t.optional].join(', ') || 'none'})`);
        }),
      ),
    [
      'switchboard template add reminder --tenant acme-dental --subject "Your appointment, {{first_name}}" --html-file reminder.html',
      'switchboard template add reminder-sms --tenant acme-dental --text-file reminder.txt',
    ],
  );

  examples(
    template
      .command('list')
      .description("list a tenant's templates")
      .option('--tenant <id>', 'the tenant')
      .action(
        action<{ tenant?: string }>(io, async (cli, _args, opts) => {
          const list = await listTemplates(await cli.core(), required(opts.tenant, '--tenant'));
          cli.out.result(list.map(templateJson), () =>
            cli.out.list(
              ['NAME', 'SUBJECT', 'PARTS', 'VARIABLES', 'UPDATED'],
              list.map((t) => [t.name, t.subject, [t.html !== null ? 'html' : '', t.text !== null ? 'text' : ''].filter(Boolean).join('+'), [...t.required, ...t.optional].join(', '), cli.out.time(t.updatedAt)]),
              'No templates yet. Add one with: switchboard template add <name> --tenant <id> --text-file <file>',
            ),
          );
        }),
      ),
    ['switchboard template list --tenant acme-dental'],
  );

  examples(
    template
      .command('show <name>')
      .description('show a template: its subject, bodies and variables')
      .option('--tenant <id>', 'the tenant')
      .action(
        action<{ tenant?: string }>(io, async (cli, [name], opts) => {
          const t = await getTemplate(await cli.core(), required(opts.tenant, '--tenant'), name!);
          cli.out.result(templateJson(t), () =>
            [
              cli.out.fields([
                ['name', t.name],
                ['tenant', t.tenantId],
                ['subject', t.subject],
                ['required', t.required.join(', ') || '-'],
                ['optional', t.optional.join(', ') || '-'],
                ['updated', cli.out.time(t.updatedAt)],
              ]),
              ...(t.html !== null ? ['', '--- html ---', t.html.trimEnd()] : []),
              ...(t.text !== null ? ['', '--- text ---', t.text.trimEnd()] : []),
            ].join('\n'),
          );
        }),
      ),
    ['switchboard template show reminder --tenant acme-dental --json'],
  );

  examples(
    template
      .command('preview <name>')
      .description('render a template with one CSV row (sends nothing); for sms and whatsapp also the encoding (GSM-7 or UCS-2), segments and estimated cost')
      .option('--tenant <id>', 'the tenant')
      .option('--csv <file>', 'the recipients CSV')
      .option('--row <n>', 'the data row to render (1 = first row after the header)', '1')
      .option('--channel <channel>', 'email, sms or whatsapp (default: email for a template with a subject or HTML, else sms)')
      .option('--price-per-segment <amount>', 'sms/whatsapp: price of one segment for the estimated cost (default: the route\'s pricePerSegment setting)')
      .option('--currency <code>', 'ISO 4217 code of --price-per-segment, e.g. USD')
      .option('--encoding <label>', 'the CSV\'s encoding, e.g. windows-1252, latin1, utf-16le (default utf-8, checked strictly)')
      .action(
        action<{ tenant?: string; csv?: string; row: string; channel?: string; pricePerSegment?: string; currency?: string; encoding?: string }>(io, async (cli, [name], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const csvPath = path.resolve(required(opts.csv, '--csv', 'a CSV file with a header row'));
          const ctx = await cli.core();
          const t = await getTemplate(ctx, tenantId, name!);
          const channel = opts.channel !== undefined ? channelFlag(opts.channel) : t.subject !== null || t.html !== null ? 'email' : 'sms';
          const p = await previewTemplate(ctx, tenantId, name!, csvPath, intFlag(opts.row, '--row', 1, Number.MAX_SAFE_INTEGER), opts.encoding);
          const email = channel === 'email';
          const price = priceFlag(opts.pricePerSegment, opts.currency);
          const sms = email ? null : messageSegments(phoneBody(p), price !== undefined ? price : withCurrency(await routePrice(ctx, tenantId, channel), opts.currency));
          const data = {
            tenantId,
            template: t.name,
            channel,
            row: p.row,
            line: p.line,
            vars: p.vars,
            subject: email ? (p.subject ?? null) : null,
            text: email ? p.text : phoneBody(p),
            html: email ? (p.html ?? null) : null,
            sms,
          };
          cli.out.result(data, () =>
            [
              `Row ${p.row} (line ${p.line}), ${channel}:`,
              // Only e-mail has a subject; an sms or whatsapp message is its text alone.
              ...(data.subject !== null ? [`Subject: ${data.subject}`] : []),
              '',
              p.text.trimEnd(),
              ...(data.html !== null ? ['', '--- html ---', data.html.trimEnd()] : []),
              ...(sms ? ['', `${channel}: ${segmentsText(sms)}`] : []),
            ].join('\n'),
          );
        }),
      ),
    [
      'switchboard template preview reminder --tenant acme-dental --csv patients.csv',
      'switchboard template preview reminder-sms --tenant acme-dental --csv patients.csv --row 12 --channel sms --price-per-segment 0.0079 --currency USD',
      'switchboard template preview reminder --tenant acme-dental --csv patients.csv --row 12 --json',
    ],
  );

  examples(
    template
      .command('remove <name>')
      .description('remove a template (batches already stored keep their copy); asks on a terminal, needs --yes without one')
      .option('--tenant <id>', 'the tenant')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<{ tenant?: string; yes?: boolean }>(io, async (cli, [name], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const ctx = await cli.core();
          const t = await getTemplate(ctx, tenantId, name!);
          await confirmOrYes(cli, opts.yes, `Remove template ${t.name} of ${tenantId}?`);
          await removeTemplate(ctx, tenantId, t.name);
          cli.out.result({ tenantId, name, removed: true }, () => `Removed template ${name} of ${tenantId}`);
        }),
      ),
    ['switchboard template remove reminder --tenant acme-dental --yes'],
  );
}
