/**
 * `switchboard suppress add|list|remove|import`: per tenant and channel, addresses never to send to.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, channelFlag, examples, required } from './command.js';
import { addSuppression, importSuppressions, iterateTenantSuppressions, listSuppressions, removeSuppression, suppressionKey } from '../core/suppressions.js';
import { getTenant } from '../core/tenants.js';
import { checkRegion } from '../core/address.js';
import { NotFoundError } from '../errors.js';
import { confirmOrYes } from './prompt.js';
import { suppressionJson } from './json.js';

/** Registers the `suppress` commands. */
export function registerSuppress(program: Command, io: Io): void {
  const suppress = program.command('suppress').description('suppression lists: addresses a tenant must not send to on a channel (bulk sends skip them)');
  examples(suppress, ['switchboard suppress add pat@example.com --tenant acme-dental --reason "asked by phone"', 'switchboard suppress list --tenant acme-dental']);

  examples(
    suppress
      .command('add <address>')
      .description('suppress an address for a tenant and channel')
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'email, sms or whatsapp', 'email')
      .option('--reason <text>', 'why (shown in batch results)', 'manual')
      .option('--source <text>', 'where the request came from', 'manual')
      .option('--default-region <CC>', 'country for a phone number without +country code')
      .action(
        action<{ tenant?: string; channel?: string; reason: string; source: string; defaultRegion?: string }>(io, async (cli, [address], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const channel = channelFlag(opts.channel);
          const ctx = await cli.core();
          await getTenant(ctx, tenantId);
          const key = suppressionKey(channel, address!, checkRegion(opts.defaultRegion));
          const added = await addSuppression(ctx, { tenantId, channel, address: key, reason: opts.reason, source: opts.source });
          const stored = (await listSuppressions(ctx, tenantId, channel, key))[0];
          const json = stored ? suppressionJson(stored) : { tenantId, channel, address: key, reason: opts.reason, source: opts.source, createdAt: null };
          cli.out.result({ ...json, added }, () =>
            `${added ? 'Suppressed' : 'Already suppressed (reason updated)'}: ${key} for ${tenantId} on ${channel}`,
          );
        }),
      ),
    [
      'switchboard suppress add pat@example.com --tenant acme-dental --reason "asked by phone"',
      'switchboard suppress add +447700900123 --tenant acme-dental --channel sms --reason STOP --source reply',
    ],
  );

  examples(
    suppress
      .command('list')
      .description("list a tenant's suppressions with their source (manual, import, unsubscribe-link, or the provider config whose event or error added it) and expiry")
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'only this channel')
      .action(
        action<{ tenant?: string; channel?: string }>(io, async (cli, _args, opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const ctx = await cli.core();
          await getTenant(ctx, tenantId);
          const now = ctx.clock.now().toISOString();
          // Written as they are read from the store: a tenant may have hundreds of thousands (an imported list).
          await cli.out.resultRows(iterateTenantSuppressions(ctx, tenantId, opts.channel === undefined ? undefined : channelFlag(opts.channel)), {
            json: suppressionJson,
            head: ['CHANNEL', 'ADDRESS', 'REASON', 'SOURCE', 'ADDED', 'EXPIRES'],
            cells: (s) => [
              s.channel,
              s.address,
              s.reason,
              s.source,
              cli.out.time(s.createdAt),
              s.expiresAt === null ? 'never' : `${s.expiresAt <= now ? 'expired ' : ''}${cli.out.time(s.expiresAt)}`,
            ],
            emptyNote: 'No suppressions.',
          });
        }),
      ),
    ['switchboard suppress list --tenant acme-dental', 'switchboard suppress list --tenant acme-dental --channel sms --json'],
  );

  examples(
    suppress
      .command('remove <address>')
      .description('remove a suppression (the address receives bulk sends again); asks on a terminal, needs --yes without one')
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'email, sms or whatsapp', 'email')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<{ tenant?: string; channel?: string; yes?: boolean }>(io, async (cli, [address], opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const channel = channelFlag(opts.channel);
          const ctx = await cli.core();
          await getTenant(ctx, tenantId);
          const key = suppressionKey(channel, address!);
          if ((await listSuppressions(ctx, tenantId, channel, key)).length === 0) {
            throw new NotFoundError(`${address} is not suppressed for ${tenantId} on ${channel}`);
          }
          await confirmOrYes(cli, opts.yes, `Remove the suppression of ${key} for ${tenantId} on ${channel} (bulk sends reach it again)?`);
          if (!(await removeSuppression(ctx, tenantId, channel, address!))) {
            throw new NotFoundError(`${address} is not suppressed for ${tenantId} on ${channel}`);
          }
          cli.out.result({ tenantId, channel, address: suppressionKey(channel, address!), removed: true }, () => `Removed the suppression of ${address} for ${tenantId} on ${channel}`);
        }),
      ),
    ['switchboard suppress remove pat@example.com --tenant acme-dental --yes'],
  );

  examples(
    suppress
      .command('import')
      .description('import suppressions from a CSV with a header row (an address column; an optional "reason" column)')
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'email, sms or whatsapp', 'email')
      .option('--csv <file>', 'the CSV file')
      .option('--column <name>', 'the address column (default: email, or phone for sms/whatsapp)')
      .option('--reason <text>', 'reason for rows without a "reason" column value', 'imported')
      .option('--source <text>', 'where the list came from', 'import')
      .option('--default-region <CC>', 'country for phone numbers without +country code')
      .option('--encoding <label>', 'the CSV\'s encoding, e.g. windows-1252, latin1, utf-16le (default utf-8, checked strictly)')
      .action(
        action<{ tenant?: string; channel?: string; csv?: string; column?: string; reason: string; source: string; defaultRegion?: string; encoding?: string }>(io, async (cli, _args, opts) => {
          const tenantId = required(opts.tenant, '--tenant');
          const channel = channelFlag(opts.channel);
          const csvPath = path.resolve(required(opts.csv, '--csv', 'a CSV file with a header row'));
          const ctx = await cli.core();
          await getTenant(ctx, tenantId);
          const r = await importSuppressions(ctx, {
            tenantId,
            channel,
            csvPath,
            column: opts.column,
            reason: opts.reason,
            source: opts.source,
            defaultRegion: checkRegion(opts.defaultRegion),
            encoding: opts.encoding,
          });
          cli.out.result({ tenantId, channel, rowCount: r.rows, addedCount: r.added, updatedCount: r.updated }, () => `Imported ${r.rows} rows for ${tenantId} on ${channel}: ${r.added} added, ${r.updated} already suppressed`);
        }),
      ),
    ['switchboard suppress import --tenant acme-dental --csv unsubscribes.csv', 'switchboard suppress import --tenant acme-dental --channel sms --csv stops.csv --column mobile --default-region GB'],
  );
}
