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
  examples(audit, ['switchboard audit list --since 7d', 'switchboard audit list --tenant acme-dental --json']);
  examples(
    audit
      .command('list')
      .description('list audit entries, oldest first')
      .option('--tenant <id>', 'only this tenant\'s')
      .option('--since <when>', 'a duration such as 30d, 12h, 15m, or an ISO 8601 time')
      .option('--limit <n>', 'at most this many (newest), default 1000')
      .action(
        action<{ tenant?: string; since?: string; limit?: string }>(io, async (cli, _args, opts) => {
          const ctx = await cli.core();
          const entries = await listAudit(ctx, {
            tenantId: opts.tenant,
            since: opts.since ? parseSince(opts.since, ctx.clock.now(), '--since') : undefined,
            limit: intFlag(opts.limit, '--limit', 1, 1_000_000),
          });
          cli.out.result(
            entries.map((e) => ({ id: e.id, createdAt: e.at, actor: e.actor, action: e.action, target: e.target, tenantId: e.tenantId, fields: e.fields })),
            () =>
              cli.out.list(
                ['TIME', 'ACTOR', 'ACTION', 'TARGET', 'FIELDS'],
                entries.map((e) => [cli.out.time(e.at, true), e.actor, e.action, e.target, e.fields.join(', ')]),
                'No audit entries.',
              ),
          );
        }),
      ),
    ['switchboard audit list --tenant acme-dental --since 7d', 'switchboard audit list --json'],
  );
}
