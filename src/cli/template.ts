/**
 * `switchboard template add|list|show|preview|remove`: stored Handlebars templates per tenant, usable as
 * `send batch --template <name>`.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples, intFlag, required } from './command.js';
import { addTemplate, getTemplate, listTemplates, previewTemplate, removeTemplate } from '../core/template-store.js';
import { readTemplateFile } from '../core/templates.js';

/** Registers the `template` commands. */
export function registerTemplate(program: Command, io: Io): void {
  const template = program.command('template').description('stored message templates per tenant (Handlebars subject, HTML and text)');

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
        action<{ tenant?: string; subject?: string; htmlFile?: string; textFile?: string; replace?: boolean; encoding?: string }>(io, (cli, [name], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const read = (file: string, flag: string) => readTemplateFile(path.resolve(file), { encoding: opts.encoding, flag, encodingFlag: '--encoding' });
          const html = opts.htmlFile === undefined ? undefined : read(opts.htmlFile, '--html-file');
          const text = opts.textFile === undefined ? undefined : read(opts.textFile, '--text-file');
          const t = addTemplate(cli.core(), {
            tenantId,
            name: name!,
            subject: opts.subject,
            html,
            text,
            replace: opts.replace,
          });
          cli.out.result(t, () => `Stored template ${t.name} for ${tenantId} (variables: ${[...t.required, ...t.optional].join(', ') || 'none'})`);
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
        action<{ tenant?: string }>(io, (cli, _args, opts) => {
          const list = listTemplates(cli.core(), required(opts.tenant, '--tenant'));
          cli.out.result(list, () =>
            list.length === 0
              ? 'No templates.'
              : cli.out.table(
                  ['NAME', 'SUBJECT', 'PARTS', 'VARIABLES', 'UPDATED'],
                  list.map((t) => [t.name, t.subject, [t.html !== null ? 'html' : '', t.text !== null ? 'text' : ''].filter(Boolean).join('+'), [...t.required, ...t.optional].join(', '), t.updatedAt.replace('T', ' ').slice(0, 19)]),
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
        action<{ tenant?: string }>(io, (cli, [name], opts) => {
          const t = getTemplate(cli.core(), required(opts.tenant, '--tenant'), name!);
          cli.out.result(t, () =>
            [
              cli.out.fields([
                ['name', t.name],
                ['tenant', t.tenantId],
                ['subject', t.subject],
                ['required', t.required.join(', ') || '-'],
                ['optional', t.optional.join(', ') || '-'],
                ['updated', t.updatedAt],
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
      .description('render a template with one CSV row (sends nothing)')
      .option('--tenant <id>', 'the tenant')
      .option('--csv <file>', 'the recipients CSV')
      .option('--row <n>', 'the data row to render (1 = first row after the header)', '1')
      .option('--encoding <label>', 'the CSV\'s encoding, e.g. windows-1252, latin1, utf-16le (default utf-8, checked strictly)')
      .action(
        action<{ tenant?: string; csv?: string; row: string; encoding?: string }>(io, async (cli, [name], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const csvPath = path.resolve(required(opts.csv, '--csv', 'a CSV file with a header row'));
          const p = await previewTemplate(cli.core(), tenantId, name!, csvPath, intFlag(opts.row, '--row', 1, Number.MAX_SAFE_INTEGER), opts.encoding);
          cli.out.result(p, () =>
            [
              `Row ${p.row} (line ${p.line}):`,
              ...(p.subject !== undefined ? [`Subject: ${p.subject}`] : []),
              '',
              p.text.trimEnd(),
              ...(p.html !== undefined ? ['', '--- html ---', p.html.trimEnd()] : []),
            ].join('\n'),
          );
        }),
      ),
    ['switchboard template preview reminder --tenant acme-dental --csv patients.csv', 'switchboard template preview reminder --tenant acme-dental --csv patients.csv --row 12 --json'],
  );

  examples(
    template
      .command('remove <name>')
      .description('remove a template (batches already stored keep their copy)')
      .option('--tenant <id>', 'the tenant')
      .action(
        action<{ tenant?: string }>(io, (cli, [name], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          removeTemplate(cli.core(), tenantId, name!);
          cli.out.result({ tenantId, name, removed: true }, () => `Removed template ${name} of ${tenantId}`);
        }),
      ),
    ['switchboard template remove reminder --tenant acme-dental'],
  );
}
