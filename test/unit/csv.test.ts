import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openCsv, type CsvRow } from '../../src/core/csv.js';

function file(content: string | Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-csv-'));
  const f = path.join(dir, 'in.csv');
  fs.writeFileSync(f, content);
  return f;
}

async function all(f: string): Promise<{ columns: string[]; rows: CsvRow[]; hash: string }> {
  const csv = await openCsv(f);
  const rows: CsvRow[] = [];
  for await (const r of csv.rows) rows.push(r);
  return { columns: csv.columns, rows, hash: csv.hash() };
}

describe('openCsv', () => {
  it('handles BOM, CRLF, quoted commas and quoted newlines, with start lines', async () => {
    const content = '\uFEFFemail, name\r\na@example.com,"Doe, Jane"\r\nb@example.com,"two\r\nlines"\r\nc@example.com,plain\r\n';
    const { columns, rows, hash } = await all(file(content));
    expect(columns).toEqual(['email', 'name']);
    expect(rows.map((r) => [r.row, r.line, r.record.name])).toEqual([
      [1, 2, 'Doe, Jane'],
      [2, 3, 'two\r\nlines'],
      [3, 5, 'plain'],
    ]);
    expect(hash).toBe(createHash('sha256').update(content).digest('hex'));
  });

  it.each([
    ['blank lines, LF', 'email\na@x.com\n\n\nb@x.com\n', [2, 5]],
    ['blank lines, CRLF', 'email\r\na@x.com\r\n\r\n\r\nb@x.com\r\n', [2, 5]],
    ['quoted newlines and blank lines, CRLF', 'e,n\r\na,"1\r\n2"\r\n\r\nb,"3\r\n4\r\n5"\r\nc,6', [2, 5, 8]],
    ['quoted newlines and blank lines, LF', 'e,n\na,"1\n2"\n\nb,"3\n4\n5"\nc,6', [2, 5, 8]],
    ['no final newline', 'e,n\na,1\nb,2', [2, 3]],
  ])('gives the start line of each row: %s', async (_name, content, lines) => {
    const { rows } = await all(file(content));
    expect(rows.map((r) => r.line)).toEqual(lines);
  });

  it('names the line of a malformed row', async () => {
    const f = file('email,name\na@example.com,x\nb@example.com,y,extra\n');
    await expect(all(f)).rejects.toThrow(/line 3/);
  });

  it('rejects duplicate and empty column names and empty files', async () => {
    await expect(openCsv(file('email,Email\n'))).rejects.toThrow(/appears twice/);
    await expect(openCsv(file('email,,x\n'))).rejects.toThrow(/column 2 has no name/);
    await expect(openCsv(file(''))).rejects.toThrow(/empty/);
    await expect(openCsv('/nonexistent/x.csv')).rejects.toThrow(/--csv .*no such file/);
  });

  it('streams a large file without reading it whole', async () => {
    const lines = ['email,n'];
    for (let i = 0; i < 20_000; i++) lines.push(`u${i}@example.com,${i}`);
    const { rows } = await all(file(lines.join('\n')));
    expect(rows).toHaveLength(20_000);
    expect(rows[19_999]!.record.n).toBe('19999');
    expect(rows[19_999]!.line).toBe(20_001);
  });
});
