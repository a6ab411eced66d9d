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
  const { words, dashdash } = commandWords(program, argv);
  if (words.length > 0) {
    const named = NOUNS.filter(([noun]) => noun === words[0]);
    return named.length > 0 ? named : NOUNS;
  }
  const versionOnly = !dashdash && argv.some((a) => a === '--version' || a === '-V') && !argv.some((a) => a === '--help' || a === '-h');
  return versionOnly ? [] : NOUNS;
}

/** The words of `argv` before any `--` that are neither options nor the value of a global option taking one. */
function commandWords(program: Command, argv: string[]): { words: string[]; dashdash: boolean } {
  const takesValue = new Set(program.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))));
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return { words, dashdash: true };
    if (a.startsWith('-')) {
      if (takesValue.has(a)) i++;
      continue;
    }
    words.push(a);
  }
  return { words, dashdash: false };
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
    .option('-q, --quiet', 'print only errors on stderr: no progress, notes or warnings')
    .option('-v, --verbose', 'print details and stack traces on stderr')
    .option('--no-color', 'no colour (also NO_COLOR)')
    .option('--utc', 'show times in UTC instead of the local zone (JSON is always UTC)')
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
  // With every command loaded (full help, a typo, `completion`/`complete`): shell completion over the whole tree.
  if (wanted === NOUNS) await (await import('./completion.js')).addCompletion(program, io, argv);
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

/**
 * The command whose help a line without a verb asks for: the program for no words at all, a group such as
 * `tenant` for `switchboard tenant` (options aside); undefined when the line names a command or asks for help.
 */
function groupOnly(program: Command, argv: string[]): Command | undefined {
  if (argv.some((a) => a === '--help' || a === '-h' || a === '--version' || a === '-V' || a === '--')) return undefined;
  const { words } = commandWords(program, argv);
  if (words.length === 0) return program;
  const cmd = words.length === 1 ? program.commands.find((c) => c.name() === words[0]) : undefined;
  return cmd && cmd.commands.length > 0 ? cmd : undefined;
}

let warningFilterInstalled = false;

/**
 * Keeps third-party notices off stderr (DESIGN §2: cron logs carry our lines only): deprecation warnings and the
 * AWS SDK's `NodeVersionSupportWarning` (emitted once per process when an SES or SNS client is built on Node < 22)
 * go to `debug` (shown with `--verbose`); every other process warning is printed as Node prints it. Installed
 * once per process.
 */
function filterThirdPartyWarnings(debug: (text: string) => void): void {
  if (warningFilterInstalled) return;
  warningFilterInstalled = true;
  const printers = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (w.name === 'DeprecationWarning' || /^NodeVersionSupportWarning\b/.test(w.message)) {
      debug(`${w.name}: ${w.message.split('\n')[0]}`);
      return;
    }
    for (const print of printers) print.call(process, w);
  });
}

/** Runs the CLI with `argv` (without node and script). Returns the exit code; never throws. */
export async function main(argv: string[], io: Io): Promise<number> {
  const program = await buildProgram(io, argv);
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  const json = argv.includes('--json');
  const out = new Output(io.stdout, io.stderr, { json, quiet: false, verbose, color: false });
  filterThirdPartyWarnings((text) => out.debug(text));
  try {
    // Bare `switchboard` and `switchboard <group>` alike: the help on stdout, exit 0.
    const group = groupOnly(program, argv);
    if (group) {
      group.outputHelp();
      return 0;
    }
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; commander already printed its message for usage errors.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      // A value that starts with '-' (a provider message id such as "-W5ur…", a negative number) reads as an option.
      const unknown = err.code === 'commander.unknownOption' ? /'(-[^-'][^']+)'/.exec(err.message)?.[1] : undefined;
      if (unknown) io.stderr.write(`(a value that starts with "-" goes after "--", at the end of the line: switchboard … -- ${unknown})\n`);
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
