// e2e: a bulk send from CSV through a tenant's own SMTP provider (STARTTLS + AUTH against a real server).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type ReceivedMessage, type TestSmtpServer } from '../helpers/smtp.js';
import {
  addSmtpProvider,
  addTenant,
  expectExit,
  normId,
  parseBatchOutput,
  type BatchDetail,
  sentBy,
} from '../helpers/setup.js';

const PASSWORD = 'batch-smtp-pw-4c1d';

const HTML_TEMPLATE = `<!doctype html>
<html><body>
<p>Hello {{first_name}},</p>
<p>Your clinic <b>{{clinic}}</b> is ready. Your code is <code>{{code}}</code>.</p>
</body></html>
`;

interface Row {
  email: string;
  first_name: string;
  clinic: string;
  code: string;
  /** The clinic as Handlebars must write it into HTML (escaped). */
  clinicHtml: string;
}

const ROWS: Row[] = [
  { email: 'ana@example.com', first_name: 'Ana', clinic: 'Smith & Sons', code: 'A-100', clinicHtml: 'Smith &amp; Sons' },
  { email: 'bruno@example.com', first_name: 'Bruno', clinic: 'Northside Dental', code: 'B-200', clinicHtml: 'Northside Dental' },
  { email: 'chloe@example.org', first_name: 'Chloé', clinic: 'Bright Smiles, Inc.', code: 'C-300', clinicHtml: 'Bright Smiles, Inc.' },
  { email: 'dmitri@example.net', first_name: 'Dmitri', clinic: 'Lakeside', code: 'D-400', clinicHtml: 'Lakeside' },
  { email: 'eve@example.com', first_name: 'Eve', clinic: 'Oak <Street>', code: 'E-500', clinicHtml: 'Oak &lt;Street&gt;' },
];

function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

const CSV = ['email,first_name,clinic,code', ...ROWS.map((r) => [r.email, r.first_name, r.clinic, r.code].map(csvField).join(','))].join('\n') + '\n';

const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();

function byRecipient(messages: ReceivedMessage[], email: string): ReceivedMessage[] {
  return messages.filter((m) => m.envelope.to.includes(email));
}

describe('send batch through a tenant smtp provider', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;

  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: PASSWORD } });
    await addTenant(ws, 'acme', 'Acme Dental');
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: PASSWORD, from: 'noreply@acme.test' });
  });

  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  test('5-row CSV with an HTML Handlebars template: every row delivered, rendered, summary right', async () => {
    const csv = ws.file('patients.csv', CSV);
    const tpl = ws.file('welcome.html', HTML_TEMPLATE);
    const r = await ws.run([
      'send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl,
      '--subject', 'Welcome {{first_name}} ({{code}})', '--json',
    ]);
    expectExit(r, 0, 'send batch');
    const { summary, rows: events } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 5, sentCount: 5, failedCount: 0, skippedCount: 0, fallbackCount: 0 });
    expect(summary.unknownCount).toBe(0);
    expect(sentBy(summary)).toEqual({ 'acme/email/smtp': 5 });
    expect(typeof summary.batchId).toBe('string');
    expect(summary.batchId.length).toBeGreaterThan(0);
    expect(typeof summary.elapsedMs).toBe('number');
    // One row event per CSV row, with the CSV line number (header is line 1).
    expect(events.map((e) => e.recipient).sort()).toEqual(ROWS.map((x) => x.email).sort());
    for (const [i, row] of ROWS.entries()) {
      expect(events.find((e) => e.recipient === row.email)).toMatchObject({ line: i + 2, state: 'sent', provider: 'acme/email/smtp', fallback: false });
    }

    expect(srv.messages).toHaveLength(5);
    for (const row of ROWS) {
      const got = byRecipient(srv.messages, row.email);
      expect(got, `messages for ${row.email}`).toHaveLength(1);
      const m = got[0]!;
      // One recipient per message: no other row's address in the envelope or the headers.
      expect(m.envelope.to).toEqual([row.email]);
      expect(m.to).toEqual([row.email]);
      expect(m.from).toBe('noreply@acme.test');
      expect(m.secure, 'session upgraded with STARTTLS').toBe(true);
      expect(m.user).toBe('mailer');
      expect(m.subject).toBe(`Welcome ${row.first_name} (${row.code})`);
      // The adapter's own Message-ID (random, UUID-like, the sender's domain), as nodemailer would make it.
      expect(m.messageId).toMatch(/^<?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}@acme\.test>?$/);
      // HTML part: variables rendered and HTML-escaped.
      expect(m.html, 'html part').not.toBe(false);
      const html = String(m.html);
      expect(html).toContain(`Hello ${row.first_name},`);
      expect(html).toContain(`<b>${row.clinicHtml}</b>`);
      expect(html).toContain(`<code>${row.code}</code>`);
      expect(html).not.toContain('{{');
      // A real text/plain alternative derived from the HTML (mailparser would otherwise invent one).
      const raw = m.raw.toString('utf8');
      expect(raw).toMatch(/content-type:\s*multipart\/alternative/i);
      expect(raw).toMatch(/content-type:\s*text\/plain/i);
      expect(raw).toMatch(/content-type:\s*text\/html/i);
      const text = squash(m.text);
      expect(text).toContain(`Hello ${row.first_name},`);
      expect(text).toContain(row.clinic);
      expect(text).toContain(row.code);
      expect(text).not.toMatch(/<\/?(p|b|code|html|body)>/);
    }

    // Every message has its own Message-ID and MIME boundary.
    const sent = ROWS.map((row) => byRecipient(srv.messages, row.email)[0]!);
    expect(new Set(sent.map((m) => m.messageId)).size).toBe(ROWS.length);
    const boundaries = sent.map((m) => /boundary="?([^";\r\n]+)/i.exec(m.raw.toString('utf8'))?.[1]);
    expect(boundaries.every(Boolean), 'each message is multipart with a boundary').toBe(true);
    expect(new Set(boundaries).size).toBe(ROWS.length);

    // The ledger agrees with what the server received.
    const detail = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', summary.batchId, '--items', '--json']), 0, 'batch show'));
    expect(detail.id).toBe(summary.batchId);
    expect(detail.items).toHaveLength(5);
    const items = detail.items ?? [];
    expect(new Set(items.map((i) => i.row)).size).toBe(5);
    for (const row of ROWS) {
      const item = items.find((i) => i.recipient === row.email);
      expect(item, `item for ${row.email}`).toBeDefined();
      expect(item).toMatchObject({ state: 'sent', provider: 'acme/email/smtp', fallback: false });
      const m = byRecipient(srv.messages, row.email)[0]!;
      expect(normId(item!.messageId)).toBe(normId(m.messageId));
    }

    const list = parseJson<BatchDetail[]>(expectExit(await ws.run(['batch', 'list', '--json']), 0, 'batch list'));
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: summary.batchId, tenantId: 'acme', channel: 'email', rowCount: 5, sentCount: 5, failedCount: 0 });

    // The same batch again reports the existing batch and sends nothing.
    const again = await ws.run([
      'send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl,
      '--subject', 'Welcome {{first_name}} ({{code}})', '--json',
    ]);
    expect(again.exitCode, show(again)).toBe(0);
    const againOut = parseBatchOutput(again);
    expect(againOut.summary.batchId).toBe(summary.batchId);
    expect(againOut.summary).toMatchObject({ rowCount: 5, sentCount: 5, failedCount: 0 });
    expect(srv.messages).toHaveLength(5);
    const list2 = parseJson<BatchDetail[]>(expectExit(await ws.run(['batch', 'list', '--json']), 0, 'batch list'));
    expect(list2).toHaveLength(1);
  });

  test('CSV with a BOM, CRLF line ends and a quoted field holding a comma and a newline; plain-text template', async () => {
    const before = srv.messages.length;
    const csv = ws.file(
      'bom-crlf.csv',
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from(
          'email,name,address,ref\r\n' +
            'fay@example.com,Fay,"12 Main St, Apt 4\nSpringfield",R1\r\n' +
            "gus@example.com,Gus O'Brien,Plain Road,R2\r\n",
          'utf8',
        ),
      ]),
    );
    const tpl = ws.file('order.txt', 'Dear {{name}},\nShip to: {{address}}\nRef {{ref}}\n');
    const r = await ws.run([
      'send', 'batch', '--tenant', 'acme', '--channel', 'email', '--csv', csv, '--template-file', tpl,
      '--subject', 'Order {{ref}} for {{name}}', '--json',
    ]);
    expectExit(r, 0, 'send batch (BOM/CRLF)');
    const { summary, rows: events } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 2, sentCount: 2, failedCount: 0 });
    // Gus is on physical line 4: Fay's quoted address spans lines 2-3.
    expect(events.find((e) => e.recipient === 'fay@example.com')?.line).toBe(2);
    expect(events.find((e) => e.recipient === 'gus@example.com')?.line).toBe(4);

    const fresh = srv.messages.slice(before);
    expect(fresh).toHaveLength(2);
    const fay = byRecipient(fresh, 'fay@example.com');
    const gus = byRecipient(fresh, 'gus@example.com');
    expect(fay).toHaveLength(1);
    expect(gus).toHaveLength(1);
    // No stray \r from the CRLF line ends, no BOM in the first column, no HTML escaping in plain text.
    expect(fay[0]!.subject).toBe('Order R1 for Fay');
    expect(gus[0]!.subject).toBe("Order R2 for Gus O'Brien");
    expect(fay[0]!.html).toBe(false);
    const fayText = fay[0]!.text.replace(/\r\n/g, '\n');
    expect(fayText).toContain('Dear Fay,\nShip to: 12 Main St, Apt 4\nSpringfield\nRef R1');
    const gusText = gus[0]!.text.replace(/\r\n/g, '\n');
    expect(gusText).toContain("Dear Gus O'Brien,\nShip to: Plain Road\nRef R2");
    expect(gusText).not.toContain('&#x27;');
  });
});
