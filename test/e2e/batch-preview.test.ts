// e2e: `send batch --dry-run` as a preview (issue 12, point 4), through the binary on a real store: every row
// rendered and checked against the tenant's suppressions (skipped rows counted by reason), `--row <line>` shows
// the rows asked for, and for sms the encoding and segments per message and for the batch, with the rows that
// left GSM-7 and the estimated cost. Segment counts are checked against Twilio's published rules and examples
// (https://www.twilio.com/docs/glossary/what-sms-character-limit: 160 GSM-7 characters in one segment, 153 per
// part; 70 UCS-2, 67 per part; an extension character takes two septets and its escape pair is never split)
// and against the library itself (sms-segments-calculator, Twilio's segment calculator).
import fs from 'node:fs';
import path from 'node:path';
import { SegmentedMessage } from 'sms-segments-calculator';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJsonLines, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit } from '../helpers/setup.js';
import { checkJson } from '../helpers/schemas.js';

const a = (n: number) => 'a'.repeat(n);

/** One CSV row per case: line, body, and the encoding and segments Twilio's rules give it. */
const CASES: Array<{ what: string; line: number; phone: string; body: string; encoding: 'GSM-7' | 'UCS-2'; segments: number }> = [
  { what: '160 GSM-7 characters', line: 2, phone: '+14155550102', body: a(160), encoding: 'GSM-7', segments: 1 },
  { what: '161 GSM-7 characters', line: 3, phone: '+14155550103', body: a(161), encoding: 'GSM-7', segments: 2 },
  // 306 septets would fill 2 × 153 exactly; the € pair straddles the first boundary and moves to segment 2.
  { what: '€ straddling the 153 boundary', line: 4, phone: '+14155550104', body: a(152) + '€' + a(152), encoding: 'GSM-7', segments: 3 },
  { what: '{ straddling the 153 boundary', line: 5, phone: '+14155550105', body: a(152) + '{' + a(152), encoding: 'GSM-7', segments: 3 },
  { what: '€ within one segment: 158 + 2 septets', line: 6, phone: '+14155550106', body: a(158) + '€', encoding: 'GSM-7', segments: 1 },
  { what: '70 UCS-2 characters', line: 7, phone: '+14155550107', body: 'ç' + a(69), encoding: 'UCS-2', segments: 1 },
  { what: '71 UCS-2 characters', line: 8, phone: '+14155550108', body: 'ç' + a(70), encoding: 'UCS-2', segments: 2 },
  { what: 'an emoji turns 160 characters into 3 UCS-2 segments', line: 9, phone: '+14155550109', body: a(158) + '😀', encoding: 'UCS-2', segments: 3 },
];
/** Suppressed rows (lines 10, 11): skipped, not counted in the segments. */
const SUPPRESSED = [
  { line: 10, phone: '+14155550110', reason: 'unsubscribe' },
  { line: 11, phone: '+14155550111', reason: 'bounce' },
];

interface Segments {
  encoding: string;
  segmentCount: number;
  characterCount: number;
  nonGsmCharacters: string[];
  estimatedCost: number | null;
  currency: string | null;
}
interface PreviewSummary {
  type: 'summary';
  status: string;
  rowCount: number;
  pendingCount: number;
  skippedCount: number;
  sms: { messageCount: number; segmentCount: number; gsm7Count: number; ucs2Count: number; ucs2Rows: Array<{ line: number; nonGsmCharacters: string[] }>; estimatedCost: number | null; currency: string | null; pricePerSegment: number | null } | null;
  preview: {
    messages: Array<{ row: number; line: number; recipient: string; subject: string | null; text: string; skipReason: string | null; sms: Segments | null }>;
    skippedByReason: Array<{ reason: string; rowCount: number }>;
  } | null;
}

let ws: Workspace;
let csv: string;
let tpl: string;
const outbox = () => path.join(ws.dir, 'sms-out');
const dryRun = (...extra: string[]) => ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', csv, '--template-file', tpl, '--dry-run', ...extra]);

/** The summary of a `--json` batch run, checked against send-batch.schema.json. */
function summaryOf(stdout: string): PreviewSummary {
  const lines = parseJsonLines<{ type: string }>({ stdout, stderr: '', exitCode: 0 });
  for (const l of lines) checkJson('send-batch', l, 'send batch --json');
  return lines.find((l) => l.type === 'summary') as PreviewSummary;
}

beforeAll(async () => {
  ws = makeWorkspace();
  await addTenant(ws, 'acme');
  expectExit(
    await ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'outbox', '--set', `dir=${outbox()}`, '--set', 'from=+14155550100', '--set', 'pricePerSegment=0.0079', '--set', 'currency=USD']),
    0,
    'sms provider with a price',
  );
  for (const s of SUPPRESSED) expectExit(await ws.run(['suppress', 'add', s.phone, '--tenant', 'acme', '--channel', 'sms', '--reason', s.reason]), 0, 'suppress');
  tpl = ws.file('body.txt', '{{body}}\n');
  const rows = [...CASES.map((c) => `${c.phone},${c.body}`), ...SUPPRESSED.map((s) => `${s.phone},hello`)];
  csv = ws.file('people.csv', `phone,body\n${rows.join('\n')}\n`);
});
afterAll(() => ws?.cleanup());

describe('send batch --dry-run for sms', () => {
  test('segments per row equal the published rules and the library; totals, UCS-2 rows, skipped rows and cost', async () => {
    const rowFlags = CASES.slice(1).flatMap((c) => ['--row', String(c.line)]).concat(['--row', '10']);
    const s = summaryOf(expectExit(await dryRun(...rowFlags, '--json'), 0, 'dry run').stdout);
    expect(s).toMatchObject({ status: 'dry-run', rowCount: 10, pendingCount: 8, skippedCount: 2 });
    const p = s.preview!;
    expect(p.messages.map((m) => m.line)).toEqual([...CASES.map((c) => c.line), 10]);
    for (const c of CASES) {
      const m = p.messages.find((x) => x.line === c.line)!;
      expect(m.text, c.what).toBe(c.body);
      expect(m.subject, 'sms has no subject').toBeNull();
      expect([m.sms!.encoding, m.sms!.segmentCount], c.what).toEqual([c.encoding, c.segments]);
      const lib = new SegmentedMessage(c.body);
      expect([m.sms!.encoding, m.sms!.segmentCount], `${c.what}: the library`).toEqual([lib.encodingName, lib.segmentsCount]);
      expect(m.sms!.estimatedCost).toBe(Math.round(c.segments * 0.0079 * 1e6) / 1e6);
      expect(m.sms!.currency).toBe('USD');
    }
    // A suppressed row asked for is shown, marked; it is not counted in the segments.
    expect(p.messages.at(-1)).toMatchObject({ line: 10, recipient: '+14155550110', skipReason: 'suppressed: unsubscribe' });
    expect(p.skippedByReason).toEqual([
      { reason: 'suppressed: bounce', rowCount: 1 },
      { reason: 'suppressed: unsubscribe', rowCount: 1 },
    ]);
    const total = CASES.reduce((n, c) => n + c.segments, 0);
    expect(s.sms).toEqual({
      messageCount: CASES.length,
      segmentCount: total,
      gsm7Count: CASES.filter((c) => c.encoding === 'GSM-7').length,
      ucs2Count: 3,
      ucs2Rows: [
        { row: 6, line: 7, nonGsmCharacters: ['ç'] },
        { row: 7, line: 8, nonGsmCharacters: ['ç'] },
        { row: 8, line: 9, nonGsmCharacters: ['😀'] },
      ],
      estimatedCost: Math.round(total * 0.0079 * 1e6) / 1e6,
      currency: 'USD',
      pricePerSegment: 0.0079,
    });
    expect(fs.existsSync(outbox()), 'a dry run sends nothing').toBe(false);

    // --price-per-segment overrides the provider's setting.
    const cheap = summaryOf(expectExit(await dryRun('--json', '--price-per-segment', '0.01', '--currency', 'eur'), 0, 'dry run with a price').stdout);
    expect(cheap.sms).toMatchObject({ estimatedCost: Math.round(total * 0.01 * 1e6) / 1e6, currency: 'EUR', pricePerSegment: 0.01 });
    expect(cheap.preview!.messages.map((m) => m.line), 'without --row: the first row only').toEqual([2]);
  });

  test('text: the first row and the --row asked for, encoding and segments, totals with cost, the UCS-2 lines; no Subject', async () => {
    const r = expectExit(await dryRun('--row', '4', '--row', '9'), 0, 'dry run');
    expect(r.stdout).not.toMatch(/Subject/);
    expect(r.stdout).toMatch(/^Dry run: 10 rows valid, 8 would be sent, 2 skipped \(1 suppressed: bounce, 1 suppressed: unsubscribe\); nothing was sent or stored\./);
    expect(r.stdout).toContain(`Row 1 (line 2) to +14155550102:\n\n${a(160)}\n\nsms: GSM-7, 1 segment (160 septets); estimated cost 0.0079 USD`);
    expect(r.stdout).toContain(`Row 3 (line 4) to +14155550104:\n\n${a(152)}€${a(152)}\n\nsms: GSM-7, 3 segments (306 septets); estimated cost 0.0237 USD`);
    expect(r.stdout).toContain('Row 8 (line 9) to +14155550109:');
    expect(r.stdout).toContain('sms: UCS-2, 3 segments (159 characters; not in GSM-7: 😀)');
    expect(r.stdout).not.toContain('(line 5)');
    const total = CASES.reduce((n, c) => n + c.segments, 0);
    expect(r.stdout).toContain(`Segments: ${total} for 8 messages (5 GSM-7, 3 UCS-2); estimated cost ${Math.round(total * 0.0079 * 1e6) / 1e6} USD at 0.0079 per segment`);
    expect(r.stdout).toContain('Not GSM-7, sent as UCS-2: line 7 (ç), line 8 (ç), line 9 (😀)');
  });

  test('bad --row and price flags: exit 2 naming the flag', async () => {
    const missing = expectExit(await dryRun('--row', '12'), 2, '--row past the end');
    expect(missing.stderr).toMatch(/--row 12: no data row starts on line 12 of --csv .*people\.csv \(data rows are on lines 2-11/);
    expect(expectExit(await dryRun('--row', '1'), 2, '--row 1 (the header)').stderr).toMatch(/--row 1: expected a whole number from 2/);
    expect(expectExit(await dryRun('--price-per-segment', 'cheap'), 2, 'bad price').stderr).toMatch(/--price-per-segment cheap: expected a number/);
    const notDry = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', csv, '--template-file', tpl, '--row', '3']);
    expect(expectExit(notDry, 2, '--row without --dry-run').stderr).toMatch(/--row applies to --dry-run only/);
    expect(fs.existsSync(outbox())).toBe(false);
  });

  test('the real send prints the segment total of the rows it sent, as the dry run counted it', async () => {
    const total = CASES.reduce((n, c) => n + c.segments, 0);
    const r = expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', csv, '--template-file', tpl]), 0, 'send');
    const cost = Math.round(total * 0.0079 * 1e6) / 1e6;
    expect(r.stdout).toMatch(new RegExp(`^segments\\s+${total} \\(3 of 8 messages UCS-2\\)\\nestimated cost\\s+${cost} USD$`, 'm'));
    expect(r.stdout).toMatch(/^skipped\s+2$/m);
    expect(fs.readdirSync(outbox()).filter((f) => f.endsWith('.json'))).toHaveLength(CASES.length);
    // Again with --json: the batch is already complete; its summary still carries the total.
    const again = summaryOf(expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', csv, '--template-file', tpl, '--json']), 0, 'again').stdout);
    expect(again).toMatchObject({ sms: { messageCount: 8, segmentCount: total, ucs2Count: 3, estimatedCost: cost, currency: 'USD' }, preview: null });
  });
});

describe('send batch --dry-run for e-mail', () => {
  test('the subject is shown, segments are not; suppressed addresses counted', async () => {
    const out = path.join(ws.dir, 'mail-out');
    expectExit(await ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${out}`, '--set', 'from=news@acme.test']), 0, 'email provider');
    expectExit(await ws.run(['suppress', 'add', 'Bo@Example.com', '--tenant', 'acme', '--channel', 'email']), 0, 'suppress');
    const people = ws.file('mail.csv', 'email,name\nann@example.com,Ann\nbo@example.com,Bo\n');
    const body = ws.file('mail.txt', 'Hello {{name}}\n');
    const args = ['send', 'batch', '--tenant', 'acme', '--csv', people, '--template-file', body, '--subject', 'Hi {{name}}', '--dry-run', '--row', '3'];
    const r = expectExit(await ws.run(args), 0, 'email dry run');
    expect(r.stdout).toContain('Dry run: 2 rows valid, 1 would be sent, 1 skipped (1 suppressed: manual)');
    expect(r.stdout).toContain('Row 2 (line 3) to bo@example.com, would be skipped (suppressed: manual):\nSubject: Hi Bo\n\nHello Bo');
    expect(r.stdout).not.toMatch(/segment/i);
    const s = summaryOf(expectExit(await ws.run([...args, '--json']), 0, 'email dry run --json').stdout);
    expect(s).toMatchObject({ sms: null, skippedCount: 1, preview: { messages: [{ subject: 'Hi Ann', sms: null }, { subject: 'Hi Bo', sms: null }] } });
    expect(expectExit(await ws.run([...args, '--price-per-segment', '0.01']), 2, 'price for e-mail').stderr).toMatch(/--price-per-segment applies to sms and whatsapp only/);
  });
});
