/**
 * Streaming CSV input for bulk sends (csv-parse). The file is never loaded whole: rows are yielded one at a
 * time with their data-row number and the line where they start, and the SHA-256 of the bytes read is
 * available at the end. Handles a UTF-8 BOM, CRLF, quoted commas and quoted newlines.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { parse } from 'csv-parse';
import { UsageError } from '../errors.js';

/** One data row. `row` counts data rows from 1; `line` is the 1-based line of the file where the row starts. */
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
  /** SHA-256 (hex) of the file's bytes, once every row was read. */
  hash(): string;
}

/**
 * Opens a CSV file with a header row. Column names are trimmed; empty or duplicate names are errors.
 * @throws UsageError naming `--csv` and the line for unreadable files, malformed CSV, or a bad header.
 */
export async function openCsv(file: string): Promise<CsvReader> {
  const digest = createHash('sha256');
  let input: fs.ReadStream;
  try {
    await fs.promises.access(file, fs.constants.R_OK);
    input = fs.createReadStream(file);
  } catch (err) {
    throw new UsageError(`--csv ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  input.on('data', (chunk) => digest.update(chunk));
  const parser = input.pipe(
    parse({ bom: true, skip_empty_lines: true, relax_column_count: false, raw: true }),
  );
  input.on('error', (err) => parser.destroy(err));
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
        const out: Record<string, string> = {};
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
