// e2e: the commands around bulk sends: suppress add/list/remove/import, stored templates, batch cancel and
// export, report and log list; all through the built binary against the outbox provider.
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseJson, spawnCli, type Workspace } from '../helpers/cli.js';
import { expectExit, outboxWorkspace, parseBatchOutput, readOutbox, type BatchDetail } from '../helpers/setup.js';

describe('suppressions, templates, cancel, export, reports', () => {
  let ws: Workspace;
  let out: string;

  beforeAll(async () => {
    ({ ws, out } = await outboxWorkspace(['acme', 'other']));
  });
  afterAll(() => ws?.cleanup());

  test('opt-out flow: suppress add and import → the next batch skips them; export shows why; remove lets them through', async () => {
    expectExit(await ws.run(['suppress', 'add', 'Bea@Example.com', '--tenant', 'acme', '--reason', 'asked by phone']), 0, 'suppress add');
    const list = ws.file('unsub.csv', 'address,reason\ncat@example.com,hard bounce\ndan@example.com,\n');
    const imp = parseJson<{ rows: number; added: number }>(expectExit(await ws.run(['suppress', 'import', '--tenant', 'acme', '--csv', list, '--column', 'address', '--json']), 0, 'import'));
    expect(imp).toMatchObject({ rowCount: 2, addedCount: 2 });
    const bad = await ws.run(['suppress', 'import', '--tenant', 'acme', '--csv', ws.file('bad.csv', 'email\nok@example.com\nnot-an-address\n')]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/line 3: email/);
    const listed = parseJson<Array<{ address: string; reason: string; source: string }>>(await ws.run(['suppress', 'list', '--tenant', 'acme', '--json']));
    expect(listed).toEqual([
      expect.objectContaining({ address: 'bea@example.com', reason: 'asked by phone', source: 'manual' }),
      expect.objectContaining({ address: 'cat@example.com', reason: 'hard bounce', source: 'import' }),
      expect.objectContaining({ address: 'dan@example.com', reason: 'imported', source: 'import' }),
    ]);
    // Suppressions are per tenant: the other tenant's list is empty.
    expect(parseJson<unknown[]>(await ws.run(['suppress', 'list', '--tenant', 'other', '--json']))).toEqual([]);
    // A long list is written as it is read (more than one PostgreSQL fetch of 1,000): every row once, in order.
    const many = ws.file('many.csv', ['address', ...Array.from({ length: 2500 }, (_, i) => `bulk${String(i).padStart(4, '0')}@example.com`)].join('\n') + '\n');
    expectExit(await ws.run(['suppress', 'import', '--tenant', 'other', '--csv', many, '--column', 'address']), 0, 'import 2,500');
    const long = parseJson<Array<{ address: string }>>(expectExit(await ws.run(['suppress', 'list', '--tenant', 'other', '--json']), 0, 'list 2,500'));
    expect(long.map((x) => x.address)).toEqual(Array.from({ length: 2500 }, (_, i) => `bulk${String(i).padStart(4, '0')}@example.com`));
    const tsv = expectExit(await ws.run(['suppress', 'list', '--tenant', 'other']), 0, 'list 2,500 (text)').stdout.trimEnd().split('\n');
    expect(tsv).toHaveLength(2501);
    expect(tsv.slice(1).map((l) => l.split('\t')[1])).toEqual(long.map((x) => x.address));

    const csv = ws.file('news.csv', 'email,name\nann@example.com,Ann\nbea@example.com,Bea\ncat@example.com,Cat\ndan@example.com,Dan\n');
    const tpl = ws.file('news.txt', 'Hello {{name}}\n');
    const r = expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'News', '--json']), 0, 'send batch');
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 4, sentCount: 1, skippedCount: 3, failedCount: 0 });
    expect(rows.find((e) => e.recipient === 'bea@example.com')).toMatchObject({ state: 'skipped', error: 'suppressed: asked by phone' });
    expect((await readOutbox(out)).map((m) => m.to[0])).toEqual(['ann@example.com']);

    const file = path.join(ws.dir, 'results.csv');
    expectExit(await ws.run(['batch', 'export', summary.batchId, '--out', file]), 0, 'export');
    const exported = parse(fs.readFileSync(file), { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(exported[0]!)).toEqual(['email', 'name', 'state', 'provider', 'message_id', 'error']);
    expect(exported.map((x) => [x.email, x.name, x.state])).toEqual([
      ['ann@example.com', 'Ann', 'sent'],
      ['bea@example.com', 'Bea', 'skipped'],
      ['cat@example.com', 'Cat', 'skipped'],
      ['dan@example.com', 'Dan', 'skipped'],
    ]);
    expect(exported[0]).toMatchObject({ provider: 'system/email/outbox' });
    expect(exported[0]!.message_id).not.toBe('');
    expect(exported[2]!.error).toBe('suppressed: hard bounce');

    expectExit(await ws.run(['suppress', 'remove', 'bea@example.com', '--tenant', 'acme', '--yes']), 0, 'remove');
    expect((await ws.run(['suppress', 'remove', 'bea@example.com', '--tenant', 'acme'])).exitCode).toBe(2);
    const again = parseBatchOutput(expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'News', '--new-batch', '--json']), 0, 'again'));
    expect(again.summary).toMatchObject({ sentCount: 2, skippedCount: 2 });
  });

  test('stored templates: add, list, show, preview one CSV row, send batch --template, remove', async () => {
    const html = ws.file('rem.html', '<p>Dear {{name}}, see you at {{time}}.</p>');
    const text = ws.file('rem.txt', 'Dear {{name}}, see you at {{time}}.\n');
    expectExit(await ws.run(['template', 'add', 'reminder', '--tenant', 'acme', '--subject', 'Reminder for {{name}}', '--html-file', html, '--text-file', text]), 0, 'template add');
    expect((await ws.run(['template', 'add', 'reminder', '--tenant', 'acme', '--text-file', text])).exitCode).toBe(2);
    const listed = parseJson<Array<{ name: string; required: string[] }>>(await ws.run(['template', 'list', '--tenant', 'acme', '--json']));
    expect(listed).toEqual([expect.objectContaining({ name: 'reminder', required: ['name', 'time'] })]);
    const csv = ws.file('appts.csv', 'email,name,time\nfay@example.com,Fay,9:00\ngus@example.com,Gus & Co,10:30\n');
    const p = parseJson<{ subject: string; html: string; text: string; line: number }>(
      expectExit(await ws.run(['template', 'preview', 'reminder', '--tenant', 'acme', '--csv', csv, '--row', '2', '--json']), 0, 'preview'),
    );
    expect(p).toMatchObject({ line: 3, subject: 'Reminder for Gus & Co', html: '<p>Dear Gus &amp; Co, see you at 10:30.</p>', text: 'Dear Gus & Co, see you at 10:30.\n' });
    expect((await ws.run(['template', 'preview', 'reminder', '--tenant', 'acme', '--csv', csv, '--row', '9'])).stderr).toMatch(/--row 9/);

    const r = parseBatchOutput(expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template', 'reminder', '--json']), 0, 'send --template'));
    expect(r.summary).toMatchObject({ rowCount: 2, sentCount: 2 });
    const fay = (await readOutbox(out)).find((m) => m.to[0] === 'fay@example.com')!;
    expect(fay.subject).toBe('Reminder for Fay');
    expect(fay.text.trim()).toBe('Dear Fay, see you at 9:00.');
    expect((await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template', 'nope'])).exitCode).toBe(2);
    expectExit(await ws.run(['template', 'remove', 'reminder', '--tenant', 'acme', '--yes']), 0, 'remove');
    expect(parseJson<unknown[]>(await ws.run(['template', 'list', '--tenant', 'acme', '--json']))).toEqual([]);
  });

  test('batch cancel skips the pending rows for good; report and log list read the message log', async () => {
    // 1,200 rows: more than one page of a store read (PostgreSQL reads `batch show --items` in pages of 1,000).
    const csv = ws.file('cancel.csv', ['email,name', ...Array.from({ length: 1200 }, (_, i) => `k${i}@example.com,K${i}`)].join('\n') + '\n');
    const tpl = ws.file('cancel.txt', 'Hi {{name}}\n');
    const line = ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--rate', '100'];
    // Stop the run early with SIGTERM (exit 130), then cancel what is left.
    const child = spawnCli(ws, line);
    const t0 = Date.now();
    while ((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('k')).length < 5 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGTERM');
    const stopped = await child;
    expect(stopped.exitCode, String(stopped.stderr)).toBe(130);
    const id = parseJson<Array<{ id: string; status: string }>>(await ws.run(['batch', 'list', '--json']))[0]!;
    expect(id.status).toBe('interrupted');
    const c = parseJson<{ status: string; alreadyFinished: boolean; cancelledCount: number; sentCount: number; skippedCount: number; pendingCount: number }>(
      expectExit(await ws.run(['batch', 'cancel', id.id, '--yes', '--json']), 0, 'cancel'),
    );
    expect(c).toMatchObject({ status: 'cancelled', alreadyFinished: false });
    expect(c.cancelledCount).toBeGreaterThan(0);
    expect(c.pendingCount).toBe(0);
    expect(c.sentCount + c.skippedCount).toBe(1200);
    const sentK = (await readOutbox(out)).filter((m) => m.to[0]?.startsWith('k')).length;
    expect(sentK).toBe(c.sentCount);
    // `batch show` of the cancelled batch gives the counts kept at the cancel: they agree with its rows.
    const shown = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', id.id, '--items', '--json']), 0, 'show'));
    const tally = (state: string) => shown.items!.filter((i) => i.state === state).length;
    expect([shown.status, shown.rowCount, shown.sentCount, shown.skippedCount, shown.pendingCount]).toEqual(['cancelled', 1200, tally('sent'), tally('skipped'), 0]);
    expect(shown.sentCount).toBe(sentK);
    // Every row once, in CSV order, in the JSON document and in the tab-separated table alike.
    expect(shown.items!.map((i) => i.row)).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1));
    const table = expectExit(await ws.run(['batch', 'show', id.id, '--items']), 0, 'show (text)').stdout.split('\n\n')[1]!.trimEnd().split('\n');
    expect(table[0]).toBe('ROW\tLINE\tRECIPIENT\tSTATE\tPROVIDER\tFALLBACK\tMESSAGE ID / ERROR');
    expect(table.slice(1).map((l) => l.split('\t').slice(0, 4))).toEqual(shown.items!.map((i) => [String(i.row), String(i.line), i.recipient, i.state]));
    // Neither resume nor the same line sends the cancelled rows.
    expect((await ws.run(['batch', 'resume', id.id])).exitCode).toBe(2);
    // The same line reports the batch as cancelled, never as sent; cancelling it again changes nothing.
    const again = expectExit(await ws.run([...line, '--json']), 0, 'same line after cancel');
    expect(parseBatchOutput(again).summary).toMatchObject({ batchId: id.id, status: 'cancelled', alreadyFinished: true });
    expect(again.stderr).toMatch(/was cancelled at/);
    const twice = expectExit(await ws.run(['batch', 'cancel', id.id, '--yes']), 0, 'cancel again');
    expect(twice.stdout.trim()).toBe(`batch ${id.id} is already cancelled; nothing to cancel`);
    const audit = parseJson<Array<{ action: string; target: string }>>(await ws.run(['audit', 'list', '--json']));
    expect(audit.filter((a) => a.action === 'batch.cancel' && a.target === id.id)).toHaveLength(1);
    expect((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('k')).length).toBe(sentK);

    const rep = parseJson<{ groups: Array<{ key: string; sentCount: number; failedCount: number; fallbackRate: number; byProvider: Array<{ provider: string; sentCount: number; failedCount: number }> }> }>(
      expectExit(await ws.run(['report', '--since', '1h', '--by', 'tenant', '--json']), 0, 'report'),
    );
    const total = (await readOutbox(out)).length;
    expect(rep.groups).toEqual([expect.objectContaining({ key: 'acme', sentCount: total, failedCount: 0, fallbackRate: 0 })]);
    expect(rep.groups[0]!.byProvider).toEqual([{ provider: 'system/email/outbox', sentCount: total, failedCount: 0 }]);
    const byProvider = parseJson<{ groups: Array<{ key: string }> }>(await ws.run(['report', '--by', 'provider', '--json']));
    expect(byProvider.groups.map((x) => x.key)).toEqual(['system/email/outbox']);
    expect((await ws.run(['report', '--by', 'colour'])).exitCode).toBe(2);

    const log = parseJson<Array<{ recipient: string; batchId: string; status: string }>>(await ws.run(['log', 'list', '--batch', id.id, '--limit', '3', '--json']));
    expect(log).toHaveLength(3);
    expect(log.every((e) => e.batchId === id.id && e.status === 'sent' && e.recipient.startsWith('k'))).toBe(true);
    expect(parseJson<unknown[]>(await ws.run(['log', 'list', '--status', 'failed', '--json']))).toEqual([]);
    expect(parseJson<unknown[]>(await ws.run(['log', 'list', '--tenant', 'other', '--json']))).toEqual([]);
  });

  test('a suppression added by another process while a batch runs stops the rows not yet sent', async () => {
    // 12 rows at 4/s take about 3 s; the suppression of the last row goes in once the first message is out. Rows
    // are looked up as a request takes them up (one at a time here): those already taken up by a request may go.
    const emails = Array.from({ length: 12 }, (_, i) => `late${i + 1}@example.com`);
    const csv = ws.file('late.csv', `email\n${emails.join('\n')}\n`);
    const tpl = ws.file('late.txt', 'Hello\n');
    const before = (await readOutbox(out)).length;
    const child = spawnCli(ws, ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Late', '--rate', '4', '--concurrency', '1', '--json']);
    for (let i = 0; i < 200 && (await readOutbox(out)).length === before; i++) await new Promise((r) => setTimeout(r, 25));
    expectExit(await ws.run(['suppress', 'add', 'late12@example.com', '--tenant', 'acme', '--reason', 'asked during the run']), 0, 'suppress add');
    const { summary, rows } = parseBatchOutput(expectExit({ ...(await child), exitCode: (await child).exitCode ?? -1 }, 0, 'send batch'));
    expect(summary).toMatchObject({ rowCount: 12, sentCount: 11, skippedCount: 1 });
    expect(rows.find((e) => e.recipient === 'late12@example.com')).toMatchObject({ state: 'skipped', error: 'suppressed: asked during the run' });
  });
});
