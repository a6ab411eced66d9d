// e2e: sms and whatsapp through the same send path (outbox provider as the system default):
// E.164 normalisation with --default-region, per-line errors, and WhatsApp approved templates.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit, parseBatchOutput } from '../helpers/setup.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function setup(): Promise<{ ws: Workspace; sms: string; wa: string }> {
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  await addTenant(ws, 'acme');
  const sms = path.join(ws.dir, 'sms');
  const wa = path.join(ws.dir, 'wa');
  expectExit(await ws.run(['provider', 'add', '--system', '--channel', 'sms', '--kind', 'outbox', '--set', `dir=${sms}`, '--set', 'from=+14155550100']), 0, 'add sms outbox');
  expectExit(await ws.run(['provider', 'add', '--system', '--channel', 'whatsapp', '--kind', 'outbox', '--set', `dir=${wa}`]), 0, 'add whatsapp outbox');
  return { ws, sms, wa };
}

function readJson(dir: string): Array<Record<string, unknown>> {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Record<string, unknown>)
    .sort((a, b) => String(a.to).localeCompare(String(b.to)));
}

describe('sms and whatsapp channels', () => {
  test('sms batch: numbers normalised to E.164, bad numbers named by line, nothing sent on bad input', async () => {
    const { ws, sms } = await setup();
    const tpl = ws.file('t.txt', 'Hi {{first_name}}, see you at {{time}}.\n');
    const bad = ws.file('bad.csv', 'phone,first_name,time\n+14155552671,Ada,9:30\n12345,Bob,10:00\n');
    const r1 = expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', bad, '--template-file', tpl]), 2, 'bad number');
    expect(r1.stderr).toMatch(/line 3: phone "12345" is not a valid phone number/);
    expect(fs.existsSync(sms)).toBe(false);

    const good = ws.file('good.csv', 'phone,first_name,time\n+1 (415) 555-2671,Ada,9:30\n020 7946 0018,Bob,10:00\n');
    const r2 = expectExit(
      await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', good, '--template-file', tpl, '--default-region', 'GB', '--json']),
      0,
      'sms batch',
    );
    const { summary } = parseBatchOutput(r2);
    expect(summary).toMatchObject({ rowCount: 2, sentCount: 2, failedCount: 0 });
    expect(readJson(sms).map((m) => [m.to, m.body, m.from])).toEqual([
      ['+14155552671', 'Hi Ada, see you at 9:30.', '+14155550100'],
      ['+442079460018', 'Hi Bob, see you at 10:00.', '+14155550100'],
    ]);
    // HTML templates and subjects do not apply to sms.
    const html = ws.file('t.html', '<p>x</p>');
    expect((await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', good, '--template-file', html, '--default-region', 'GB'])).exitCode).toBe(2);
    const r3 = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'sms', '--csv', good, '--template-file', tpl, '--subject', 'x', '--default-region', 'GB']);
    expect(r3.exitCode).toBe(2);
    expect(r3.stderr).toMatch(/--subject applies to e-mail only/);
  });

  test('whatsapp: approved template with parameters from CSV columns, and a test send', async () => {
    const { ws, wa } = await setup();
    const csv = ws.file('wa.csv', 'phone,first_name,day\n+14155552671,Ada,Tuesday\n');
    const r = expectExit(
      await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'whatsapp', '--csv', csv, '--template-name', 'appointment_reminder', '--template-lang', 'en_GB', '--template-param', 'first_name', '--template-param', 'day', '--json']),
      0,
      'whatsapp batch',
    );
    expect(parseBatchOutput(r).summary).toMatchObject({ rowCount: 1, sentCount: 1 });
    const missing = await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'whatsapp', '--csv', csv, '--template-name', 'x', '--template-param', 'nope']);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/\{\{nope\}\} has no column/);

    const t = parseJson<{ status: string; to: string; provider: string }>(
      expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'whatsapp', '--to', '+44 20 7946 0018', '--body', 'hello', '--json']), 0, 'test send'),
    );
    expect(t).toMatchObject({ status: 'sent', recipient: '+442079460018', provider: 'system/whatsapp/outbox' });
    expect(readJson(wa).map((m) => [m.to, m.template ?? m.text])).toEqual([
      ['+14155552671', { name: 'appointment_reminder', language: 'en_GB', parameters: ['Ada', 'Tuesday'] }],
      ['+442079460018', 'hello'],
    ]);
  });
});
