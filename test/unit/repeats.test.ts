// Duplicate recipients found with 32-bit fingerprints (src/core/batch/repeats.ts) agree with an exact Map of the
// addresses, including across table growth and for addresses that differ only in case.
import { describe, expect, test } from 'vitest';
import { RepeatFinder, exactRepeats } from '../../src/core/batch/repeats.js';

describe('RepeatFinder + exactRepeats', () => {
  test('200,000 rows with repeats: the same duplicates as a Map of every address', () => {
    let seed = 42;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const rows: string[] = [];
    for (let i = 0; i < 200_000; i++) {
      // about 1 % repeat an earlier address, sometimes in other case
      const j = rows.length > 0 && rand() < 0.01 ? Math.floor(rand() * rows.length) : -1;
      const base = j >= 0 ? rows[j]! : `user${i}-${Math.floor(rand() * 1e9)}@example.com`;
      rows.push(j >= 0 && rand() < 0.5 ? base.toUpperCase() : base);
    }
    const finder = new RepeatFinder();
    rows.forEach((r, k) => finder.add(k + 1, r));
    const groups = finder.candidates();
    const info = new Map(groups.flat().map((row) => [row, { line: row + 1, recipient: rows[row - 1]! }]));
    const got = exactRepeats(groups, info);

    const first = new Map<string, number>();
    const want = new Map<number, number[]>();
    rows.forEach((r, k) => {
      const key = r.toLowerCase();
      const f = first.get(key);
      if (f === undefined) first.set(key, k + 1);
      else want.set(f, [...(want.get(f) ?? []), k + 1]);
    });
    expect(got.length).toBeGreaterThan(1000);
    expect(got.map((d) => [d.firstLine - 1, d.later.map((l) => l.row)])).toEqual([...want].sort((a, b) => a[0] - b[0]));
    expect(got[0]!.recipient).toBe(rows[got[0]!.firstLine - 2]);
  });
});
