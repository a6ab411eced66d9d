/**
 * `switchboard doctor`: the checks of core/doctor.ts as a table (or `--json`); exit 1 if any check fails.
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples } from './command.js';
import { runDoctor } from '../core/doctor.js';
import { OperationFailed } from '../errors.js';

/** Registers `doctor`. */
export function registerDoctor(program: Command, io: Io): void {
  examples(
    program
      .command('doctor')
      .description('check the store, the master key, the keychain and every provider config; say how to fix what is wrong (exit 1 if anything fails)')
      .action(
        action(io, (cli) => {
          const checks = runDoctor({ storePath: cli.storePath, open: () => cli.core() });
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
    ['switchboard doctor', 'switchboard doctor --json | jq -r \'.checks[] | select(.status != "pass") | .check\''],
  );
}
