/**
 * The one presenter (DESIGN §2, §9): results go to stdout as a table or text for people, or as one JSON
 * document with `--json`; progress, warnings and errors go to stderr. Colour only when allowed
 * (`--no-color`, `NO_COLOR`, or a stream that is not a TTY turn it off); chalk is loaded only then.
 * Tables follow the GitHub CLI: drawn with cli-table3 on a terminal, tab-separated lines (header first,
 * no colour) when stdout is a pipe or a file, so scripts can `cut -f` them; `--json` is the stable form.
 */
import { createRequire } from 'node:module';
import type TableType from 'cli-table3';

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

/** The text styles the presenter uses: chalk's when colour is on, else the text unchanged. */
export interface Styles {
  bold(text: string): string;
  dim(text: string): string;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
}

const same = (text: string): string => text;
/** Styles for output without colour. */
export const NO_STYLES: Styles = { bold: same, dim: same, green: same, red: same, yellow: same };

/**
 * Control characters that could drive a terminal or disguise text: C0 controls except TAB and LF (ESC starts
 * colour, cursor and title sequences; CR overwrites a line), DEL, C1 controls, and the Unicode bidirectional
 * overrides and isolates.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text safe to print on a terminal: each control character (see above) from data (a CSV value, a provider's
 * error text) is shown as an escape (`\x1b`, `\r`, `\u202e`) instead of acting on the terminal. TAB and LF stay.
 * Used for every line switchboard writes to stderr (errors, warnings, notes, progress).
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, (ch) => {
    if (ch === '\r') return '\\r';
    const code = ch.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** A table cell on a tab-separated line: tabs and line breaks become spaces, so each row stays one line. */
const tsvCell = (cell: string): string => cell.replace(/[\t\r\n]+/g, ' ');

/** Writes results, progress and errors according to {@link OutputOptions}. */
export class Output {
  constructor(
    readonly stdout: Stream,
    readonly stderr: Stream,
    readonly opts: OutputOptions,
    /** Text styles; {@link Output.create} gives chalk's when colour applies. */
    readonly c: Styles = NO_STYLES,
  ) {}

  /** An Output whose styles are chalk's (16 colours) when `opts.color` is on and stdout is a TTY; chalk is imported only then. */
  static async create(stdout: Stream, stderr: Stream, opts: OutputOptions): Promise<Output> {
    if (!(opts.color && stdout.isTTY)) return new Output(stdout, stderr, opts);
    const { Chalk } = await import('chalk');
    return new Output(stdout, stderr, opts, new Chalk({ level: 1 }));
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

  /**
   * A table with a header row. Cells are converted with String(); null/undefined show as `-`.
   * On a terminal: a cli-table3 table (loaded only then), header in bold when colour is on. Otherwise (a pipe,
   * a file, cron, CI): one tab-separated line per row, the header line first, no colour.
   */
  table(head: string[], rows: unknown[][]): string {
    const cells = rows.map((r) => r.map((v) => (v === null || v === undefined ? '-' : String(v))));
    if (!this.stdout.isTTY) return [head, ...cells].map((r) => r.map(tsvCell).join('\t')).join('\n');
    const Table = createRequire(import.meta.url)('cli-table3') as typeof TableType;
    const t = new Table({
      head: head.map((h) => this.c.bold(h)),
      style: { head: [], border: [] },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const r of cells) t.push(r);
    return t.toString();
  }

  /** `key: value` lines, aligned. */
  fields(pairs: Array<[string, unknown]>): string {
    const width = Math.max(...pairs.map(([k]) => k.length));
    return pairs.map(([k, v]) => `${this.c.dim(k.padEnd(width))}  ${v === null || v === undefined ? '-' : String(v)}`).join('\n');
  }

  /** Progress or a note on stderr; silent with `--quiet`. Control characters are escaped ({@link escapeControls}). */
  info(text: string): void {
    if (!this.opts.quiet) this.stderr.write(escapeControls(text) + '\n');
  }

  /** A warning on stderr (shown even with `--quiet`), control characters escaped. */
  warn(text: string): void {
    this.stderr.write(`${this.c.yellow('warning:')} ${escapeControls(text)}\n`);
  }

  /** Extra detail on stderr with `--verbose`, control characters escaped. */
  debug(text: string): void {
    if (this.opts.verbose) this.stderr.write(this.c.dim(escapeControls(text)) + '\n');
  }
}
