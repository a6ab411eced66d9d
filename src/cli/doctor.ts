/**
 * `switchboard doctor`: the checks of core/doctor.ts as a table (or `--json`); exit 1 if any check fails.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples } from './command.js';
import { runDoctor } from '../core/doctor.js';
import { OperationFailed } from '../errors.js';
import { noStoreError } from '../store/db.js';

/** Registers `doctor`. */
export function registerDoctor(program: Command, io: Io): void {
  examples(
    program
      .command('doctor')
      .description(
        'check the store (file mode, damage: SQLite quick_check), the master key (key file mode, match), the keychain and every provider config (secrets present and opening, MAC); say how to fix what is wrong (exit 1 if anything fails, 2 if there is no store)',
      )
      .option('--deep', 'run SQLite\'s full integrity_check (also indexes; slower on large stores) instead of quick_check')
      .action(
        action<{ deep?: boolean }>(io, async (cli, _args, opts) => {
          const backend = cli.storeLocation.backend;
          if (opts.deep) cli.sqliteOnly('doctor --deep', 'PostgreSQL checks its own pages and indexes: ask the database administrator (pg_amcheck)');
          if (backend === 'sqlite' && !fs.existsSync(cli.storePath)) throw noStoreError(cli.storePath);
          const checks = await runDoctor({ storePath: cli.storePath, open: () => cli.core(), deep: opts.deep === true, env: cli.io.env, backend, describe: () => cli.describeStore() });
          const failed = checks.filter((c) => c.status === 'fail').length;
          const warned = checks.filter((c) => c.status === 'warn').length;
          const mark = { pass: cli.out.c.green('pass'), warn: cli.out.c.yellow('warn'), fail: cli.out.c.red('fail') };
          cli.out.result(
            { ok: failed === 0, failedCount: failed, warnedCount: warned, checks: checks.map((c) => ({ check: c.check, status: c.status, detail: c.detail, fix: c.fix ?? null })) },
            () => {
              cli.out.info(`${checks.length} checks: ${checks.length - failed - warned} pass, ${warned} warn, ${failed} fail`);
              return cli.out.table(['CHECK', 'STATUS', 'DETAIL', 'FIX'], checks.map((c) => [c.check, mark[c.status], c.detail, c.fix]));
            },
          );
          if (failed > 0) throw new OperationFailed(`doctor: ${failed} check(s) failed`);
        }),
      ),
    ['switchboard doctor', 'switchboard doctor --deep', 'switchboard doctor --json | jq -r \'.checks[] | select(.status != "pass") | .check\''],
  );
}
