/**
 * SMS (and WhatsApp) encoding, segments and estimated cost, for previews: `template preview` per message, and
 * (through {@link SegmentTally}) a bulk send's dry run per row and for the batch.
 *
 * Counting is done by `sms-segments-calculator` (Twilio's message segment calculator, MIT), which follows
 * 3GPP TS 23.038 / 23.040 as carriers do: a message that fits the GSM 03.38 alphabet is GSM-7, 160 septets in
 * one segment or 153 per segment when split (the rest is the concatenation header); an extension character
 * (`^ { } \ [ ~ ] | €` and form feed) costs two septets, and the escape pair is never split across segments.
 * One character outside GSM-7 (an emoji, `ç`, a curly quote) makes the whole message UCS-2: 70 UTF-16 code
 * units in one segment, 67 per segment when split, a surrogate pair never split. Sources:
 * https://www.twilio.com/docs/glossary/what-sms-character-limit,
 * https://www.twilio.com/docs/glossary/what-is-gsm-7-character-encoding,
 * https://github.com/TwilioDevEd/message-segment-calculator.
 */
import { SegmentedMessage } from 'sms-segments-calculator';
import type { SettingValue } from '../providers/types.js';

/** The two SMS data codings. */
export type SmsEncoding = 'GSM-7' | 'UCS-2';

/** How one message body goes over SMS. */
export interface SegmentInfo {
  encoding: SmsEncoding;
  /** Segments (SMS parts) the carrier bills; 1 for an empty body. */
  segmentCount: number;
  /** Length as the library counts it: GSM-7 septets (an extension character counts 2), or UCS-2 characters (graphemes: an emoji is one). */
  characterCount: number;
  /** The characters that are not in GSM-7, each once in order of first appearance: why a message is UCS-2. */
  nonGsmCharacters: string[];
}

/** Encoding, segment count and the characters that forced UCS-2, for one message body. */
export function segmentInfo(text: string): SegmentInfo {
  const m = new SegmentedMessage(text);
  return {
    encoding: m.encodingName,
    segmentCount: m.segmentsCount,
    characterCount: m.numberOfCharacters,
    nonGsmCharacters: [...new Set(m.getNonGsmCharacters())],
  };
}

/** Cached results per text shape: cleared when full, so memory stays bounded whatever the input. */
const MAX_CACHED = 20_000;

/**
 * {@link segmentInfo} for many messages (a bulk send's dry run), fast. The library takes 0.3-0.6 ms a message
 * (it splits graphemes with `grapheme-splitter`), minutes for 200,000 rows; but its result depends only on
 * the text's shape, so each text is reduced to a shape key and the library runs once per distinct shape.
 *
 * The key replaces a printable ASCII character that is in GSM-7 by `a` (basic) or `{` (extension; two
 * septets) when both its neighbours are ASCII as well; everything else stays as it is. Between two ASCII
 * characters there is always a grapheme break (Unicode UAX #29; CR LF, which the library splits anyway, is
 * the one pair that joins), so the replaced characters are single-character graphemes of the same GSM-7 class
 * and size before and after: encoding, segments, length and the non-GSM graphemes come out the same. Rows
 * that differ only in the letters of a name share a key; a free-text column of unique lengths does not.
 */
export class SegmentCounter {
  private readonly cache = new Map<string, SegmentInfo>();
  /** Per ASCII code: 1 basic GSM-7, 2 extension, 0 not GSM-7 or not printable (kept in keys). */
  private static classes: Uint8Array | undefined;

  /** Encoding, segments, length and non-GSM characters of `text`, as {@link segmentInfo} gives them. */
  info(text: string): SegmentInfo {
    const key = this.key(text);
    let info = this.cache.get(key);
    if (!info) {
      info = segmentInfo(key);
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(key, info);
    }
    return info;
  }

  private key(text: string): string {
    const cls = SegmentCounter.asciiClasses();
    let out = '';
    let from = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      const k = c < 128 ? cls[c]! : 0;
      if (k === 0 || (i > 0 && text.charCodeAt(i - 1) >= 128) || (i + 1 < text.length && text.charCodeAt(i + 1) >= 128)) continue;
      const to = k === 1 ? 'a' : '{';
      if (text[i] === to) continue;
      out += text.slice(from, i) + to;
      from = i + 1;
    }
    return from === 0 ? text : out + text.slice(from);
  }

  /** The GSM-7 class of each printable ASCII character, as the library itself counts it (computed once). */
  private static asciiClasses(): Uint8Array {
    if (!this.classes) {
      const cls = new Uint8Array(128);
      // Printable ASCII, and LF / CR / form feed (GSM-7 has them; the library splits CR LF itself).
      for (const c of [10, 12, 13, ...Array.from({ length: 95 }, (_, k) => k + 32)]) {
        const m = new SegmentedMessage(String.fromCharCode(c));
        if (m.encodingName === 'GSM-7') cls[c] = m.numberOfCharacters === 1 ? 1 : 2;
      }
      this.classes = cls;
    }
    return this.classes;
  }
}

/** A price per segment, from a provider config's `pricePerSegment` and `currency` settings or a flag. */
export interface SegmentPrice {
  /** Price of one segment in `currency` (e.g. 0.0079). */
  pricePerSegment: number;
  /** ISO 4217 code, or null when not given. */
  currency: string | null;
}

/** The price a provider config's settings give (`pricePerSegment`, `currency`), or null when it has none. */
export function priceFromSettings(settings: Readonly<Record<string, SettingValue>>): SegmentPrice | null {
  const p = settings.pricePerSegment;
  if (typeof p !== 'number') return null;
  return { pricePerSegment: p, currency: typeof settings.currency === 'string' ? settings.currency : null };
}

/** `segmentCount` × the price, rounded to 6 decimals (no float noise such as 0.023700000000000002); null without a price. */
export function estimateCost(segmentCount: number, price: SegmentPrice | null): number | null {
  if (!price) return null;
  return Math.round(segmentCount * price.pricePerSegment * 1e6) / 1e6;
}

/** One message's segment facts with its estimated cost: what a preview shows per message. */
export interface MessageSegments extends SegmentInfo {
  estimatedCost: number | null;
  currency: string | null;
}

/** {@link segmentInfo} with the estimated cost at `price`. */
export function messageSegments(text: string, price: SegmentPrice | null): MessageSegments {
  const info = segmentInfo(text);
  return { ...info, estimatedCost: estimateCost(info.segmentCount, price), currency: price?.currency ?? null };
}

/** A row that left GSM-7: where it is and the characters that caused it. */
export interface Ucs2Row {
  row: number;
  line: number;
  nonGsmCharacters: string[];
}

/** A batch's segment totals. */
export interface SegmentTotals {
  messageCount: number;
  segmentCount: number;
  gsm7Count: number;
  ucs2Count: number;
  /** The first {@link SegmentTally} `keepRows` rows that are UCS-2 (`ucs2Count` is always exact). */
  ucs2Rows: Ucs2Row[];
  estimatedCost: number | null;
  currency: string | null;
  pricePerSegment: number | null;
}

/**
 * Adds up segments over many messages (a bulk send's dry run), keeping the first `keepRows` rows that are UCS-2
 * with their offending characters. Memory stays bounded whatever the number of rows.
 */
export class SegmentTally {
  private messages = 0;
  private segments = 0;
  private ucs2 = 0;
  private readonly rows: Ucs2Row[] = [];

  constructor(private readonly keepRows = 50) {}

  /** Counts one message (its {@link segmentInfo}), at CSV data row `row` and file line `line`. */
  add(row: number, line: number, info: SegmentInfo): void {
    this.messages++;
    this.segments += info.segmentCount;
    if (info.encoding === 'UCS-2') {
      this.ucs2++;
      if (this.rows.length < this.keepRows) this.rows.push({ row, line, nonGsmCharacters: info.nonGsmCharacters });
    }
  }

  /** The totals so far, with the estimated cost at `price`. */
  totals(price: SegmentPrice | null): SegmentTotals {
    return {
      messageCount: this.messages,
      segmentCount: this.segments,
      gsm7Count: this.messages - this.ucs2,
      ucs2Count: this.ucs2,
      ucs2Rows: [...this.rows],
      estimatedCost: estimateCost(this.segments, price),
      currency: price?.currency ?? null,
      pricePerSegment: price?.pricePerSegment ?? null,
    };
  }
}

/** A character for a message line: printable as is, or its code point (`U+00A0`) for spaces and controls. */
export function showCharacter(c: string): string {
  return /^[\p{L}\p{N}\p{P}\p{S}]+$/u.test(c) && !/\p{Cf}/u.test(c) ? c : [...c].map((x) => `U+${x.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`).join(' ');
}
