/**
 * `switchboard audit list`.
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples, intFlag } from './command.js';
import { listAudit } from '../core/audit.js';
import { parseSince } from '../core/time.js';

/** Registers the `audit` commands. */
export function registerAudit(program: Command, io: Io): void {
  const audit = program.command('audit').description('the log of configuration changes (field names, never values)');
  examples(
    audit
      .command('list')
      .description('list audit entries, oldest first')
      .option('--tenant <id>', 'only this tenant\'s')
      .option('--since <when>', 'a duration such as 30d, 12h, 15m, or an ISO 8601 time')
      .option('--limit <n>', 'at most this many (newest), default 1000')
      .action(
        action<{ tenant?: string; since?: string; limit?: string }>(io, (cli, _args, opts) => {
          const ctx = cli.core();
          const entries = listAudit(ctx, {
            tenantId: opts.tenant,
            since: opts.since ? parseSince(opts.since, ctx.clock.now(), '--since') : undefined,
            limit: intFlag(opts.limit, '--limit', 1, 1_000_000),
          });
          cli.out.result(entries, () =>
            entries.length === 0
              ? 'No audit entries.'
              : cli.out.table(
                  ['TIME', 'ACTOR', 'ACTION', 'TARGET', 'FIELDS'],
                  entries.map((e) => [e.at.replace('T', ' ').slice(0, 19), e.actor, e.action, e.target, e.fields.join(', ')]),
                ),
          );
        }),
      ),
    ['switchboard audit list --tenant acme-dental --since 7d', 'switchboard audit list --json'],
  );
}
