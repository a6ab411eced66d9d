// e2e: delivery status end to end through the built binary. A bulk send through a SendGrid-like server (every
// request checked by Prism against the published mail send spec, answered 202 with a fresh X-Message-Id) carries
// custom_args and one-click List-Unsubscribe headers; then the Event Webhook events SendGrid would send for it
// (built from the request the server saw) go to `events serve`: message timelines, delivery counts, report rates,
// bounced and complained recipients suppressed, and the next batch skips them. A crash-made `unknown` row becomes
// `sent` from its event. One-click unsubscribe through SendGrid, SMTP and SES: POST suppresses, GET does not, a
// token altered by one character gets 403. `events import` of the same events changes nothing.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, spawnCli, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit, parseBatchOutput, type BatchDetail } from '../helpers/setup.js';
import { forward, startHttpStub, type HttpStub, type RecordedRequest, type StubReply } from '../helpers/http-stub.js';
import { startPrism, type PrismMock } from '../helpers/prism.js';
import { freePort } from '../helpers/dnsmasq.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { startSesStub, type SesStub } from '../helpers/sesv2-stub.js';
import { sendGridSigner, sgEvent, startServe, storeRows, suppressedAddresses, type SendGridSigner, type Serve } from '../helpers/events.js';

interface Personalization {
  to: Array<{ email: string }>;
  headers?: Record<string, string>;
  custom_args?: Record<string, string>;
}

let ws: Workspace;
let prism: PrismMock;
let sg: HttpStub;
let serve: Serve;
let signer: SendGridSigner;
let publicUrl: string;
/** The mail send requests the SendGrid-like server accepted, with the X-Message-Id it gave each. */
const accepted: Array<{ messageId: string; personalizations: Personalization[] }> = [];
/** While set, requests are held unanswered (the client is killed meanwhile). */
let hang: RecordedRequest[] | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sendGridLike(req: RecordedRequest): Promise<StubReply> {
  if (hang) {
    hang.push(req);
    return new Promise(() => {});
  }
  const reply = await forward(prism.url, req);
  if (reply.status !== 202) return reply;
  // base64url as SendGrid's ids, starting with a letter (one starting with '-' goes after `--`: see operator-ux).
  const messageId = `W${randomBytes(16).toString('base64url').slice(0, 21)}`;
  accepted.push({ messageId, personalizations: (JSON.parse(req.body) as { personalizations: Personalization[] }).personalizations });
  return { ...reply, headers: { ...reply.headers, 'x-message-id': messageId } };
}

async function postEvents(events: unknown[]): Promise<{ stored: number; duplicates: number; suppressed: number; settled: number }> {
  const body = JSON.stringify(events) + '\r\n';
  const r = await fetch(`${serve.url}/hooks/acme/email/sendgrid`, { method: 'POST', headers: signer.headers(body), body });
  expect(r.status, await r.clone().text()).toBe(200);
  return (await r.json()) as { stored: number; duplicates: number; suppressed: number; settled: number };
}

const batchLine = (csv: string, extra: string[] = []) => ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', ws.file('t.txt', 'Hi {{name}}\n'), '--subject', 'Hello {{name}}', ...extra];

beforeAll(async () => {
  ws = makeWorkspace();
  signer = sendGridSigner();
  const port = await freePort();
  publicUrl = `http://127.0.0.1:${port}`;
  [prism] = await Promise.all([startPrism('tsg_mail_v3.patched-xmessageid.json'), addTenant(ws, 'acme')]);
  sg = await startHttpStub(sendGridLike);
  expectExit(
    await ws.run(
      ['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'sendgrid', '--set', 'from=noreply@acme.test', '--set', `endpoint=${sg.url}`, '--set', `eventWebhookPublicKey=${signer.publicKey}`, '--set', 'unsubscribeMailto=unsub@acme.test', '--secret-env', 'apiKey=K'],
      { env: { K: `SG.${randomBytes(8).toString('hex')}.${randomBytes(16).toString('hex')}` } },
    ),
    0,
    'provider add sendgrid',
  );
  serve = await startServe(ws, ['--listen', `127.0.0.1:${port}`, '--public-url', publicUrl]);
}, 60_000);

afterAll(async () => {
  if (serve?.child.exitCode === null) await serve.stop('SIGKILL');
  await sg?.close();
  await prism?.close();
  ws?.cleanup();
});

describe('a bulk send, then its events', () => {
  let batchId: string;
  const rowsOf = () => accepted.flatMap((a) => a.personalizations.map((p) => ({ messageId: a.messageId, p })));
  const byEmail = (email: string) => rowsOf().find((r) => r.p.to[0]!.email === email)!;

  test('each personalization carries custom_args and List-Unsubscribe headers (Prism accepts them)', async () => {
    const csv = ws.file('first.csv', 'email,name\nana@example.com,Ana\nbob@example.com,Bob\ncat@example.com,Cat\ndan@example.com,Dan\n');
    const r = expectExit(await ws.run([...batchLine(csv), '--json']), 0, 'send batch');
    batchId = parseBatchOutput(r).summary.batchId;
    expect(accepted).toHaveLength(1);
    const ps = accepted[0]!.personalizations;
    expect(ps.map((p) => p.custom_args)).toEqual([1, 2, 3, 4].map((n) => ({ sb_tenant: 'acme', sb_batch: batchId, sb_row: String(n) })));
    for (const p of ps) {
      expect(p.headers?.['List-Unsubscribe']).toMatch(new RegExp(`^<${publicUrl}/unsubscribe/${batchId}\\.\\d\\.[\\w-]{22}>, <mailto:unsub@acme\\.test\\?subject=unsubscribe>$`));
      expect(p.headers?.['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
    }
    expect(new Set(ps.map((p) => p.headers!['List-Unsubscribe'])).size).toBe(4);
  });

  test('delivered, bounce and spamreport events: timelines, delivery counts, suppressions, report rates; the next batch skips the suppressed', async () => {
    const ev = (event: string, email: string, extra: Record<string, unknown> = {}) => {
      const r = byEmail(email);
      return sgEvent(event, email, r.messageId, { ...r.p.custom_args, ...extra });
    };
    const events = [
      ...['ana', 'bob', 'cat', 'dan'].map((n) => ev('processed', `${n}@example.com`)),
      ev('delivered', 'ana@example.com', { response: '250 OK' }),
      ev('bounce', 'bob@example.com', { type: 'bounce', status: '5.1.1', reason: '550 5.1.1 mailbox unknown' }),
      ev('delivered', 'cat@example.com'),
      ev('spamreport', 'cat@example.com'),
      ev('delivered', 'dan@example.com'),
      ev('open', 'dan@example.com', { useragent: 'Mozilla' }),
    ];
    expect(await postEvents(events)).toMatchObject({ stored: 10, duplicates: 0, suppressed: 2 });
    // Retried by SendGrid: nothing twice.
    expect(await postEvents(events.slice(4, 6))).toMatchObject({ stored: 0, duplicates: 2 });

    const messageId = byEmail('ana@example.com').messageId;
    const ambiguous = expectExit(await ws.run(['message', 'show', messageId]), 2, 'message show without --to');
    expect(ambiguous.stderr).toMatch(/4 messages have provider message id/);
    const ana = parseJson<{ status: string; batchId: string; row: number; events: Array<{ type: string }>; attempts: unknown[] }>(
      expectExit(await ws.run(['message', 'show', messageId, '--to', 'ana@example.com', '--json']), 0, 'message show'),
    );
    expect(ana).toMatchObject({ status: 'delivered', batchId, row: 1 });
    expect(ana.events.map((e) => e.type)).toEqual(['accepted', 'delivered']);
    expect(ana.attempts).toHaveLength(1);
    const human = expectExit(await ws.run(['message', 'show', messageId, '--to', 'cat@example.com']), 0, 'message show (text)').stdout;
    expect(human).toMatch(/status\s+complained/);
    // A provider message id may start with '-' (base64url): read as an option, the tool says where it goes.
    const dashed = expectExit(await ws.run(['message', 'show', `-${messageId}`]), 2, 'message show -id');
    expect(dashed.stderr).toContain(`goes after "--", at the end of the line: switchboard … -- -${messageId}`);
    const afterDashes = expectExit(await ws.run(['message', 'show', '--to', 'ana@example.com', '--', `-${messageId}`]), 2, 'message show -- -id');
    expect(afterDashes.stderr).toContain(`no message -${messageId}`);

    const detail = parseJson<{ deliveryCounts: Array<{ status: string; messageCount: number }> }>(expectExit(await ws.run(['batch', 'show', batchId, '--json']), 0, 'batch show'));
    const counts = Object.fromEntries(detail.deliveryCounts.map((c) => [c.status, c.messageCount]));
    expect(counts).toMatchObject({ delivered: 1, bounced: 1, complained: 1, opened: 1, accepted: 0 });

    const sup = parseJson<Array<{ address: string; reason: string; source: string; expiresAt: null }>>(await ws.run(['suppress', 'list', '--tenant', 'acme', '--json']));
    expect(sup.map((s) => [s.address, s.source, s.expiresAt])).toEqual([
      ['bob@example.com', 'acme/email/sendgrid', null],
      ['cat@example.com', 'acme/email/sendgrid', null],
    ]);
    expect(sup[0]!.reason).toMatch(/^hard bounce: 5\.1\.1/);

    const bounced = parseJson<Array<{ recipient: string; batchId: string; row: number }>>(await ws.run(['events', 'list', '--batch', batchId, '--type', 'bounced', '--json']));
    expect(bounced.map((e) => [e.recipient, e.row])).toEqual([['bob@example.com', 2]]);

    const report = parseJson<{ groups: Array<{ key: string; sentCount: number; deliveredCount: number; bouncedCount: number; complainedCount: number; deliveredRate: number; bounceRate: number; complaintRate: number }> }>(
      await ws.run(['report', '--json']),
    );
    expect(report.groups.find((r) => r.key === 'acme')).toMatchObject({
      sentCount: 4, deliveredCount: 3, bouncedCount: 1, complainedCount: 1, deliveredRate: 0.75, bounceRate: 0.25, complaintRate: 0.25,
    });

    const again = expectExit(await ws.run([...batchLine(ws.file('first.csv', 'email,name\nana@example.com,Ana\nbob@example.com,Bob\ncat@example.com,Cat\ndan@example.com,Dan\n')), '--new-batch', '--json']), 0, 'next batch');
    const { summary, rows } = parseBatchOutput(again);
    expect(summary).toMatchObject({ sentCount: 2, skippedCount: 2 });
    expect(rows.filter((r) => r.state === 'skipped').map((r) => r.recipient).sort()).toEqual(['bob@example.com', 'cat@example.com']);
  });

  test('events import of the same events (and one more) is idempotent', async () => {
    const r = byEmail('dan@example.com');
    const file = ws.file('events.jsonl', [sgEvent('click', 'dan@example.com', r.messageId, { ...r.p.custom_args, url: 'https://acme.test/x', sg_event_id: 'import-1' })].map((e) => JSON.stringify(e)).join('\n') + '\n');
    const first = parseJson<{ storedCount: number; duplicateCount: number }>(expectExit(await ws.run(['events', 'import', '--provider', 'acme/email/sendgrid', file, '--json']), 0, 'events import'));
    expect(first).toMatchObject({ storedCount: 1, duplicateCount: 0 });
    const second = parseJson<{ storedCount: number; duplicateCount: number }>(expectExit(await ws.run(['events', 'import', '--provider', 'acme/email/sendgrid', file, '--json']), 0, 'events import again'));
    expect(second).toMatchObject({ storedCount: 0, duplicateCount: 1 });
    const bad = expectExit(await ws.run(['events', 'import', '--provider', 'acme/email/sendgrid', ws.file('bad.jsonl', '{"email":\n')]), 2, 'events import of a broken file');
    expect(bad.stderr).toMatch(/bad\.jsonl line 1/);
  });

  test('one-click unsubscribe: GET shows a page and suppresses nothing; POST suppresses; a token altered by one character gets 403', async () => {
    const link = /<([^>]+)>/.exec(byEmail('ana@example.com').p.headers!['List-Unsubscribe']!)![1]!;
    const isSuppressed = () => suppressedAddresses(ws.store, 'acme').includes('ana@example.com');
    const get = await fetch(link);
    expect(get.status).toBe(200);
    expect(await get.text()).toMatch(/<form method="post">/);
    expect(isSuppressed()).toBe(false);
    const last = link.slice(-1) === 'A' ? 'B' : 'A';
    const altered = link.slice(0, -1) + last;
    const post = (url: string) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    expect((await post(altered)).status).toBe(403);
    expect((await fetch(altered)).status).toBe(403);
    expect(isSuppressed()).toBe(false);
    const done = await post(link);
    expect(done.status).toBe(200);
    expect(isSuppressed()).toBe(true);
    const [s] = storeRows<{ source: string; reason: string }>(ws.store, "SELECT source, reason FROM suppressions WHERE tenant_id = 'acme' AND address = 'ana@example.com'");
    expect(s).toMatchObject({ source: 'unsubscribe-link', reason: 'unsubscribed (one-click link)' });
    expect(serve.log()).not.toContain(link.split('/unsubscribe/')[1]);
  });

  test('a crash leaves rows `unknown`; their events prove the send: the rows become `sent` with the message id (audited)', async () => {
    hang = [];
    const csv = ws.file('crash.csv', 'email,name\nh1@example.com,H1\nh2@example.com,H2\nh3@example.com,H3\n');
    const child = spawnCli(ws, batchLine(csv));
    const t0 = Date.now();
    while (hang.length === 0 && Date.now() - t0 < 20_000) await sleep(20);
    expect(hang).toHaveLength(1);
    child.kill('SIGKILL');
    await child;
    const held = JSON.parse(hang[0]!.body) as { personalizations: Personalization[] };
    hang = undefined;
    const rerun = expectExit(await ws.run([...batchLine(csv), '--json']), 3, 'the same line after the crash');
    const id = parseBatchOutput(rerun).summary.batchId;
    expect(parseBatchOutput(rerun).summary).toMatchObject({ unknownCount: 3, sentCount: 0 });

    const crashId = 'CrashReqXMessageId0001';
    const r = await postEvents(held.personalizations.map((p) => sgEvent('processed', p.to[0]!.email, crashId, p.custom_args)));
    expect(r).toMatchObject({ stored: 3, settled: 3 });
    const after = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', id, '--items', '--json']), 0, 'batch show'));
    expect(after).toMatchObject({ sentCount: 3, unknownCount: 0 });
    expect(after.items!.map((i) => [i.state, i.messageId, i.provider])).toEqual(Array(3).fill(['sent', crashId, 'acme/email/sendgrid']));
    const audit = parseJson<Array<{ action: string; target: string }>>(await ws.run(['audit', 'list', '--json']));
    expect(audit.filter((a) => a.action === 'batch.row.settle').map((a) => a.target)).toEqual([1, 2, 3].map((n) => `${id}/${n}`));
    // The same line again: the batch is complete, exit 0, nothing resent.
    expectExit(await ws.run(batchLine(csv)), 0, 'the same line once settled');
    expect(accepted.filter((a) => a.personalizations.some((p) => p.to[0]!.email.startsWith('h')))).toEqual([]);
  });
});

describe('one-click unsubscribe through SMTP and SES', () => {
  let smtp: TestSmtpServer;
  let ses: SesStub;
  beforeAll(async () => {
    smtp = await startSmtpServer({ users: { mailer: 'pw-1' } });
    ses = await startSesStub({ accessKeyId: 'AKIATESTTEST', secretAccessKey: 'ses-secret', region: 'eu-west-1' });
    await addTenant(ws, 'mailco');
    await addTenant(ws, 'sesco');
    const ca = ws.file('smtp-ca.pem', smtp.cert);
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'mailco', '--channel', 'email', '--kind', 'smtp', '--set', `host=${smtp.host}`, '--set', `port=${smtp.port}`, '--set', 'user=mailer', '--set', 'from=news@mailco.test', '--set', `ca=${ca}`, '--secret-env', 'password=P'],
        { env: { P: 'pw-1' } },
      ),
      0,
      'provider add smtp',
    );
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'sesco', '--channel', 'email', '--kind', 'ses', '--set', 'region=eu-west-1', '--set', 'from=news@sesco.test', '--set', 'accessKeyId=AKIATESTTEST', '--set', `endpoint=${ses.url}`, '--set', 'unsubscribeMailto=leave@sesco.test', '--secret-env', 'secretAccessKey=S'],
        { env: { S: 'ses-secret' } },
      ),
      0,
      'provider add ses',
    );
  });
  afterAll(async () => {
    await smtp?.close();
    await ses?.close();
  });

  test('SMTP: the headers are in the message; its link suppresses on POST', async () => {
    const csv = ws.file('smtp.csv', 'email,name\neve@example.com,Eve\n');
    expectExit(await ws.run(['send', 'batch', '--tenant', 'mailco', '--csv', csv, '--template-file', ws.file('m.txt', 'Hi {{name}}\n'), '--subject', 'News']), 0, 'send batch via smtp');
    const raw = smtp.messages.at(-1)!.raw.toString('utf8').replace(/\r\n[ \t]+/g, ' ');
    const link = /^List-Unsubscribe: <([^>]+)>$/m.exec(raw)?.[1];
    expect(link, raw.slice(0, 2000)).toMatch(new RegExp(`^${publicUrl}/unsubscribe/`));
    expect(raw).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/m);
    const r = await fetch(link!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    expect(r.status).toBe(200);
    expect(suppressedAddresses(ws.store, 'mailco')).toEqual(['eve@example.com']);
  });

  test('SES: SendEmail carries the headers and the correlation as EmailTags; a multipart one-click POST suppresses', async () => {
    const csv = ws.file('ses.csv', 'email,name\nfay@example.com,Fay\n');
    const out = parseBatchOutput(expectExit(await ws.run(['send', 'batch', '--tenant', 'sesco', '--csv', csv, '--template-file', ws.file('m.txt', 'Hi {{name}}\n'), '--subject', 'News', '--json']), 0, 'send batch via ses'));
    const body = JSON.parse(ses.signed.at(-1)!.body) as { Content: { Simple: { Headers: Array<{ Name: string; Value: string }> } }; EmailTags: Array<{ Name: string; Value: string }> };
    const headers = Object.fromEntries(body.Content.Simple.Headers.map((h) => [h.Name, h.Value]));
    expect(headers['List-Unsubscribe']).toMatch(new RegExp(`^<${publicUrl}/unsubscribe/[^>]+>, <mailto:leave@sesco\\.test\\?subject=unsubscribe>$`));
    expect(headers['List-Unsubscribe-Post']).toBe('List-Unsubscribe=One-Click');
    expect(body.EmailTags).toEqual([
      { Name: 'sb_tenant', Value: 'sesco' },
      { Name: 'sb_batch', Value: out.summary.batchId },
      { Name: 'sb_row', Value: '1' },
    ]);
    const link = /<([^>]+)>/.exec(headers['List-Unsubscribe']!)![1]!;
    const form = new FormData();
    form.set('List-Unsubscribe', 'One-Click');
    expect((await fetch(link, { method: 'POST', body: form })).status).toBe(200);
    expect(suppressedAddresses(ws.store, 'sesco')).toEqual(['fay@example.com']);
    expect(path.basename(link).split('.')).toHaveLength(3);
  });
});
