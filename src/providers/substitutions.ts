/**
 * Factoring rendered messages into one shared skeleton plus per-message gaps, for providers whose batched
 * requests carry the content once per request and let each recipient vary it only by string substitution
 * (SendGrid `personalizations[].substitutions`,
 * https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send and
 * https://www.twilio.com/docs/sendgrid/for-developers/sending-email/substitution-tags).
 *
 * The messages are rendered locally, row by row; this module only finds what they have in common. It is exact
 * by construction and checked: for every message it keeps, `literals[0] + gaps[k][0] + literals[1] + … +
 * gaps[k][G-1] + literals[G]` equals the message's string, character for character.
 *
 * Method: each string is cut into tokens ending at whitespace or `>` (words, and HTML tags); every string is
 * diffed against the first one on those tokens (Myers' O(ND) algorithm, after trimming the common head and
 * tail); the tokens of the first string that every other string matches are the skeleton's anchors; what lies
 * between two anchors is a gap; each gap is then narrowed to the characters that really differ (the common
 * head and tail of the gap across all strings move into the literals).
 */

/** What {@link factorStrings} found. */
export interface Factored {
  /** G + 1 literal pieces shared by every kept string. */
  literals: string[];
  /** Per input string: its G gap values, or `undefined` if the string was left out (see `maxGapBytes`). */
  gaps: Array<string[] | undefined>;
}

/** Most edit steps tried per diff before a string is compared by common head and tail only. */
const MAX_EDITS = 1000;

const TOKEN = /[^\s>]*[\s>]|[^\s>]+$/g;

interface Tokens {
  ids: Int32Array;
  /** Character offset of each token's start; `offs[n]` is the string's length. */
  offs: Int32Array;
}

function tokenize(s: string, dict: Map<string, number>): Tokens {
  const parts = s.match(TOKEN) ?? [];
  const ids = new Int32Array(parts.length);
  const offs = new Int32Array(parts.length + 1);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    let id = dict.get(p);
    if (id === undefined) dict.set(p, (id = dict.size));
    ids[i] = id;
    offs[i] = at;
    at += p.length;
  }
  offs[parts.length] = at;
  return { ids, offs };
}

/**
 * Matches tokens of `a` to tokens of `b` along a shortest edit script: `out[i]` is the index in `b` of the
 * token that `a[i]` matches, or -1. Beyond `MAX_EDITS` edits in the middle part, only the common head and
 * tail are matched.
 */
function match(a: Int32Array, b: Int32Array, out: Int32Array): void {
  out.fill(-1);
  let lo = 0;
  while (lo < a.length && lo < b.length && a[lo] === b[lo]) out[lo] = lo++;
  let aHi = a.length;
  let bHi = b.length;
  while (aHi > lo && bHi > lo && a[aHi - 1] === b[bHi - 1]) out[--aHi] = --bHi;
  const n = aHi - lo;
  const m = bHi - lo;
  if (n === 0 || m === 0) return;
  const max = Math.min(n + m, MAX_EDITS);
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1]! < v[off + k + 1]!) ? v[off + k + 1]! : v[off + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[lo + x] === b[lo + y]) {
        x++;
        y++;
      }
      v[off + k] = x;
      if (x >= n && y >= m) {
        // Walk back through the saved frontiers (trace[e] holds v[-e-1 … e+1] before step e).
        let bx = n;
        let by = m;
        for (let e = d; e >= 0; e--) {
          const t = trace[e]!;
          const at = (kk: number) => t[kk + e + 1]!;
          const kk = bx - by;
          const prevK = kk === -e || (kk !== e && at(kk - 1) < at(kk + 1)) ? kk + 1 : kk - 1;
          const prevX = e === 0 ? 0 : at(prevK);
          const prevY = e === 0 ? 0 : prevX - prevK;
          while (bx > prevX && by > prevY) out[lo + --bx] = lo + --by;
          bx = prevX;
          by = prevY;
        }
        return;
      }
    }
  }
}

function isHigh(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Bytes of `s` in UTF-8. */
export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * Factors `strings` (at least one) into a skeleton and per-string gaps (see the module doc).
 * @param maxGapBytes a string whose gaps against the first string would exceed this many UTF-8 bytes in
 *   total is left out (`gaps[k]` undefined) rather than widening every other string's gaps; the first string is
 *   always kept. Callers still check each kept string's exact total.
 */
export function factorStrings(strings: readonly string[], maxGapBytes = Number.POSITIVE_INFINITY): Factored {
  const ref = strings[0] ?? '';
  if (strings.every((s) => s === ref)) return { literals: [ref], gaps: strings.map(() => []) };
  const dict = new Map<string, number>();
  const r = tokenize(ref, dict);
  const nr = r.ids.length;
  const kept: number[] = [0];
  // Per kept string (by its place j in `kept`), where its match of each token i of the first string starts:
  // starts[j·nr + i], in characters (a match is the same token, so it is as long; unmatched ones are never
  // read). One array for the call instead of three small ones per string, so nothing of a string outlives its
  // turn of the loop: a request's worth of strings leaves no per-string objects to be promoted (README bench
  // section, issue 10).
  const starts = new Int32Array(nr * strings.length);
  starts.set(r.offs.subarray(0, nr));
  const matchedBy = new Int32Array(nr);
  const map = new Int32Array(nr);
  for (let k = 1; k < strings.length; k++) {
    const s = strings[k]!;
    const t = s === ref ? r : tokenize(s, dict);
    if (s === ref) for (let i = 0; i < nr; i++) map[i] = i;
    else match(r.ids, t.ids, map);
    // Unmatched characters on either side bound this string's gaps from below.
    let unmatchedRef = 0;
    let matchedChars = 0;
    for (let i = 0; i < nr; i++) {
      const len = r.offs[i + 1]! - r.offs[i]!;
      if (map[i]! < 0) unmatchedRef += len;
      else matchedChars += len;
    }
    const unmatchedOwn = s.length - matchedChars;
    if (Math.max(unmatchedRef, unmatchedOwn) > maxGapBytes) continue;
    const base = nr * kept.length;
    kept.push(k);
    for (let i = 0; i < nr; i++) {
      const m = map[i]!;
      if (m < 0) continue;
      matchedBy[i]!++;
      starts[base + i] = t.offs[m]!;
    }
  }
  const others = kept.length - 1;
  // Anchors: tokens of the first string that every kept string matches. Virtual anchors at -1 and nr.
  const anchors: number[] = [-1];
  for (let i = 0; i < nr; i++) if (matchedBy[i] === others) anchors.push(i);
  anchors.push(nr);
  /** Where kept string j's match of anchor i starts / ends, in characters (the virtual anchors: its two ends). */
  const startOf = (j: number, i: number): number => (i >= nr ? strings[kept[j]!]!.length : starts[j * nr + i]!);
  const endOf = (j: number, i: number): number => (i < 0 ? 0 : starts[j * nr + i]! + r.offs[i + 1]! - r.offs[i]!);

  // Gaps as character ranges per kept string; literals as ranges of the first string. Tokens are never empty,
  // so two anchors are adjacent tokens in a string exactly when the first ends where the second starts.
  const gapRanges: Array<Array<[number, number]>> = [];
  const litRanges: Array<[number, number]> = [];
  let litStart = 0;
  for (let a = 1; a < anchors.length; a++) {
    const p = anchors[a - 1]!;
    const q = anchors[a]!;
    let empty = q === p + 1;
    if (empty) for (let j = 0; j < kept.length; j++) if (startOf(j, q) !== endOf(j, p)) empty = false;
    if (empty) continue;
    const ranges = kept.map((_, j): [number, number] => [endOf(j, p), startOf(j, q)]);
    litRanges.push([litStart, ranges[0]![0]]);
    litStart = ranges[0]![1];
    gapRanges.push(ranges);
  }
  litRanges.push([litStart, ref.length]);

  // Narrow each gap to the characters that differ: its common head joins the literal before, its tail the one after.
  const literals = litRanges.map(([a, b]) => ref.slice(a, b));
  const gaps: string[][] = kept.map(() => []);
  const outLiterals: string[] = [literals[0]!];
  gapRanges.forEach((ranges, g) => {
    const values = ranges.map(([a, b], idx) => strings[kept[idx]!]!.slice(a, b));
    const first = values[0]!;
    let head = Math.min(...values.map((v) => v.length));
    for (const v of values) {
      let i = 0;
      while (i < head && v.charCodeAt(i) === first.charCodeAt(i)) i++;
      head = i;
    }
    if (head > 0 && isHigh(first.charCodeAt(head - 1))) head--;
    let tail = Math.min(...values.map((v) => v.length)) - head;
    for (const v of values) {
      let i = 0;
      while (i < tail && v.charCodeAt(v.length - 1 - i) === first.charCodeAt(first.length - 1 - i)) i++;
      tail = i;
    }
    if (tail > 0 && isLow(first.charCodeAt(first.length - tail))) tail--;
    outLiterals[outLiterals.length - 1] += first.slice(0, head);
    const narrowed = values.map((v) => v.slice(head, v.length - tail));
    if (narrowed.every((v) => v === '')) {
      outLiterals[outLiterals.length - 1] += first.slice(first.length - tail) + literals[g + 1]!;
      return;
    }
    narrowed.forEach((v, idx) => gaps[idx]!.push(v));
    outLiterals.push(first.slice(first.length - tail) + literals[g + 1]!);
  });

  const result: Factored = { literals: outLiterals, gaps: strings.map(() => undefined) };
  kept.forEach((k, idx) => {
    const g = gaps[idx]!;
    // The safety net: a kept string must come back exactly.
    let rebuilt = outLiterals[0]!;
    for (let i = 0; i < g.length; i++) rebuilt += g[i]! + outLiterals[i + 1]!;
    if (rebuilt === strings[k]) result.gaps[k] = g;
  });
  return result;
}
