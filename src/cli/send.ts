/**
 * `switchboard send test|batch`: both go through the one dispatch path.
 * Only what a test send needs is imported here; the bulk runner, stored templates, sender-domain checks and the
 * dry-run preview are imported where they are used (issue 15: an e-mail test send loads no CSV parser, template
 * engine or phone metadata).
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, channelFlag, collect, examples, intFlag, required, retryFlags } from './command.js';
import { Dispatcher } from '../core/dispatch.js';
import { OperationFailed, UsageError } from '../errors.js';
import { getTenant } from '../core/tenants.js';
import { checkRegion, normaliseRecipient } from '../core/address.js';
import type { OutboundMessage } from '../providers/types.js';
import { resolveRoute } from '../core/providers.js';
import { sendTracking } from '../core/tracking.js';
import { attemptJson } from './json.js';
import type { PreviewOptions } from '../core/batch/preview.js';
import type { Channel } from '../core/context.js';
import { parseDuration } from '../core/time.js';

/** Registers the `send` commands. */
export function registerSend(program: Command, io: Io): void {
  const send = program.command('send').description('send a test message or a bulk send from CSV');
  examples(send, ['switchboard send test --tenant acme-dental --channel email --to you@example.com', 'switchboard send batch --tenant acme-dental --csv patients.csv --template reminder']);

  examples(
    send
      .command('test')
      .description('send one message through the tenant\'s route; prints the provider that took it and the message id')
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'email, sms or whatsapp', 'email')
      .option('--to <address>', 'the recipient: an e-mail address, or a phone number (E.164, or national with --default-region)')
      .option('--subject <text>', 'subject (e-mail)', 'switchboard test message')
      .option('--body <text>', 'message text')
      .option('--template-name <name>', 'whatsapp: send this approved template instead of text')
      .option('--template-lang <code>', 'whatsapp: the template language, e.g. en_US', 'en_US')
      .option('--template-param <value>', 'whatsapp: a template body parameter, in order (repeatable)', collect)
      .option('--default-region <CC>', 'country for phone numbers without +country code, e.g. GB')
      .option('--provider <ref>', 'start with this provider (<tenant|system>/<channel>/<name>)')
      .option('--no-fallback', 'try only the first provider')
      .action(
        action<{
          tenant?: string;
          channel?: string;
          to?: string;
          subject: string;
          body?: string;
          templateName?: string;
          templateLang: string;
          templateParam?: string[];
          defaultRegion?: string;
          provider?: string;
          fallback: boolean;
        }>(
          io,
          async (cli, _args, opts) => {
            const tenantId = required(opts.tenant, '--tenant');
            const channel = channelFlag(opts.channel);
            // (core/address.ts loads the phone-number metadata only when it checks a phone number.)
            const recipient = normaliseRecipient(channel, required(opts.to, '--to', 'the recipient'), checkRegion(opts.defaultRegion));
            if ('error' in recipient) throw new UsageError(`--to ${recipient.error}`);
            const to = recipient.to;
            if (opts.templateName && channel !== 'whatsapp') throw new UsageError('--template-name applies to whatsapp only');
            const ctx = await cli.core();
            const tenant = await getTenant(ctx, tenantId);
            const dispatcher = await Dispatcher.open(ctx, tenant.id, channel, { providerRef: opts.provider, noFallback: !opts.fallback, retry: retryFlags(cli) });
            let result;
            try {
              const text = opts.body ?? `This is a test message from switchboard for ${tenant.name} (${tenant.id}).`;
              const tracking = await sendTracking(ctx, tenant.id);
              const message: OutboundMessage =
                channel === 'email'
                  ? { to, subject: opts.subject, text, tracking }
                  : channel === 'sms'
                    ? { to, body: text, tracking }
                    : opts.templateName
                      ? { to, template: { name: opts.templateName, language: opts.templateLang, parameters: opts.templateParam ?? [] }, tracking }
                      : { to, text, tracking };
              result = await dispatcher.send(message);
            } finally {
              await dispatcher.close();
            }
            // One shape whether it was sent or not: a failure carries every attempt and the last provider tried.
            const data = {
              tenantId: tenant.id,
              channel,
              recipient: to,
              status: result.status,
              provider: result.provider ?? result.attempts.at(-1)?.provider ?? null,
              messageId: result.messageId ?? null,
              fallback: result.fallback,
              attempts: result.attempts.map(attemptJson),
              error: result.error?.message ?? null,
              errorKind: result.error?.kind ?? null,
              errorCode: result.error?.code ?? null,
            };
            cli.out.result(data, () =>
              result.status === 'sent'
                ? `Sent to ${to} via ${result.provider}${result.fallback ? ' (fallback)' : ''}\nmessage id: ${result.messageId}`
                : `Not sent to ${to}: ${result.error?.kind}: ${result.error?.message}`,
            );
            for (const a of result.attempts.filter((x) => x.status === 'failed')) {
              cli.out.info(`  attempt ${a.attempt} via ${a.provider} failed (${a.errorKind}): ${a.error}`);
            }
            if (result.status !== 'sent') throw new OperationFailed(`test message to ${to} was not sent`, result);
          },
        ),
      ),
    [
      'switchboard send test --tenant acme-dental --channel email --to you@example.com',
      'switchboard send test --tenant acme-dental --to you@example.com --provider acme-dental/email/smtp --no-fallback --json',
      'switchboard send test --tenant acme-dental --channel sms --to +14155552671 --body "Your code is 123456"',
    ],
  );

  examples(
    send
      .command('batch')
      .description('send one message per CSV row (a header row; an "email" column, or "phone" for sms/whatsapp; every column is a template variable)')
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'email, sms or whatsapp', 'email')
      .option('--csv <file>', 'the recipients, one per row')
      .option('--template-file <file>', 'Handlebars body: HTML if it ends in .html (e-mail only; a text part is derived), plain text otherwise')
      .option('--template <name>', 'a stored template (`template add`) instead of --template-file and --subject')
      .option('--subject <template>', 'Handlebars subject, e.g. "Hi {{first_name}}" (e-mail)')
      .option('--template-name <name>', 'whatsapp: an approved template instead of --template-file')
      .option('--template-lang <code>', 'whatsapp: the template language', 'en_US')
      .option('--template-param <column>', 'whatsapp: the CSV column for each template body parameter, in order (repeatable)', collect)
      .option('--default-region <CC>', 'country for phone numbers without +country code, e.g. GB')
      .option('--encoding <label>', 'the CSV\'s encoding, e.g. windows-1252, latin1, utf-16le (default utf-8; invalid bytes stop the run naming line and column)')
      .option('--template-encoding <label>', 'the --template-file\'s encoding (default utf-8, checked strictly)')
      .option('--dry-run', 'validate and render every row, count rows that would be skipped (suppressed) and, for sms/whatsapp, segments; send and store nothing')
      .option('--row <line>', 'with --dry-run: also show the row on this CSV file line, as errors name lines (repeatable)', collect)
      .option('--price-per-segment <amount>', 'with --dry-run, sms/whatsapp: price of one segment for the estimated cost (default: the route\'s pricePerSegment setting)')
      .option('--currency <code>', 'ISO 4217 code of --price-per-segment, e.g. USD')
      .option('--concurrency <n>', 'messages in flight at once', '4')
      .option('--rate <n>', 'most messages per second to each provider, in any one-second window (lowers a provider\'s own rate setting)')
      .option('--idempotency-key <key>', 'name this batch; the same key again resumes or reports it, forever (default: derived from tenant, channel, CSV and template, remembered for --dedupe-window)')
      .option('--dedupe-window <duration>', 'how long a derived key finds a finished batch of the same input, e.g. 36h; 0: never (default 24h)')
      .option('--new-batch', 'send again even if the same input was sent before')
      .option('--dedupe-recipients', 'send once per recipient: later rows with the same recipient are skipped ("duplicate of line N")')
      .option('--retry-unknown', 'when resuming, resend rows whose outcome is unknown after a crash')
      .action(
        action<{
          tenant?: string;
          channel?: string;
          csv?: string;
          templateFile?: string;
          template?: string;
          subject?: string;
          templateName?: string;
          templateLang: string;
          templateParam?: string[];
          defaultRegion?: string;
          encoding?: string;
          templateEncoding?: string;
          dryRun?: boolean;
          row?: string[];
          pricePerSegment?: string;
          currency?: string;
          concurrency: string;
          rate?: string;
          idempotencyKey?: string;
          dedupeWindow?: string;
          newBatch?: boolean;
          dedupeRecipients?: boolean;
          retryUnknown?: boolean;
        }>(io, async (cli, _args, opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const channel = channelFlag(opts.channel);
          const csvPath = path.resolve(required(opts.csv, '--csv', 'a CSV file with a header row'));
          const templatePath = opts.templateFile === undefined ? undefined : path.resolve(opts.templateFile);
          const concurrency = intFlag(opts.concurrency, '--concurrency', 1, 1000);
          const rate = intFlag(opts.rate, '--rate', 1, 100_000);
          if (opts.idempotencyKey !== undefined && !/^[\w.:@/+-]{1,200}$/.test(opts.idempotencyKey)) {
            throw new UsageError('--idempotency-key: use 1-200 letters, digits and . _ : @ / + -');
          }
          const dedupeWindowMs = opts.dedupeWindow === undefined ? undefined : opts.dedupeWindow.trim() === '0' ? 0 : parseDuration(opts.dedupeWindow, '--dedupe-window');
          if (dedupeWindowMs !== undefined && opts.idempotencyKey !== undefined) throw new UsageError('--dedupe-window applies to the derived key; an --idempotency-key never expires');
          const preview = await previewFlags(opts, channel);
          const [{ runWithProgress }, { runBatch }, { getTemplate, storedSource }, { unverifiedSenderDomains }] = await Promise.all([
            import('./run-batch.js'),
            import('../core/batch/runner.js'),
            import('../core/template-store.js'),
            import('../core/domains.js'),
          ]);
          const ctx = await cli.core();
          // Warn only about the provider this run starts with (configs it may never use stay quiet), once.
          const first = (await resolveRoute(ctx, tenantId, channel)).entries.slice(0, 1).map((e) => e.config.ref);
          for (const w of await unverifiedSenderDomains(ctx, { refs: first })) cli.out.warn(w.message);
          const stored = opts.template === undefined ? undefined : { name: opts.template, source: storedSource(await getTemplate(ctx, tenantId, opts.template)) };
          await runWithProgress(cli, 'sending', (hooks) =>
            runBatch(
              ctx,
              {
                tenantId,
                channel,
                csvPath,
                templatePath,
                stored,
                subject: opts.subject,
                whatsappTemplate: opts.templateName ? { name: opts.templateName, language: opts.templateLang, params: opts.templateParam ?? [] } : undefined,
                defaultRegion: checkRegion(opts.defaultRegion),
                encoding: opts.encoding,
                templateEncoding: opts.templateEncoding,
                dryRun: opts.dryRun,
                preview,
                idempotencyKey: opts.idempotencyKey,
                dedupeWindowMs,
                newBatch: opts.newBatch,
                dedupeRecipients: opts.dedupeRecipients,
                run: { concurrency, rate, retryUnknown: opts.retryUnknown, retry: retryFlags(cli) },
              },
              hooks,
            ),
          );
        }),
      ),
    [
      'switchboard send batch --tenant acme-dental --channel email --csv patients.csv --template-file reminder.html --subject "Your appointment, {{first_name}}"',
      'switchboard send batch --tenant acme-dental --channel sms --csv patients.csv --template reminder-sms --default-region GB --rate 10',
      'switchboard send batch --tenant acme-dental --channel sms --csv patients.csv --template reminder-sms --dry-run --row 12 --row 40 --price-per-segment 0.0079 --currency USD',
      'switchboard --json --quiet send batch --tenant acme-dental --csv patients.csv --template-file reminder.html --subject "Hi" --idempotency-key reminders-2026-11-23',
    ],
  );
}

/**
 * The dry-run flags: `--row` lines (whole numbers from 2, the first data line) and the price.
 * @throws UsageError naming the flag: given without --dry-run, a price for e-mail, a bad number.
 */
async function previewFlags(opts: { dryRun?: boolean; row?: string[]; pricePerSegment?: string; currency?: string }, channel: Channel): Promise<PreviewOptions | undefined> {
  const given = [opts.row ? '--row' : '', opts.pricePerSegment !== undefined ? '--price-per-segment' : '', opts.currency !== undefined ? '--currency' : ''].filter(Boolean);
  if (!opts.dryRun) {
    if (given.length) throw new UsageError(`${given[0]} applies to --dry-run only`);
    return undefined;
  }
  if (channel === 'email' && (opts.pricePerSegment !== undefined || opts.currency !== undefined)) throw new UsageError(`${given.at(-1)} applies to sms and whatsapp only`);
  const { priceFlag } = await import('./preview.js');
  const price = priceFlag(opts.pricePerSegment, opts.currency);
  return { lines: (opts.row ?? []).map((l) => intFlag(l, '--row', 2, Number.MAX_SAFE_INTEGER)!), price, currency: opts.currency?.toUpperCase() };
}
