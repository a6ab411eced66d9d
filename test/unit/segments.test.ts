// SMS encoding and segments (src/core/segments.ts over sms-segments-calculator) against the published rules and
// examples: GSM-7 160 in one segment, 153 per part; UCS-2 70, 67 per part; an extension character costs two
// septets and its escape pair is never split; a surrogate pair is never split
// (https://www.twilio.com/docs/glossary/what-sms-character-limit, ../shared/notes/webhooks.md).
import { describe, expect, test } from 'vitest';
import { SegmentedMessage } from 'sms-segments-calculator';
import { estimateCost, messageSegments, priceFromSettings, SegmentTally, segmentInfo, showCharacter } from '../../src/core/segments.js';

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
