/**
 * The one presenter (DESIGN §2, §9): results go to stdout as a table or text for people, or as one JSON
 * document with `--json`; progress, warnings and errors go to stderr. Colour only when allowed
 * (`--no-color`, `NO_COLOR`, or a stream that is not a TTY turn it off).
 */
import { Chalk, type ChalkInstance } from 'chalk';
import Table from 'cli-table3';

/** A writable text stream and whether it is a terminal. */
export interface Stream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Output settings from the global flags. */
export interface OutputOptions {
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  color: boolean;
}

/** Writes results, progress and errors according to {@link OutputOptions}. */
export class Output {
  readonly c: ChalkInstance;
  constructor(
    readonly stdout: Stream,
    readonly stderr: Stream,
    readonly opts: OutputOptions,
  ) {
    this.c = new Chalk({ level: opts.color && stdout.isTTY ? 1 : 0 });
  }

  /** Prints a result: `data` as JSON with `--json`, else the text `human()` returns (skipped if empty). */
  result(data: unknown, human: () => string): void {
    if (this.opts.json) {
      this.stdout.write(JSON.stringify(data, null, 2) + '\n');
      return;
    }
    const text = human();
    if (text) this.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }

  /** One JSON Lines record on stdout (for streams such as per-row events). */
  jsonLine(data: unknown): void {
    this.stdout.write(JSON.stringify(data) + '\n');
  }

  /** A table with a header row. Cells are converted with String(); null/undefined show as `-`. */
  table(head: string[], rows: unknown[][]): string {
    const t = new Table({
      head: head.map((h) => this.c.bold(h)),
      style: { head: [], border: [] },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const r of rows) t.push(r.map((v) => (v === null || v === undefined ? '-' : String(v))));
    return t.toString();
  }

  /** `key: value` lines, aligned. */
  fields(pairs: Array<[string, unknown]>): string {
    const width = Math.max(...pairs.map(([k]) => k.length));
    return pairs.map(([k, v]) => `${this.c.dim(k.padEnd(width))}  ${v === null || v === undefined ? '-' : String(v)}`).join('\n');
  }

  /** Progress or a note on stderr; silent with `--quiet`. */
  info(text: string): void {
    if (!this.opts.quiet) this.stderr.write(text + '\n');
  }

  /** A warning on stderr (shown even with `--quiet`). */
  warn(text: string): void {
    this.stderr.write(`${this.c.yellow('warning:')} ${text}\n`);
  }

  /** Extra detail on stderr with `--verbose`. */
  debug(text: string): void {
    if (this.opts.verbose) this.stderr.write(this.c.dim(text) + '\n');
  }
}
