/**
 * How previews read: the price flags, one message's SMS line (`template preview`, `send batch --dry-run`), and a
 * dry run's text and `--json` (README "JSON output").
 */
import { UsageError } from '../errors.js';
import { showCharacter, type MessageSegments, type SegmentPrice, type SegmentTotals } from '../core/segments.js';
import type { BatchPreview, PreviewMessage } from '../core/batch/preview.js';

/**
 * `--price-per-segment` (with `--currency`) as a price, or undefined when the flag is not given (the route's
 * `pricePerSegment` setting applies then).
 * @throws UsageError naming the flag: not a decimal number, or not an ISO 4217 code.
 */
export function priceFlag(amount: string | undefined, currency: string | undefined): SegmentPrice | undefined {
  if (currency !== undefined && !/^[A-Za-z]{3}$/.test(currency)) throw new UsageError(`--currency ${currency}: expected an ISO 4217 code such as USD`);
  if (amount === undefined) return undefined;
  const n = Number(amount);
  if (!/^\d+(\.\d*)?$|^\.\d+$/.test(amount.trim()) || !Number.isFinite(n)) throw new UsageError(`--price-per-segment ${amount}: expected a number such as 0.0079`);
  return { pricePerSegment: n, currency: currency?.toUpperCase() ?? null };
}

/** `price` with the currency `--currency` names, when given (it overrides the route setting's). */
export function withCurrency(price: SegmentPrice | null, currency: string | undefined): SegmentPrice | null {
  return price && currency ? { ...price, currency: currency.toUpperCase() } : price;
}

/** One line on how a message goes over SMS: encoding, segments, length, what forced UCS-2, estimated cost. */
export function segmentsText(s: MessageSegments): string {
  const why = s.nonGsmCharacters.length ? `; not in GSM-7: ${s.nonGsmCharacters.map(showCharacter).join(' ')}` : '';
  const cost = s.estimatedCost !== null ? `; estimated cost ${s.estimatedCost}${s.currency ? ` ${s.currency}` : ''}` : '';
  return `${s.encoding}, ${plural(s.segmentCount, 'segment')} (${s.characterCount} ${s.encoding === 'GSM-7' ? 'septets' : 'characters'}${why})${cost}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Skipped rows by reason, in order of reason: `[["suppressed: bounce", 2], …]`. */
function byReason(p: BatchPreview): Array<[string, number]> {
  return Object.entries(p.skippedByReason).sort(([a], [b]) => a.localeCompare(b));
}

/** A dry run's preview in the JSON vocabulary: `messages` and `skippedByReason` as arrays (the segment totals are the summary's `sms`). */
export function previewJson(p: BatchPreview) {
  return {
    messages: p.messages.map(({ segments, ...m }) => ({ ...m, sms: segments })),
    skippedByReason: byReason(p).map(([reason, rowCount]) => ({ reason, rowCount })),
  };
}

/** The text of a dry run: the counts, each shown row, and (sms, whatsapp) the segment totals and UCS-2 rows. */
export function dryRunText(rows: number, p: BatchPreview): string {
  const reasons = byReason(p).map(([r, n]) => `${n} ${r}`);
  const head =
    `Dry run: ${plural(rows, 'row')} valid, ${rows - p.skipped} would be sent` +
    (p.skipped ? `, ${p.skipped} skipped (${reasons.join(', ')})` : '') +
    '; nothing was sent or stored.';
  return [head, ...p.messages.flatMap((m) => messageText(p.channel, m)), ...totalsText(p.segments)].join('\n');
}

function messageText(channel: string, m: PreviewMessage): string[] {
  return [
    '',
    `Row ${m.row} (line ${m.line}) to ${m.recipient}${m.skipReason ? `, would be skipped (${m.skipReason})` : ''}:`,
    // Only e-mail has a subject; an sms or whatsapp message is its text alone.
    ...(m.subject !== null ? [`Subject: ${m.subject}`] : []),
    '',
    m.text.trim(),
    ...(m.segments ? ['', `${channel}: ${segmentsText(m.segments)}`] : []),
  ];
}

function totalsText(t: SegmentTotals | null): string[] {
  if (!t) return [];
  const cost = t.estimatedCost !== null ? `; estimated cost ${t.estimatedCost}${t.currency ? ` ${t.currency}` : ''} at ${t.pricePerSegment} per segment` : '';
  const lines = ['', `Segments: ${t.segmentCount} for ${plural(t.messageCount, 'message')} (${t.gsm7Count} GSM-7, ${t.ucs2Count} UCS-2)${cost}`];
  if (t.ucs2Count > 0) {
    const shown = t.ucs2Rows.map((r) => `line ${r.line} (${r.nonGsmCharacters.map(showCharacter).join(' ')})`);
    const more = t.ucs2Count > shown.length ? [`… and ${t.ucs2Count - shown.length} more`] : [];
    lines.push(`Not GSM-7, sent as UCS-2: ${[...shown, ...more].join(', ')}`);
  }
  return lines;
}

/** A real send's summary fields for its sent rows' segments: the total, the UCS-2 messages, the estimated cost. */
export function segmentFields(t: SegmentTotals): Array<[string, unknown]> {
  return [
    ['segments', `${t.segmentCount} (${t.ucs2Count} of ${plural(t.messageCount, 'message')} UCS-2)`],
    ...(t.estimatedCost !== null ? [['estimated cost', `${t.estimatedCost}${t.currency ? ` ${t.currency}` : ''}`] as [string, unknown]] : []),
  ];
}
