// Output: tables drawn by cli-table3 on a terminal, tab-separated lines elsewhere; colour only on a terminal.
import { describe, expect, it } from 'vitest';
import { Output, type OutputOptions } from '../../src/cli/output.js';

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
