/**
 * Shell completion for bash, zsh and fish (`switchboard completion <shell>` prints the script to source), built
 * with `@bomb.sh/tab` from the commander tree itself, so commands and flags cannot drift from the CLI. The script
 * calls back `switchboard complete -- <words>`, which answers with candidates, one `value<TAB>description` a line
 * and a `:<directive>` line (tab's protocol, as Cobra's). Ids come from the store, opened read-only and never
 * created: tenant ids (`--tenant`, `tenant show <id>` …), provider refs (`--provider`, `provider show <ref>` …)
 * and batch ids (`--batch`, `batch show <id>` …). No provider SDK is loaded (the adapters are imported only to send).
 */
import os from 'node:os';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { openStoreReadOnly, resolveStorePath } from '../store/db.js';
import { SqliteSql } from '../store/sql.js';
import { sqliteStoreOps } from '../store/open.js';
import { systemClock, CHANNELS, type CoreContext } from '../core/context.js';
import { listTenants } from '../core/tenants.js';
import { listProviders } from '../core/providers.js';
import { listBatches } from '../core/batch/queries.js';
import { KINDS } from '../providers/registry.js';
import { examples } from './command.js';

/** Adds a candidate: its value and a description. */
type Complete = (value: string, description: string) => void;

/** One candidate: its value and its description. */
type Candidate = [value: string, description: string];

/**
 * Candidates from the store, read by {@link StoreCandidates.load} before tab's (synchronous) handlers ask for
 * them; empty when there is no store yet, or it is a URL.
 */
class StoreCandidates {
  private lists: Record<'tenants' | 'providers' | 'batches', Candidate[]> = { tenants: [], providers: [], batches: [] };

  constructor(
    private readonly file: string | null,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Reads tenant ids, provider refs and batch ids through the core functions, from the store opened read-only. */
  async load(): Promise<void> {
    if (this.file === null) return; // a store given as a URL (refused by every command): no candidates
    const db = openStoreReadOnly(this.file);
    if (!db) return;
    const ctx: CoreContext = { sql: new SqliteSql(db), store: sqliteStoreOps(db, this.file), storePath: this.file, clock: systemClock, env: this.env, actor: `${os.userInfo().username}@${os.hostname()}` };
    // A store of an older schema, or locked: no candidates rather than an error in the shell.
    const read = async (fn: () => Promise<Candidate[]> | Candidate[]): Promise<Candidate[]> => {
      try {
        return await fn();
      } catch {
        return [];
      }
    };
    try {
      this.lists = {
        tenants: await read(async () => (await listTenants(ctx)).map((t) => [t.id, t.name])),
        providers: await read(async () => (await listProviders(ctx)).map((p) => [p.ref, `${p.kind}${p.enabled ? '' : ' (disabled)'}`])),
        batches: await read(async () => (await listBatches(ctx, { limit: 200 })).map((b) => [b.id, `${b.tenantId} ${b.channel} ${b.status}`])),
      };
    } finally {
      db.close();
    }
  }

  /** Hands the candidates of one list to tab. */
  give(list: keyof StoreCandidates['lists'], complete: Complete): void {
    for (const [value, description] of this.lists[list]) complete(value, description);
  }
}

/**
 * The store a completion request reads: `--store <path>` (or `--store=<path>`) among the words being completed,
 * else `SWITCHBOARD_STORE`, else the default path; null when that is not a store path (a URL).
 */
function storeOf(words: string[], env: NodeJS.ProcessEnv): string | null {
  let flag: string | undefined;
  words.forEach((w, i) => {
    if (w === '--store' && words[i + 1]) flag = words[i + 1];
    else if (w.startsWith('--store=')) flag = w.slice('--store='.length);
  });
  try {
    return resolveStorePath(flag, env);
  } catch {
    return null; // e.g. a postgres:// URL: the command itself says why when it runs
  }
}

/**
 * Adds `completion <shell>` (prints the script for bash, zsh, fish or powershell) and the hidden `complete`
 * (answers the script) to `program`, which must hold every command already. `argv` is the command line (for
 * `--store`).
 */
export async function addCompletion(program: Command, io: Io, argv: string[]): Promise<void> {
  const { default: tab } = await import('@bomb.sh/tab/commander');
  const root = tab(program, { completionCommandName: 'completion' });
  const command = program.commands.find((c) => c.name() === 'completion');
  if (command) {
    command.description('print the shell completion script for bash, zsh, fish or powershell (commands, flags, tenant ids, provider refs, batch ids)');
    examples(command, [
      "echo 'source <(switchboard completion bash)' >> ~/.bashrc",
      "echo 'source <(switchboard completion zsh)' >> ~/.zshrc",
      'switchboard completion fish > ~/.config/fish/completions/switchboard.fish',
    ]);
  }
  const dash = argv.indexOf('--');
  const store = new StoreCandidates(storeOf(argv.slice(dash + 1), io.env), io.env);
  // Only the script's call-back (`complete -- <words>`) reads the store; help and `completion <shell>` do not.
  if (dash > 0 && argv[dash - 1] === 'complete') await store.load();
  const sources: Record<string, (complete: Complete) => void> = {
    tenant: (c) => store.give('tenants', c),
    provider: (c) => store.give('providers', c),
    batch: (c) => store.give('batches', c),
    channel: (c) => CHANNELS.forEach((ch) => c(ch, '')),
    kind: (c) => [...KINDS.values()].forEach((k) => c(k.kind, k.summary)),
  };
  /** Positional arguments by command: what each names. */
  const positional: Record<string, string> = {
    'tenant show': 'tenant',
    'tenant update': 'tenant',
    'tenant remove': 'tenant',
    'provider show': 'provider',
    'provider update': 'provider',
    'provider remove': 'provider',
    'provider verify': 'provider',
    'provider kinds': 'kind',
    'batch show': 'batch',
    'batch resume': 'batch',
    'batch cancel': 'batch',
    'batch export': 'batch',
  };
  for (const [path, cmd] of root.commands) {
    for (const [name, option] of cmd.options) {
      if (!option.isBoolean && sources[name]) option.handler = sources[name];
    }
    const what = positional[path];
    const arg = what ? [...cmd.arguments.values()][0] : undefined;
    if (arg && what) arg.handler = sources[what];
  }
}
