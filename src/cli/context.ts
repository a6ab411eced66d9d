/**
 * The CLI's dependencies, built once per command from the global flags (DESIGN §9): output streams and
 * whether they are TTYs, the environment, the clock, the store (opened on first use), and the prompter.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { resolveStore, type StoreLocation } from '../store/db.js';
import { shiftedClock, systemClock, type Clock, type CoreContext } from '../core/context.js';
import { UsageError } from '../errors.js';
import { openStoreHandle, type StoreDescription, type StoreHandle } from '../store/open.js';
import { Output, type Stream } from './output.js';

/** Process-level inputs, injected so commands can be run in-process by tests. */
export interface Io {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: Stream;
  stderr: Stream;
  env: NodeJS.ProcessEnv;
}

/** Global flags (DESIGN §2). */
export interface GlobalFlags {
  store?: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  color?: boolean;
  input?: boolean;
  /** `--utc`: times in UTC instead of the local zone. */
  utc?: boolean;
  /** `--max-attempts`, `--retry-base-ms`: raw text, checked by `retryFlags` in command.ts. */
  maxAttempts?: string;
  retryBaseMs?: string;
  maxWait?: string;
}

/** What a command's action gets. */
export class CliContext {
  /** Where the store is, for messages: the file path, or the PostgreSQL URL without its password. */
  readonly storePath: string;
  /** Where the store is: a SQLite file or a PostgreSQL URL (`--store`, `SWITCHBOARD_STORE`, the default path). */
  readonly storeLocation: StoreLocation;
  private store?: StoreHandle;

  constructor(
    readonly io: Io,
    readonly flags: GlobalFlags,
    readonly out: Output,
  ) {
    this.storeLocation = resolveStore(flags.store, io.env);
    this.storePath = this.storeLocation.display;
  }

  /** Builds the context from a commander command (its own and its parents' options). */
  static async from(io: Io, command: Command): Promise<CliContext> {
    const flags = command.optsWithGlobals<GlobalFlags>();
    const color = flags.color !== false && !('NO_COLOR' in io.env && io.env.NO_COLOR !== '');
    const out = await Output.create(io.stdout, io.stderr, {
      json: flags.json === true,
      quiet: flags.quiet === true,
      verbose: flags.verbose === true,
      color,
      utc: flags.utc === true,
    });
    return new CliContext(io, flags, out);
  }

  /** True when prompts are allowed: stdin and stdout are TTYs and `--no-input` was not given. */
  get interactive(): boolean {
    return this.flags.input !== false && Boolean(this.io.stdin.isTTY) && Boolean(this.io.stdout.isTTY);
  }

  /**
   * The core context, opening (and migrating) the store on first use. Only commands that can start from an
   * empty store (`tenant add`, `key init`, `provider add --system`) pass `create: true` (the file 0600, its
   * folder 0700); for every other command a missing store is an error (exit 2, "no store at PATH" and how to
   * create or point at one), so a mistyped `--store` never makes a new empty store.
   */
  async core(opts: { create?: boolean } = {}): Promise<CoreContext> {
    if (!this.store) {
      this.store = await openStoreHandle(this.storeLocation, { create: opts.create === true });
      this.out.debug(`store: ${this.store.location}`);
    }
    return {
      sql: this.store.sql,
      store: this.store.ops,
      storePath: this.storePath,
      clock: this.clock(),
      env: this.io.env,
      actor: `${this.io.env.USER || os.userInfo().username || 'unknown'}@${os.hostname()}`,
    };
  }

  private shifted?: Clock;

  /**
   * The clock: the real one, or with `SWITCHBOARD_NOW` (a test hook: an ISO 8601 time) the real one shifted
   * to start at that time.
   * @throws UsageError if `SWITCHBOARD_NOW` is not a time.
   */
  private clock(): Clock {
    const now = this.io.env.SWITCHBOARD_NOW;
    if (!now) return systemClock;
    const t = Date.parse(now);
    if (Number.isNaN(t)) throw new UsageError(`SWITCHBOARD_NOW ${now}: expected an ISO 8601 time (a test hook)`);
    this.shifted ??= shiftedClock(new Date(t));
    return this.shifted;
  }

  /**
   * The store's engine, its version, the schema version and where it is (without password), opening the store
   * if needed (for `key status` and `doctor`).
   */
  async describeStore(): Promise<StoreDescription> {
    await this.core();
    return this.store!.describe();
  }

  /**
   * Refuses a command that works on the SQLite file itself when the store is PostgreSQL (exit 2), saying what to
   * use instead. @param what the command, e.g. `store backup`; @param instead what a PostgreSQL store uses.
   */
  sqliteOnly(what: string, instead: string): void {
    if (this.storeLocation.backend !== 'sqlite') {
      throw new UsageError(`${what} works on a SQLite store file; ${this.storePath} is a PostgreSQL store: ${instead}`);
    }
  }

  /** The open store (for `store copy`, which reads it as a whole), opening it if needed. */
  async handle(): Promise<StoreHandle> {
    await this.core();
    return this.store!;
  }

  /** Closes the store if it was opened. */
  async close(): Promise<void> {
    const store = this.store;
    this.store = undefined;
    await store?.close();
  }

  /** Reads all of stdin as text (for `--secrets-stdin`). @throws UsageError if stdin is a TTY. */
  async readStdin(flag: string): Promise<string> {
    if (this.io.stdin.isTTY) throw new UsageError(`${flag} reads from standard input, but it is a terminal: pipe the JSON in`);
    let text = '';
    for await (const chunk of this.io.stdin) text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    return text;
  }
}
