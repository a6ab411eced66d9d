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
  /** `--utc`: times in tables and on dated stderr lines in UTC instead of the local zone (JSON is always UTC). */
  utc?: boolean;
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

/**
 * A character {@link tsvCell} or {@link escapeControls} would change (every C0 control, tabs and line breaks
 * included, and those of {@link CONTROL}): a cell without one is written as it is, without the two replacements
 * (a list of 1,000 tenants is 5,000 cells; issue 15, start-up).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const TSV_UNSAFE = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

/** A table cell's text: String(), `-` for null and undefined. */
const cellText = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));

/** A table row as one tab-separated line ({@link tsvCell}, control characters escaped; see {@link TSV_UNSAFE}). */
function tsvLine(r: readonly unknown[]): string {
  return r
    .map((v) => {
      const cell = cellText(v);
      return TSV_UNSAFE.test(cell) ? escapeControls(tsvCell(cell)) : cell;
    })
    .join('\t');
}

/** Rows per cli-table3 table when {@link Output.resultRows} draws a long list on a terminal. */
export const TABLE_PAGE = 1000;

/** Output gathered into writes of about {@link ChunkedWriter.SIZE} characters (one system call each, not one per row). */
class ChunkedWriter {
  static readonly SIZE = 64 * 1024;
  private buf = '';
  constructor(private readonly stream: Stream) {}
  write(text: string): void {
    this.buf += text;
    if (this.buf.length >= ChunkedWriter.SIZE) this.end();
  }
  /** Writes what is gathered. */
  end(): void {
    if (this.buf) this.stream.write(this.buf);
    this.buf = '';
  }
}

// eslint-disable-next-line no-control-regex -- a colour (SGR) sequence, as chalk writes them
const SGR = /(\x1b\[[0-9;]*m)/;

/**
 * {@link escapeControls} for a value shown in a table or `key: value` lines. With `keepColour` (colour is on),
 * colour sequences (`ESC [ … m`, which only style text) are kept so cells switchboard colours stay coloured;
 * every other control character (cursor moves, screen clears, window titles, bells) is escaped.
 */
export function escapeCell(text: string, keepColour: boolean): string {
  if (!keepColour) return escapeControls(text);
  return text
    .split(SGR)
    .map((part, i) => (i % 2 === 1 ? part : escapeControls(part)))
    .join('');
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/**
 * The calendar parts of `date` in the local zone (`TZ`), or in UTC, with the zone's offset as `±HH:MM`
 * (`+00:00` for UTC).
 */
function zoned(date: Date, utc: boolean): { date: string; hm: string; s: string; offset: string } {
  const off = utc ? 0 : -date.getTimezoneOffset();
  const d = new Date(date.getTime() + off * 60_000);
  const sign = off < 0 ? '-' : '+';
  return {
    date: `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`,
    hm: `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`,
    s: pad2(d.getUTCSeconds()),
    offset: `${sign}${pad2(Math.floor(Math.abs(off) / 60))}:${pad2(Math.abs(off) % 60)}`,
  };
}

/**
 * A time for people: `2026-12-02 09:30 -05:00` in the local zone (`TZ`), or in UTC with `utc`
 * (`2026-12-02 14:30 +00:00`); `seconds` adds them (`09:30:05`). `null` for a missing or unparsable time.
 */
export function formatTime(iso: string | null | undefined, utc = false, seconds = false): string | null {
  if (!iso) return null;
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return null;
  const z = zoned(t, utc);
  return `${z.date} ${z.hm}${seconds ? `:${z.s}` : ''} ${z.offset}`;
}

/** An ISO 8601 time stamp for a dated stderr line: local with its offset (`2026-12-02T09:30:05-05:00`), or UTC (`…Z`). */
export function stamp(date: Date, utc = false): string {
  const z = zoned(date, utc);
  return `${z.date}T${z.hm}:${z.s}${utc ? 'Z' : z.offset}`;
}

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

  /**
   * Prints a result: `data` as JSON with `--json`, else the text `human()` returns (skipped if empty), with
   * control characters from data escaped ({@link escapeCell}; a rendered preview, a name in a confirmation).
   */
  result(data: unknown, human: () => string): void {
    if (this.opts.json) {
      this.stdout.write(JSON.stringify(data, null, 2) + '\n');
      return;
    }
    const text = escapeCell(human(), this.c !== NO_STYLES);
    if (text) this.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }

  /** One JSON Lines record on stdout (for streams such as per-row events). */
  jsonLine(data: unknown): void {
    this.stdout.write(JSON.stringify(data) + '\n');
  }

  /**
   * A table with a header row. Cells are converted with String(); null/undefined show as `-`; control
   * characters from data are escaped ({@link escapeCell}), so a value cannot drive the terminal.
   * On a terminal: a cli-table3 table (loaded only then), header in bold when colour is on. Otherwise (a pipe,
   * a file, cron, CI): one tab-separated line per row, the header line first, no colour.
   */
  table(head: string[], rows: unknown[][]): string {
    if (!this.stdout.isTTY) return [head, ...rows].map(tsvLine).join('\n');
    const Table = createRequire(import.meta.url)('cli-table3') as typeof TableType;
    const t = new Table({
      head: head.map((h) => this.c.bold(h)),
      style: { head: [], border: [] },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const r of rows) t.push(r.map((v) => escapeCell(cellText(v), this.c !== NO_STYLES)));
    return t.toString();
  }

  /**
   * Prints a result holding a list of rows of any length, writing the rows as `rows` yields them, so memory stays
   * flat (a batch of a million rows, a tenant's whole suppression list). Byte for byte what {@link result} prints:
   * - with `--json`: `o.data` with `o.key` set to the rows (`o.json(row)` each) as its last member, or, without
   *   `o.data`, the array of rows itself;
   * - otherwise: `o.human()` and a blank line (when given), then the rows as a {@link table} under `o.head`
   *   (`o.cells(row)` each): tab-separated lines on a pipe or file; on a terminal, cli-table3 tables of
   *   {@link TABLE_PAGE} rows each, each with its header. No rows: the header alone, and `o.emptyNote` on stderr
   *   as {@link list} does.
   */
  async resultRows<T>(
    rows: AsyncIterable<T>,
    o: { data?: Record<string, unknown>; key?: string; json: (row: T) => unknown; human?: () => string; head: string[]; cells: (row: T) => unknown[]; emptyNote?: string },
  ): Promise<void> {
    const out = new ChunkedWriter(this.stdout);
    let count = 0;
    if (this.opts.json) {
      // The document with an empty list where the rows go (its last member, or the whole document).
      const key = o.key ?? 'rows';
      const { [key]: _, ...rest } = o.data ?? {};
      const doc = o.data ? JSON.stringify({ ...rest, [key]: [] }, null, 2) : '[]';
      const at = doc.lastIndexOf('[]');
      const indent = o.data ? '    ' : '  ';
      out.write(doc.slice(0, at) + '[');
      for await (const row of rows) {
        out.write(`${count++ === 0 ? '' : ','}\n${indent}${JSON.stringify(o.json(row), null, 2).replace(/\n/g, `\n${indent}`)}`);
      }
      out.write(`${count === 0 ? '' : `\n${indent.slice(2)}`}]${doc.slice(at + 2)}\n`);
      out.end();
      return;
    }
    if (o.human) out.write(`${escapeCell(o.human(), this.c !== NO_STYLES)}\n\n`);
    let page: unknown[][] = [];
    const flush = () => {
      out.write(this.table(o.head, page) + '\n');
      page = [];
    };
    if (!this.stdout.isTTY) {
      out.write(tsvLine(o.head) + '\n');
      for await (const row of rows) {
        out.write(tsvLine(o.cells(row)) + '\n');
        count++;
      }
    } else {
      for await (const row of rows) {
        page.push(o.cells(row));
        if (++count % TABLE_PAGE === 0) flush();
      }
      // No rows: the header alone, as table() draws it.
      if (page.length > 0 || count === 0) flush();
    }
    out.end();
    if (count === 0 && o.emptyNote) this.info(o.emptyNote);
  }

  /**
   * A list: {@link table} of `rows`; when there are none, the header line alone (so a pipe still reads a header
   * and no rows) and `emptyNote` (e.g. how to add the first one) on stderr as a note.
   */
  list(head: string[], rows: unknown[][], emptyNote?: string): string {
    if (rows.length === 0 && emptyNote) this.info(emptyNote);
    return this.table(head, rows);
  }

  /**
   * A stored time (ISO 8601) for a table or text: local with its offset, `2026-12-02 09:30 -05:00`, or UTC with
   * `--utc`; `seconds` adds seconds. `null` (shown as `-`) when there is none.
   */
  time(iso: string | null | undefined, seconds = false): string | null {
    return formatTime(iso, this.opts.utc === true, seconds);
  }

  /**
   * Prefix of a progress, status or warning line on stderr: an ISO 8601 time stamp and a space when stderr is not
   * a terminal (cron and CI logs are dated), else nothing.
   */
  private dated(): string {
    return this.stderr.isTTY ? '' : `${stamp(new Date(), this.opts.utc === true)} `;
  }

  /** `key: value` lines, aligned; control characters in values escaped ({@link escapeCell}). */
  fields(pairs: Array<[string, unknown]>): string {
    const width = Math.max(...pairs.map(([k]) => k.length));
    return pairs.map(([k, v]) => `${this.c.dim(k.padEnd(width))}  ${v === null || v === undefined ? '-' : escapeCell(String(v), this.c !== NO_STYLES)}`).join('\n');
  }

  /**
   * Progress, status or a note on stderr; silent with `--quiet`. Without a terminal each line starts with an
   * ISO 8601 time stamp (see {@link status}). Control characters are escaped ({@link escapeControls}).
   */
  info(text: string): void {
    if (this.opts.quiet) return;
    const lead = text.match(/^\n*/)![0];
    this.stderr.write(lead + escapeControls(text.slice(lead.length)).split('\n').map((l) => this.dated() + l).join('\n') + '\n');
  }

  /** One progress or status line on stderr: {@link info} (dated without a terminal, silent with `--quiet`). */
  status(line: string): void {
    this.info(line);
  }

  private warned = new Set<string>();

  /**
   * A warning on stderr, once per run (the same text again is dropped); silent with `--quiet`, which prints only
   * errors. Dated without a terminal; control characters escaped.
   */
  warn(text: string): void {
    if (this.opts.quiet || this.warned.has(text)) return;
    this.warned.add(text);
    this.stderr.write(`${this.dated()}${this.c.yellow('warning:')} ${escapeControls(text)}\n`);
  }

  /** Extra detail on stderr with `--verbose`, control characters escaped. */
  debug(text: string): void {
    if (this.opts.verbose) this.stderr.write(this.c.dim(escapeControls(text)) + '\n');
  }
}
