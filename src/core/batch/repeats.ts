/**
 * Finding recipients that appear on more than one row of a CSV, in one pass and without keeping every address:
 * each row's lower-cased recipient is reduced to a 32-bit FNV-1a fingerprint in an open-addressing table (8 bytes
 * a row: 16 MB for 1,000,000 rows, against more than 100 MB for a Map of the addresses). Rows whose fingerprint
 * was seen before are candidates; the caller checks the candidates exactly against their addresses (a few
 * fingerprint collisions among a million distinct addresses are expected, and fall out there).
 */
import type { DuplicateRecipient } from './ledger.js';

/** 32-bit FNV-1a of a string's UTF-16 code units (http://www.isthe.com/chongo/tech/comp/fnv/). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Collects the rows whose recipient's fingerprint repeats an earlier row's. */
export class RepeatFinder {
  /** Fingerprint per slot; `rows[i]` 0 marks an empty slot (row numbers start at 1). */
  private fps = new Uint32Array(1 << 16);
  private rows = new Uint32Array(1 << 16);
  private used = 0;
  /** First row of a fingerprint → the later rows with the same fingerprint. */
  private readonly later = new Map<number, number[]>();

  /** Notes row `row` (≥ 1) with its recipient. */
  add(row: number, recipient: string): void {
    const fp = fnv1a(recipient.toLowerCase());
    const mask = this.fps.length - 1;
    for (let i = fp & mask; ; i = (i + 1) & mask) {
      const at = this.rows[i]!;
      if (at === 0) {
        this.fps[i] = fp;
        this.rows[i] = row;
        if (++this.used * 2 > this.fps.length) this.grow();
        return;
      }
      if (this.fps[i] === fp) {
        const list = this.later.get(at);
        if (list) list.push(row);
        else this.later.set(at, [row]);
        return;
      }
    }
  }

  /** Row numbers to check exactly, grouped: each group is a first row, then its later rows. */
  candidates(): number[][] {
    return [...this.later].map(([first, rest]) => [first, ...rest]);
  }

  private grow(): void {
    const fps = this.fps;
    const rows = this.rows;
    this.fps = new Uint32Array(fps.length * 2);
    this.rows = new Uint32Array(fps.length * 2);
    const mask = this.fps.length - 1;
    for (let j = 0; j < fps.length; j++) {
      if (rows[j] === 0) continue;
      let i = fps[j]! & mask;
      while (this.rows[i] !== 0) i = (i + 1) & mask;
      this.fps[i] = fps[j]!;
      this.rows[i] = rows[j]!;
    }
  }
}

/**
 * The exact duplicates among candidate groups, given each candidate row's line and recipient: rows of a group
 * with the same lower-cased recipient, in order of their first row.
 */
export function exactRepeats(groups: readonly number[][], info: ReadonlyMap<number, { line: number; recipient: string }>): DuplicateRecipient[] {
  const out: Array<DuplicateRecipient & { firstRow: number }> = [];
  for (const group of groups) {
    const byAddress = new Map<string, number[]>();
    for (const row of [...group].sort((a, b) => a - b)) {
      const key = info.get(row)!.recipient.toLowerCase();
      const same = byAddress.get(key);
      if (same) same.push(row);
      else byAddress.set(key, [row]);
    }
    for (const rows of byAddress.values()) {
      if (rows.length < 2) continue;
      const first = info.get(rows[0]!)!;
      out.push({ firstRow: rows[0]!, recipient: first.recipient, firstLine: first.line, later: rows.slice(1).map((row) => ({ row, line: info.get(row)!.line })) });
    }
  }
  return out.sort((a, b) => a.firstRow - b.firstRow).map(({ firstRow: _f, ...d }) => d);
}
