// SMS encoding and segments (src/core/segments.ts over sms-segments-calculator) against the published rules and
// examples: GSM-7 160 in one segment, 153 per part; UCS-2 70, 67 per part; an extension character costs two
// septets and its escape pair is never split; a surrogate pair is never split
// (https://www.twilio.com/docs/glossary/what-sms-character-limit, ../shared/notes/webhooks.md).
import { describe, expect, test } from 'vitest';
import { SegmentedMessage } from 'sms-segments-calculator';
import { estimateCost, messageSegments, priceFromSettings, SegmentCounter, SegmentTally, segmentInfo, showCharacter } from '../../src/core/segments.js';

const a = (n: number) => 'a'.repeat(n);

describe('segmentInfo', () => {
  test.each([
    ['160 GSM-7 characters', a(160), 'GSM-7', 1],
    ['161 GSM-7 characters', a(161), 'GSM-7', 2],
    ['306 = 2 × 153', a(306), 'GSM-7', 2],
    ['307', a(307), 'GSM-7', 3],
    ['70 UCS-2 units (a ç forces UCS-2)', 'ç' + a(69), 'UCS-2', 1],
    ['71 UCS-2 units', 'ç' + a(70), 'UCS-2', 2],
    ['134 = 2 × 67', 'ç' + a(133), 'UCS-2', 2],
    ['135', 'ç' + a(134), 'UCS-2', 3],
    ['159 + € (two septets) = 161', a(159) + '€', 'GSM-7', 2],
    ['152 + € + 152: the escape pair is not split across the boundary', a(152) + '€' + a(152), 'GSM-7', 3],
    ['152 + { + 152: same for {', a(152) + '{' + a(152), 'GSM-7', 3],
    ['66 + 😀 + 66: the surrogate pair is not split', a(66) + '😀' + a(66), 'UCS-2', 3],
    ['an emoji turns 160 characters into 3 UCS-2 segments', a(159) + '😀', 'UCS-2', 3],
    ['empty', '', 'GSM-7', 1],
  ])('%s', (_what, text, encoding, segments) => {
    const info = segmentInfo(text);
    expect(info).toMatchObject({ encoding, segmentCount: segments });
    // The library's own count, for the record: the module adds nothing of its own to it.
    expect(info.segmentCount).toBe(new SegmentedMessage(text).segmentsCount);
  });

  test('counts septets (an extension character twice) and names the characters that forced UCS-2, once each, in order', () => {
    expect(segmentInfo('Price: 5€ {ok}')).toMatchObject({ encoding: 'GSM-7', characterCount: 17, nonGsmCharacters: [] });
    expect(segmentInfo('Zoë 😀 ë “hi”')).toMatchObject({ encoding: 'UCS-2', nonGsmCharacters: ['ë', '😀', '“', '”'] });
  });
});

describe('cost', () => {
  test('a provider config price, rounded to 6 decimals; none without pricePerSegment', () => {
    const price = priceFromSettings({ pricePerSegment: 0.0079, currency: 'USD', from: '+1' });
    expect(price).toEqual({ pricePerSegment: 0.0079, currency: 'USD' });
    expect(estimateCost(3, price)).toBe(0.0237);
    expect(priceFromSettings({ from: '+1' })).toBeNull();
    expect(estimateCost(3, null)).toBeNull();
    expect(messageSegments(a(152) + '€' + a(152), price)).toMatchObject({ segmentCount: 3, estimatedCost: 0.0237, currency: 'USD' });
  });

  test('SegmentTally: totals for a batch, the UCS-2 rows with their characters (bounded), the estimated cost', () => {
    const tally = new SegmentTally(2);
    const rows = ['Hi Ann', 'Hi Zoë', a(161), 'Hi 😀', 'Hi ç'];
    rows.forEach((text, i) => tally.add(i + 1, i + 2, segmentInfo(text)));
    expect(tally.totals({ pricePerSegment: 0.01, currency: 'EUR' })).toEqual({
      messageCount: 5,
      segmentCount: 6,
      gsm7Count: 2,
      ucs2Count: 3,
      ucs2Rows: [
        { row: 2, line: 3, nonGsmCharacters: ['ë'] },
        { row: 4, line: 5, nonGsmCharacters: ['😀'] },
      ],
      estimatedCost: 0.06,
      currency: 'EUR',
      pricePerSegment: 0.01,
    });
  });

  test('showCharacter makes invisible characters readable', () => {
    expect(showCharacter('😀')).toBe('😀');
    expect(showCharacter('\u00a0')).toBe('U+00A0');
    expect(showCharacter('\u200b')).toBe('U+200B');
  });
});

describe('SegmentCounter (shape-keyed cache for dry runs)', () => {
  // Pieces that stress grapheme clustering next to ASCII: combining marks, ZWJ sequences, skin tones, flags
  // (regional indicator pairs), an Arabic prepend mark, Hangul jamo, CR LF, extension characters, backtick
  // (ASCII but not GSM-7), tab, and characters of both alphabets.
  const PIECES = ['a', 'B', '7', ' ', '.', '{', '}', '[', '€', '^', '\\', '|', '~', '`', '\t', '\n', '\r', '\r\n', '\f', 'é', 'ç', 'Ç', 'ë', '\u0301', '\u200d',
    '😀', '👍🏽', '👩‍💻', '🇬🇧', '🇺', '\u0600', '\u1100', '\u1161', '\u11a8', '“', 'Ω', '@', '$', '_', '\u00a0'];

  test('gives exactly what the library gives, on 1,500 random texts up to 400 pieces', () => {
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const counter = new SegmentCounter();
    for (let k = 0; k < 1500; k++) {
      // Mostly plain text with a few special pieces, as real messages are; some texts all special.
      const special = k % 10 === 0 ? 1 : 0.1;
      const parts: string[] = [];
      for (let n = rand(400); n > 0; n--) parts.push(rand(1000) < special * 1000 ? PIECES[rand(PIECES.length)]! : PIECES[rand(3)]!);
      const text = parts.join('');
      expect(counter.info(text), JSON.stringify(text)).toEqual(segmentInfo(text));
    }
  });

  test('rows that differ only in the letters of a name share one library call', () => {
    const counter = new SegmentCounter();
    const a1 = counter.info('Hi Ann, see you at 9:30 {ok} 😀');
    const a2 = counter.info('Hi Bob, see you at 9:31 [ok] 😀');
    expect(a2).toBe(a1);
    expect(counter.info('Hi Zoë, see you at 9:30 {ok} 😀')).not.toBe(a1);
  });
});
