/**
 * Entry point: builds the command tree and maps every error to one exit code and a one-line message,
 * in this one place (DESIGN §9). Stack traces only with `--verbose`.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import type { Io } from './context.js';
import { Output } from './output.js';
import { SwitchboardError } from '../core/errors.js';
import { registerTenant } from './tenant.js';
import { registerProvider } from './provider.js';
import { registerKey } from './key.js';
import { registerSend } from './send.js';
import { registerBatch } from './batch.js';
import { registerAudit } from './audit.js';

/** The switchboard version, from package.json. */
export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Builds the program. Exposed for in-process tests. */
export function buildProgram(io: Io): Command {
  const program = new Command('switchboard')
    .description('Run messaging for many tenants: per-tenant providers with encrypted credentials, test sends and bulk sends from CSV.')
    .version(VERSION)
    .option('--store <path>', 'store file (env SWITCHBOARD_STORE; default ~/.local/share/switchboard/switchboard.db)')
    .option('--json', 'print results as JSON on stdout')
    .option('-q, --quiet', 'print no progress or notes on stderr')
    .option('-v, --verbose', 'print details and stack traces on stderr')
    .option('--no-color', 'no colour (also NO_COLOR)')
    .option('--no-input', 'never prompt; a missing value is an error')
    .option('--max-attempts <n>', 'attempts per provider for transient and rate-limited failures before the next provider (1-10, default 3)')
    .option('--retry-base-ms <ms>', 'first retry delay in ms, doubling each attempt with ±50% jitter (default 500; a provider\'s own wait, e.g. X-RateLimit-Reset, takes precedence)')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for usage)')
    .enablePositionalOptions(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  for (const register of [registerTenant, registerProvider, registerKey, registerSend, registerBatch, registerAudit]) {
    register(program, io);
  }
  program.addHelpText(
    'after',
    `
Exit codes: 0 ok, 1 operation failed, 2 usage error or bad input, 3 bulk send finished with failed rows,
            4 store locked or batch already running, 5 master key missing or wrong, 130 interrupted.

Examples:
  $ switchboard tenant add acme-dental --name "Acme Dental"
  $ switchboard send test --tenant acme-dental --channel email --to you@example.com
  $ switchboard send batch --tenant acme-dental --channel email --csv patients.csv --template-file reminder.html --subject "Hi {{first_name}}"
`,
  );
  // Commander's exitOverride applies per command; apply it (and the output) to every subcommand.
  const apply = (cmd: Command) => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) }).showSuggestionAfterError(true);
    cmd.commands.forEach(apply);
  };
  program.commands.forEach(apply);
  return program;
}

/** Runs the CLI with `argv` (without node and script). Returns the exit code; never throws. */
export async function main(argv: string[], io: Io): Promise<number> {
  const program = buildProgram(io);
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  const json = argv.includes('--json');
  const out = new Output(io.stdout, io.stderr, { json, quiet: false, verbose, color: false });
  try {
    if (argv.length === 0) {
      program.outputHelp();
      return 2;
    }
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; commander already printed its message for usage errors.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2;
    }
    if (err instanceof SwitchboardError) {
      io.stderr.write(`switchboard: ${err.message}\n`);
      for (const line of err.details) io.stderr.write(`  ${line}\n`);
      if (verbose && err.stack) out.debug(err.stack);
      return err.exitCode;
    }
    const e = err as Error;
    io.stderr.write(`switchboard: ${e?.message ?? String(err)}${verbose ? '' : ' (run with --verbose for details)'}\n`);
    if (verbose && e?.stack) out.debug(e.stack);
    return 1;
  }
}
