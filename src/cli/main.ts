/**
 * Entry point: builds the command tree and maps every error to one exit code and a one-line message,
 * in this one place (DESIGN §9). Stack traces only with `--verbose`.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import type { Io } from './context.js';
import { escapeControls, Output } from './output.js';
import { SwitchboardError } from '../errors.js';

/** Adds one noun's commands (flags, help, actions) to the program. */
type Register = (program: Command, io: Io) => void;

/**
 * The command modules by noun, in help order. Each is imported only when its noun is on the command line (or
 * for the full help and suggestions), so a command loads only the code it runs: `tenant list` never loads
 * the template engine, the CSV parser or any provider SDK (DESIGN §5, §8).
 */
const NOUNS: ReadonlyArray<readonly [string, () => Promise<Register>]> = [
  ['tenant', async () => (await import('./tenant.js')).registerTenant],
  ['provider', async () => (await import('./provider.js')).registerProvider],
  ['key', async () => (await import('./key.js')).registerKey],
  ['send', async () => (await import('./send.js')).registerSend],
  ['batch', async () => (await import('./batch.js')).registerBatch],
  ['audit', async () => (await import('./audit.js')).registerAudit],
  ['domain', async () => (await import('./domain.js')).registerDomain],
  ['doctor', async () => (await import('./doctor.js')).registerDoctor],
  ['store', async () => (await import('./store.js')).registerStore],
  ['template', async () => (await import('./template.js')).registerTemplate],
  ['suppress', async () => (await import('./suppress.js')).registerSuppress],
  ['report', async () => (await import('./report.js')).registerReport],
  ['log', async () => (await import('./report.js')).registerReport],
  ['events', async () => (await import('./events.js')).registerEvents],
  ['message', async () => (await import('./events.js')).registerEvents],
];

/**
 * The command modules `argv` needs: its noun's when its first word that is not an option (or the value of a
 * global option taking one) is a known noun; none for a bare `--version`/`-V`; else all of them (full `--help`,
 * suggestions for a typo).
 */
function modulesFor(program: Command, argv: string[]): typeof NOUNS {
  const takesValue = new Set(program.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return NOUNS;
    if (a.startsWith('-')) {
      if (takesValue.has(a)) i++;
      continue;
    }
    const named = NOUNS.filter(([noun]) => noun === a);
    return named.length > 0 ? named : NOUNS;
  }
  const versionOnly = argv.some((a) => a === '--version' || a === '-V') && !argv.some((a) => a === '--help' || a === '-h');
  return versionOnly ? [] : NOUNS;
}

/** The switchboard version, from package.json. */
export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * Builds the program with the commands `argv` needs: only its noun's when it names one, none for a bare
 * `--version`, else all of them (full `--help`, suggestions for a mistyped command). Exposed for in-process tests.
 */
export async function buildProgram(io: Io, argv: string[] = []): Promise<Command> {
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
    .option('--max-wait <duration>', 'longest single wait between attempts, a provider\'s Retry-After included, e.g. 30s (default 60s)')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for usage)')
    .enablePositionalOptions(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  const wanted = modulesFor(program, argv);
  // One module may serve two nouns (report.ts: `report` and `log`): register each module once.
  for (const register of new Set(await Promise.all(wanted.map(([, load]) => load())))) {
    register(program, io);
  }
  program.addHelpText(
    'after',
    `
Exit codes: 0 ok, 1 operation failed, 2 usage error, bad input or no store, 3 bulk send finished with failed rows,
            4 store locked or batch already running, 5 master key missing or wrong, or an integrity check failed,
            130 interrupted.

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
  const program = await buildProgram(io, argv);
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
    // Messages may quote data (a CSV value, a provider's answer): control characters are shown escaped.
    if (err instanceof SwitchboardError) {
      io.stderr.write(`switchboard: ${escapeControls(err.message)}\n`);
      for (const line of err.details) io.stderr.write(`  ${escapeControls(line)}\n`);
      if (verbose && err.stack) out.debug(err.stack);
      return err.exitCode;
    }
    const e = err as Error;
    io.stderr.write(`switchboard: ${escapeControls(e?.message ?? String(err))}${verbose ? '' : ' (run with --verbose for details)'}\n`);
    if (verbose && e?.stack) out.debug(e.stack);
    return 1;
  }
}
