import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { Output } from '../../src/cli/output.js';
import type TableType from 'cli-table3';

const Table = createRequire(import.meta.url)('cli-table3') as typeof TableType;
const sink = { write: () => true, isTTY: true };

/** The table as cli-table3 draws it with Output's settings. */
function reference(o: Output, head: string[], rows: unknown[][]): string {
  const t = new Table({ head: head.map((h) => o.c.bold(h)), style: { head: [], border: [] }, chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } });
  for (const r of rows) t.push(r.map((v) => (v === null || v === undefined ? '-' : String(v))));
  return t.toString();
}

describe('Output.table', () => {
  const head = ['ID', 'NAME', 'PROVIDERS', 'CREATED'];
  const cases: unknown[][][] = [
    [],
    [['acme-dental', 'Acme Dental', 2, '2026-11-23']],
    [['a', null, undefined, 'x'], ['tenant-0001', 'Tenant with a much longer name', 12345, '']],
  ];
  for (const color of [false, true]) {
    it.each(cases)(`draws ASCII tables exactly as cli-table3 does (colour ${color}) %#`, (...rows) => {
      const o = new Output(sink, sink, { json: false, quiet: false, verbose: false, color });
      expect(o.table(head, rows)).toBe(reference(o, head, rows));
    });
  }

  it('leaves wide characters and line breaks to cli-table3', () => {
    const o = new Output(sink, sink, { json: false, quiet: false, verbose: false, color: false });
    const rows = [['zahnarzt', 'Zahnärzte Müller 歯科'], ['two', 'line one\nline two']];
    expect(o.table(['ID', 'NAME'], rows)).toBe(reference(o, ['ID', 'NAME'], rows));
  });
});
