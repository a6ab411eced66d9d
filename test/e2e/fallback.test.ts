// e2e: fallback from a tenant's SMTP provider to the system default (an outbox folder),
// and no fallback for recipient errors.
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import {
  addSmtpProvider,
  addSystemOutbox,
  addTenant,
  expectExit,
  parseBatchOutput,
  readOutbox,
  type BatchDetail,
  sentBy,
} from '../helpers/setup.js';

const TEMPLATE = '<p>Hi {{first_name}}, your appointment is on <b>{{date}}</b>.</p>\n';
const ROWS = [
  { email: 'ana@example.com', first_name: 'Ana', date: '2025-03-01' },
  { email: 'bounce@example.com', first_name: 'Bo', date: '2025-03-02' },
  { email: 'cai@example.com', first_name: 'Cai', date: '2025-03-03' },
];
const CSV = 'email,first_name,date\n' + ROWS.map((r) => `${r.email},${r.first_name},${r.date}`).join('\n') + '\n';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { serverPassword: string; providerPassword: string; reject?: string[] }): Promise<{
  ws: Workspace;
  srv: TestSmtpServer;
  outbox: string;
}> {
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  const srv = await startSmtpServer({
    users: { mailer: opts.serverPassword },
    ...(opts.reject ? { rejectRecipients: new Set(opts.reject) } : {}),
  });
  cleanups.push(() => srv.close());
  const outbox = path.join(ws.dir, 'outbox');
  await addTenant(ws, 'acme', 'Acme Dental');
  await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: opts.providerPassword });
  await addSystemOutbox(ws, outbox);
  return { ws, srv, outbox };
}

function sendBatch(ws: Workspace): ReturnType<Workspace['run']> {
  const csv = ws.file('rows.csv', CSV);
  const tpl = ws.file('reminder.html', TEMPLATE);
  return ws.run([
    'send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl,
    '--subject', 'Reminder for {{first_name}}', '--json',
  ]);
}

describe('fallback to the system outbox', () => {
  test('tenant smtp with a wrong password: every row goes through system/email/outbox', async () => {
    const { ws, srv, outbox } = await setup({ serverPassword: 'right-pw-1', providerPassword: 'wrong-pw-2' });

    const r = await sendBatch(ws);
    expectExit(r, 0, 'send batch with fallback');
    const { summary } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 3, sentCount: 3, failedCount: 0, fallbackCount: 3 });
    expect(sentBy(summary)).toEqual({ 'system/email/outbox': 3 });

    // The tenant's provider was really tried (and refused) before falling back.
    expect(srv.authFailures).toBeGreaterThan(0);
    expect(srv.messages).toHaveLength(0);

    const files = await readOutbox(outbox);
    expect(files).toHaveLength(3);
    for (const row of ROWS) {
      const got = files.filter((f) => f.to.includes(row.email));
      expect(got, `outbox files for ${row.email}`).toHaveLength(1);
      const m = got[0]!;
      expect(m.to).toEqual([row.email]);
      expect(m.subject).toBe(`Reminder for ${row.first_name}`);
      expect(String(m.html)).toContain(`Hi ${row.first_name}, your appointment is on <b>${row.date}</b>.`);
      expect(m.text.replace(/\s+/g, ' ')).toContain(`Hi ${row.first_name}, your appointment is on ${row.date}`);
    }

    const detail = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', summary.batchId, '--items', '--json']), 0, 'batch show'));
    expect(detail.items).toHaveLength(3);
    for (const item of detail.items ?? []) {
      expect(item, `item ${item.recipient}`).toMatchObject({ state: 'sent', provider: 'system/email/outbox', fallback: true });
    }
    expect((detail.items ?? []).map((i) => i.recipient).sort()).toEqual(ROWS.map((r) => r.email).sort());
  });

  test('recipient refused with 550: that row fails without fallback, the others go through smtp (exit 3)', async () => {
    const { ws, srv, outbox } = await setup({
      serverPassword: 'right-pw-3',
      providerPassword: 'right-pw-3',
      reject: ['bounce@example.com'],
    });

    const r = await sendBatch(ws);
    expectExit(r, 3, 'send batch with a refused recipient');
    const { summary } = parseBatchOutput(r);
    expect(r.stderr).toContain(summary.batchId);
    expect(summary).toMatchObject({ rowCount: 3, sentCount: 2, failedCount: 1, fallbackCount: 0 });
    expect(sentBy(summary)).toEqual({ 'acme/email/smtp': 2 });

    // Recipient errors are neither retried nor handed to the fallback provider.
    expect(srv.rejected).toEqual(['bounce@example.com']);
    expect(srv.messages.map((m) => m.envelope.to[0]).sort()).toEqual(['ana@example.com', 'cai@example.com']);
    expect(await readOutbox(outbox)).toHaveLength(0);

    const detail = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', summary.batchId, '--items', '--json']), 0, 'batch show'));
    const items = detail.items ?? [];
    expect(items).toHaveLength(3);
    const bounced = items.find((i) => i.recipient === 'bounce@example.com');
    expect(bounced).toMatchObject({ state: 'failed', fallback: false });
    expect(bounced?.provider ?? null).not.toBe('system/email/outbox');
    expect(String(bounced?.error ?? '')).toMatch(/550|mailbox unavailable/i);
    for (const email of ['ana@example.com', 'cai@example.com']) {
      expect(items.find((i) => i.recipient === email)).toMatchObject({ state: 'sent', provider: 'acme/email/smtp', fallback: false });
    }
  });
});
