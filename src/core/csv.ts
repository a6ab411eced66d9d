/**
 * CSV files: streaming input for bulk sends and imports (csv-parse), and the one CSV writer for everything
 * switchboard writes (csv-stringify, {@link csvWriter}).
 *
 * Input: the file is never loaded whole: rows are yielded one at a time with their data-row number and the line
 * where they start, and the SHA-256 of the bytes read is available at the end. The bytes are decoded strictly
 * (./encoding.ts: UTF-8 unless an encoding is named; an invalid byte is an error naming its line and column).
 * Handles a BOM, CRLF, quoted commas and quoted newlines. Rows are null-prototype objects, so any header works as
 * a column name (`__proto__`, `constructor`, `toString` are ordinary columns).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { parse } from 'csv-parse';
import { stringify, type Stringifier } from 'csv-stringify';
import { UsageError } from '../errors.js';
import { decodingStream, encodingName, UTF8 } from './encoding.js';

/**
 * One data row. `row` counts data rows from 1; `line` is the 1-based line of the file where the row starts.
 * `record` maps column name → value and has no prototype (read it with `record[name]`, never inherited keys).
 */
export interface CsvRow {
  row: number;
  line: number;
  record: Record<string, string>;
}

/** What csv-parse yields with `raw`. */
interface ParsedRecord {
  record: string[];
  raw: string;
}

/** Line breaks (CRLF, LF or a lone CR, each one) in `text`. */
function lineBreaks(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\r'); i !== -1; i = text.indexOf('\r', i + 1)) n++;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) if (text.charCodeAt(i - 1) !== 13) n++;
  return n;
}

/** A CSV file being read: its header, then its rows; `hash()` is valid after the rows are exhausted. */
export interface CsvReader {
  columns: string[];
  rows: AsyncGenerator<CsvRow>;
  /**
   * SHA-256 (hex) of the file's bytes, once every row was read. For a file read in another encoding than UTF-8
   * the digest starts with `encoding <name>\n`, as the same bytes read another way are other content (a
   * batch's derived idempotency key comes from it); UTF-8 files hash as their bytes alone.
   */
  hash(): string;
}

/**
 * Opens a CSV file with a header row. Column names are trimmed; empty or duplicate names are errors.
 * @param encoding the file's encoding as a WHATWG label (default UTF-8; see ./encoding.ts).
 * @throws UsageError naming `--csv` and the line for unreadable files, invalid bytes (line and column),
 * malformed CSV, or a bad header; naming `--encoding` for an unknown label.
 */
export async function openCsv(file: string, encoding?: string): Promise<CsvReader> {
  const charset = encodingName(encoding, '--encoding');
  const digest = createHash('sha256');
  if (charset !== UTF8) digest.update(`encoding ${charset}\n`);
  let input: fs.ReadStream;
  try {
    await fs.promises.access(file, fs.constants.R_OK);
    input = fs.createReadStream(file);
  } catch (err) {
    throw new UsageError(`--csv ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  input.on('data', (chunk) => digest.update(chunk));
  const decoder = decodingStream(file, charset, { what: `--csv ${file}`, flag: '--encoding' });
  const parser = input.pipe(decoder).pipe(
    parse({ bom: true, skip_empty_lines: true, relax_column_count: false, raw: true }),
  );
  input.on('error', (err) => parser.destroy(err));
  decoder.on('error', (err) => parser.destroy(err));
  const iterator = parser[Symbol.asyncIterator]() as AsyncIterator<ParsedRecord>;

  const failure = (err: unknown): UsageError => {
    const e = err as Error & { lines?: number; code?: string };
    if (e instanceof UsageError) return e;
    const where = e.lines !== undefined ? ` line ${e.lines}` : '';
    return new UsageError(`--csv ${file}${where}: ${e.message.replace(/^Invalid Record Length: /, '').split('\n')[0]}`);
  };

  let first: IteratorResult<ParsedRecord>;
  try {
    first = await iterator.next();
  } catch (err) {
    throw failure(err);
  }
  if (first.done) throw new UsageError(`--csv ${file} is empty: it needs a header row and at least one data row`);
  const columns = first.value.record.map((c) => c.trim());
  const seen = new Set<string>();
  for (const [i, c] of columns.entries()) {
    if (!c) throw new UsageError(`--csv ${file} line 1: column ${i + 1} has no name`);
    if (seen.has(c.toLowerCase())) throw new UsageError(`--csv ${file} line 1: column "${c}" appears twice`);
    seen.add(c.toLowerCase());
  }
  // Line numbers come from the raw text of each record (csv-parse's per-record `info` costs more than the
  // parse itself): `raw` starts with the blank lines skipped before the record and ends with its delimiter
  // (with CRLF files, only its CR), so a record starts after every break before it and its leading blank lines.
  let breaks = lineBreaks(first.value.raw);
  const startLine = (raw: string): number => {
    let lead = 0;
    while (lead < raw.length && (raw.charCodeAt(lead) === 10 || raw.charCodeAt(lead) === 13)) lead++;
    const line = 1 + breaks + lineBreaks(raw.slice(0, lead));
    breaks += lineBreaks(raw);
    return line;
  };
  let done = false;
  let hex: string | undefined;

  async function* rows(): AsyncGenerator<CsvRow> {
    let row = 0;
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        const { record, raw } = next.value;
        row++;
        const line = startLine(raw);
        const out = Object.create(null) as Record<string, string>;
        for (const [i, c] of columns.entries()) out[c] = record[i] ?? '';
        yield { row, line, record: out };
      }
      done = true;
    } catch (err) {
      throw failure(err);
    } finally {
      if (!done) input.destroy();
    }
  }

  return {
    columns,
    rows: rows(),
    hash() {
      if (!done) throw new Error('CSV hash read before the last row');
      hex ??= digest.digest('hex');
      return hex;
    },
  };
}

/** Options of {@link csvWriter}. */
export interface CsvWriteOptions {
  /**
   * Write values exactly as they are (`--raw`). By default a value starting with `=`, `+`, `-`, `@`, TAB or CR
   * (or their full-width forms) gets a leading `'`, so a spreadsheet shows it as text instead of running it as a
   * formula (OWASP CSV injection, https://owasp.org/www-community/attacks/CSV_Injection).
   */
  raw?: boolean;
}

/**
 * The CSV writer for every CSV switchboard writes: a csv-stringify transform taking rows as arrays of strings
 * (null/undefined → empty), writing a header row of `columns` first, records ended by LF. A value holding CR, LF,
 * a double quote or the delimiter is always quoted (quotes doubled, RFC 4180), so every reader sees the same
 * records; formula-like values are neutralised unless `opts.raw` (see {@link CsvWriteOptions.raw}), header
 * included. See https://csv.js.org/stringify/options/.
 */
export function csvWriter(columns: readonly string[], opts: CsvWriteOptions = {}): Stringifier {
  return stringify({
    header: true,
    columns: [...columns],
    record_delimiter: 'unix',
    // csv-stringify leaves a bare CR unquoted once a record delimiter is set; readers then split the record.
    quote_record_delimiter: true,
    escape_formulas: opts.raw !== true,
  });
}
