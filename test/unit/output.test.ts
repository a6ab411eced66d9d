// Output: tables drawn by cli-table3 on a terminal, tab-separated lines elsewhere; colour only on a terminal.
import { describe, expect, it, test } from 'vitest';
import { formatTime, Output, stamp, TABLE_PAGE, type OutputOptions } from '../../src/cli/output.js';

const tty = { write: () => true, isTTY: true };
const pipe = { write: () => true, isTTY: false };
const opts = (color: boolean): OutputOptions => ({ json: false, quiet: false, verbose: false, color });
const ANSI = new RegExp(String.fromCharCode(27) + '\\[');

describe('Output.table', () => {
  const head = ['ID', 'NAME', 'PROVIDERS'];
  const rows = [
    ['acme-dental', 'Acme Dental', 2],
    ['b', null, undefined],
  ];

  it('prints tab-separated lines, header first, when stdout is not a terminal', async () => {
    const o = await Output.create(pipe, pipe, opts(true));
    expect(o.table(head, rows)).toBe('ID\tNAME\tPROVIDERS\nacme-dental\tAcme Dental\t2\nb\t-\t-');
  });

  it('keeps each row on one line: tabs and line breaks in a cell become spaces', async () => {
    const o = await Output.create(pipe, pipe, opts(false));
    expect(o.table(['A', 'B'], [['x\ty', 'line one\r\nline two']]).split('\n')).toEqual(['A\tB', 'x y\tline one line two']);
  });

  it('prints only the header line for no rows', () => {
    expect(new Output(pipe, pipe, opts(false)).table(head, [])).toBe('ID\tNAME\tPROVIDERS');
  });

  it('draws a cli-table3 table on a terminal, wide characters aligned', async () => {
    const o = await Output.create(tty, tty, opts(false));
    const lines = o.table(['ID', 'NAME'], [['zahnarzt', 'Zahnärzte Müller 歯科'], ['a', 'b']]).split('\n');
    expect(lines[0]).toMatch(/^┌─+┬─+┐$/);
    expect(lines[1]).toMatch(/^│ ID +│ NAME +│$/);
    expect(lines[2]).toMatch(/^│ zahnarzt │ Zahnärzte Müller 歯科 │$/);
    expect(lines.at(-1)).toMatch(/^└─+┴─+┘$/);
    expect(lines.join('\n')).not.toMatch(ANSI);
  });

  it('uses colour (a bold header) only when colour is on and stdout is a terminal', async () => {
    expect((await Output.create(tty, tty, opts(true))).table(['ID'], [['a']])).toMatch(ANSI);
    expect((await Output.create(tty, tty, opts(false))).table(['ID'], [['a']])).not.toMatch(ANSI);
    expect((await Output.create(pipe, tty, opts(true))).c.red('x')).toBe('x');
  });
});

describe('Output.resultRows (a long list written as it is read)', () => {
  /** A stream that keeps what is written, and how many writes. */
  const sink = (isTTY: boolean) => {
    const s = { text: '', writes: 0, isTTY, write: (t: string) => ((s.text += t), s.writes++, true) };
    return s;
  };
  async function* gen<T>(xs: readonly T[]): AsyncIterable<T> {
    yield* xs;
  }
  type Row = { row: number; note: string | null };
  const head = ['ROW', 'NOTE'];
  const data = { id: 'b-1', nested: { a: [1, 2], b: 'x' }, items: 'dropped: the list takes its place' };
  const rows = (n: number): Row[] => Array.from({ length: n }, (_, k) => ({ row: k + 1, note: k % 2 ? 'tab\there, "quoted"\nand a break' : null }));
  const twice = (r: Row) => ({ ...r, twice: [r.row, r.row] });
  const json = { json: true, quiet: false, verbose: false, color: false };

  test.each([0, 1, 3, 2500])('--json: byte for byte the document result() prints, %i rows (a member of an object, or the whole array)', async (n) => {
    for (const inObject of [true, false]) {
      const streamed = sink(false);
      const whole = sink(false);
      await new Output(streamed, streamed, json).resultRows(gen(rows(n)), { ...(inObject ? { data, key: 'items' } : {}), json: twice, head, cells: () => [] });
      new Output(whole, whole, json).result(inObject ? { ...data, items: rows(n).map(twice) } : rows(n).map(twice), () => '');
      expect(streamed.text).toBe(whole.text);
      expect((inObject ? JSON.parse(streamed.text).items : JSON.parse(streamed.text)) as unknown[]).toHaveLength(n);
      // Gathered into large writes, not one per row.
      expect(streamed.writes).toBeLessThanOrEqual(1 + Math.ceil(streamed.text.length / 65536));
    }
  });

  it('on a pipe: the text, a blank line, then the tab-separated table (header first), as table() prints it', async () => {
    const s = sink(false);
    const o = new Output(s, s, opts(false));
    await o.resultRows(gen(rows(3)), { data, key: 'items', json: (r) => r, human: () => 'batch  b-1', head, cells: (r) => [r.row, r.note] });
    expect(s.text).toBe(`batch  b-1\n\n${o.table(head, rows(3).map((r) => [r.row, r.note]))}\n`);
  });

  it('without text: the table alone, as list() prints it; no rows: the header and the note on stderr', async () => {
    const s = sink(false);
    const err = sink(false);
    const o = new Output(s, err, opts(false));
    await o.resultRows(gen(rows(2)), { json: (r) => r, head, cells: (r) => [r.row, r.note], emptyNote: 'No rows.' });
    expect(s.text).toBe(`${o.list(head, rows(2).map((r) => [r.row, r.note]))}\n`);
    expect(err.text).toBe('');
    const empty = sink(false);
    await new Output(empty, err, opts(false)).resultRows(gen([] as Row[]), { json: (r) => r, head, cells: (r) => [r.row, r.note], emptyNote: 'No rows.' });
    expect(empty.text).toBe('ROW\tNOTE\n');
    expect(err.text).toMatch(/No rows\.\n$/);
  });

  it(`on a terminal: cli-table3 tables of ${TABLE_PAGE} rows each; no rows: the header alone`, async () => {
    const s = sink(true);
    await new Output(s, s, opts(false)).resultRows(gen(rows(TABLE_PAGE + 1)), { data, key: 'items', json: (r) => r, human: () => 'batch  b-1', head, cells: (r) => [r.row, r.note] });
    expect(s.text.match(/│ ROW +│ NOTE +│/g)).toHaveLength(2);
    expect(s.text).toMatch(new RegExp(`│ ${TABLE_PAGE + 1} +│ - +│`));
    const empty = sink(true);
    await new Output(empty, empty, opts(false)).resultRows(gen([] as Row[]), { data, key: 'items', json: (r) => r, human: () => 'batch  b-1', head, cells: () => [] });
    expect(empty.text.match(/│ ROW +│ NOTE +│/g)).toHaveLength(1);
  });
});

describe('times and status lines', () => {
  const withTz = <T>(tz: string, fn: () => T): T => {
    const old = process.env.TZ;
    process.env.TZ = tz;
    try {
      return fn();
    } finally {
      if (old === undefined) delete process.env.TZ;
      else process.env.TZ = old;
    }
  };

  test('table times: local with the zone offset (TZ), or UTC with --utc; seconds on request; null for none', () => {
    withTz('America/New_York', () => {
      expect(formatTime('2026-12-02T14:30:05.123Z')).toBe('2026-12-02 09:30 -05:00');
      expect(formatTime('2026-07-02T14:30:05Z')).toBe('2026-07-02 10:30 -04:00');
      expect(formatTime('2026-12-02T14:30:05Z', true, true)).toBe('2026-12-02 14:30:05 +00:00');
    });
    withTz('Asia/Kolkata', () => expect(formatTime('2026-12-02T23:50:00Z')).toBe('2026-12-03 05:20 +05:30'));
    expect(formatTime(null)).toBeNull();
    expect(formatTime('not a time')).toBeNull();
  });

  test('status lines and warnings are dated ISO 8601 without a terminal, plain on one; --quiet silences both', () => {
    const lines: string[] = [];
    const sink = (isTTY: boolean) => ({ write: (t: string) => lines.push(t), isTTY });
    withTz('America/New_York', () => {
      const o = new Output(pipe, sink(false), opts(false));
      o.status('sending: 1/2 done');
      o.warn('sender domain not authenticated');
      o.warn('sender domain not authenticated'); // once per run
      new Output(pipe, sink(true), opts(false)).status('on a terminal');
      new Output(pipe, sink(false), { ...opts(false), quiet: true }).warn('quiet');
      new Output(pipe, sink(false), { ...opts(false), utc: true }).status('utc');
    });
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0[45]:00 sending: 1\/2 done\n$/);
    expect(lines[1]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-0[45]:00 warning: sender domain not authenticated\n$/);
    expect(lines[2]).toBe('on a terminal\n');
    expect(lines[3]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ utc\n$/);
    expect(stamp(new Date('2026-12-02T14:30:05Z'), true)).toBe('2026-12-02T14:30:05Z');
  });

  test('an empty list: the header line alone on stdout, the note on stderr', () => {
    const err: string[] = [];
    const o = new Output(pipe, { write: (t: string) => err.push(t), isTTY: true }, opts(false));
    expect(o.list(['ID', 'NAME'], [], 'No tenants yet.')).toBe('ID\tNAME');
    expect(err).toEqual(['No tenants yet.\n']);
  });
});
