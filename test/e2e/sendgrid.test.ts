// e2e: the sendgrid adapter through the built binary, against Prism (the published mail send spec, which
// validates every request and answers 202 with X-Message-Id) behind a recording stub of ours that also plays
// what Prism cannot: 401, 429 with X-RateLimit-Reset, 5xx, 400 on a recipient field, and GET /v3/scopes.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { addSystemOutbox, addTenant, expectExit, parseBatchOutput, readOutbox, type ProviderListRow, type SendTestJson } from '../helpers/setup.js';
import { forward, startHttpStub, type HttpStub, type RecordedRequest, type StubReply } from '../helpers/http-stub.js';
import { CONTRACTS, startPrism, type PrismMock } from '../helpers/prism.js';

/** A key in SendGrid's format, made at run time (`SG.<id>.<secret>`). */
function sendGridKey(): string {
  return ['SG', randomBytes(11).toString('hex'), randomBytes(22).toString('hex')].join('.');
}

/** The X-Message-Id example of the 202 response in the patched contract, which Prism returns. */
const PRISM_MESSAGE_ID = 'W5ur2mBnQZ6Jj8Sd9A3xLg';
const SEND_PATH = '/v3/mail/send';

let prism: PrismMock;
beforeAll(async () => {
  prism = await startPrism('tsg_mail_v3.patched-xmessageid.json');
});
afterAll(async () => {
  await prism?.close();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function stub(handler: Parameters<typeof startHttpStub>[0]): Promise<HttpStub> {
  const s = await startHttpStub(handler);
  cleanups.push(() => s.close());
  return s;
}

/** A stub that forwards to Prism, so every request is checked against the published spec. */
const viaPrism = (req: RecordedRequest) => forward(prism.url, req);

function sgError(status: number, errors: Array<{ message: string; field: string | null }>, headers: Record<string, string> = {}) {
  return { status, headers, body: { errors: errors.map((e) => ({ ...e, help: null })) } };
}

interface SgOptions {
  owner: { tenant: string } | 'system';
  endpoint: string;
  key: string;
  name?: string;
  priority?: number;
  extra?: string[];
}

async function addSendGrid(ws: Workspace, o: SgOptions): Promise<string> {
  const args = [
    'provider', 'add', ...(o.owner === 'system' ? ['--system'] : ['--tenant', o.owner.tenant]),
    '--channel', 'email', '--kind', 'sendgrid',
    '--set', 'from=noreply@acme.test', '--set', 'fromName=Acme Dental', '--set', `endpoint=${o.endpoint}`,
    ...(o.extra ?? []),
    '--secret-env', 'apiKey=SG_KEY',
  ];
  if (o.name) args.push('--name', o.name);
  if (o.priority !== undefined) args.push('--priority', String(o.priority));
  expectExit(await ws.run(args, { env: { SG_KEY: o.key } }), 0, 'provider add sendgrid');
  return `${o.owner === 'system' ? 'system' : o.owner.tenant}/email/${o.name ?? 'sendgrid'}`;
}

async function workspace(): Promise<Workspace> {
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  await addTenant(ws, 'acme', 'Acme Dental');
  return ws;
}

const sends = (s: HttpStub) => s.requests.filter((r) => r.method === 'POST' && r.url === SEND_PATH);



describe('sendgrid adapter', () => {
  test('a batch row is sent as the documented mail send payload; Prism accepts it and the X-Message-Id is recorded', async () => {
    const ws = await workspace();
    const key = sendGridKey();
    const s = await stub(viaPrism);
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key });
    const csv = ws.file('rows.csv', 'email,first_name\nana@example.com,Ana\n');
    const tpl = ws.file('t.html', '<p>Hi {{first_name}}</p>\n');

    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hello {{first_name}}', '--json']);
    expectExit(r, 0, 'send batch via sendgrid');
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 1, sentCount: 1, failedCount: 0, fallbackCount: 0 });
    expect(rows[0]).toMatchObject({ state: 'sent', provider: 'acme/email/sendgrid', messageId: PRISM_MESSAGE_ID });

    expect(sends(s)).toHaveLength(1);
    const req = sends(s)[0]!;
    expect(req.headers.authorization).toBe(`Bearer ${key}`);
    expect(req.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(req.body) as Record<string, unknown>;
    // Batch rows go out as personalizations (here one): subject, headers and custom_args (echoed in Event
    // Webhook events) per personalization.
    expect(body).toEqual({
      from: { email: 'noreply@acme.test', name: 'Acme Dental' },
      personalizations: [
        {
          to: [{ email: 'ana@example.com' }],
          subject: 'Hello Ana',
          headers: { 'X-Switchboard-Batch': `${summary.batchId}/1` },
          custom_args: { sb_tenant: 'acme', sb_batch: summary.batchId, sb_row: '1' },
        },
      ],
      content: [
        { type: 'text/plain', value: expect.stringContaining('Hi Ana') },
        { type: 'text/html', value: '<p>Hi Ana</p>\n' },
      ],
    });
    // Prism validated the request against the published spec (no violations).
    expect(prism.log()).not.toMatch(/sl-violations|Request body must|is required/i);
  });

  test('sandbox=true sends mail_settings.sandbox_mode.enable, which the spec accepts', async () => {
    const ws = await workspace();
    const s = await stub(viaPrism);
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey(), extra: ['--set', 'sandbox=true'] });
    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--subject', 'Sandbox', '--body', 'plain only', '--json']);
    expectExit(r, 0, 'send test in sandbox mode');
    const body = JSON.parse(sends(s)[0]!.body) as Record<string, unknown>;
    expect(body.mail_settings).toEqual({ sandbox_mode: { enable: true } });
    expect(body.content).toEqual([{ type: 'text/plain', value: 'plain only' }]);
  });

  test('a request that breaks the spec is refused by Prism (the contract check is live)', async () => {
    // The stub drops `from` on the way to Prism: Prism must answer 400 with sl-violations, which we classify as config.
    const ws = await workspace();
    const s = await stub(async (req) => {
      const body = JSON.parse(req.body) as Record<string, unknown>;
      delete body.from;
      const reply = await forward(prism.url, { ...req, body: JSON.stringify(body) });
      return reply;
    });
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--json']);
    expectExit(r, 1, 'send test with a broken payload');
    const out = parseJson<SendTestJson>(r);
    expect(out.errorKind).toBe('config');
    expect(out.error).toMatch(/\(400\)/);
  });
});

const REVOKED = [{ message: 'The provided authorization grant is invalid, expired, or revoked', field: null }];

/**
 * A tenant whose sendgrid config (plus `extra` flags) talks to a stub answering with `handler`, a system
 * outbox, and a 3-row batch at concurrency 1. Returns the stub, the outbox folder and the run.
 */
async function batchOverSendGrid(handler: Parameters<typeof startHttpStub>[0], extra: string[] = []) {
  const ws = await workspace();
  const s = await stub(handler);
  await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey(), extra });
  const outbox = path.join(ws.dir, 'outbox');
  await addSystemOutbox(ws, outbox);
  const csv = ws.file('rows.csv', 'email,first_name\nana@example.com,Ana\nbo@example.com,Bo\ncai@example.com,Cai\n');
  const tpl = ws.file('t.txt', 'Hi {{first_name}}\n');
  const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--concurrency', '1', '--json']);
  expectExit(r, 0, 'send batch over sendgrid');
  return { ws, s, outbox, ...parseBatchOutput(r) };
}

describe('sendgrid fallback matrix', () => {
  test('key revoked (401) on the batched request: the system default sends every row, each records fallback, the config is marked unhealthy, and its circuit stays open', async () => {
    const { ws, s, outbox, summary, rows } = await batchOverSendGrid(() => sgError(401, REVOKED));
    expect(summary).toMatchObject({ rowCount: 3, sentCount: 3, fallbackCount: 3, byProvider: [{ provider: 'system/email/outbox', sentCount: 3 }] });
    for (const row of rows) expect(row).toMatchObject({ state: 'sent', provider: 'system/email/outbox', fallback: true });
    expect(await readOutbox(outbox)).toHaveLength(3);
    // Tried once; then skipped for the rest of the run (circuit open), not retried per row.
    expect(sends(s)).toHaveLength(1);

    const list = parseJson<ProviderListRow[]>(expectExit(await ws.run(['provider', 'list', '--json']), 0, 'provider list'));
    const sg = list.find((p) => p.id === 'acme/email/sendgrid');
    expect(sg).toMatchObject({ health: 'unhealthy' });
    expect(sg?.healthDetail).toMatch(/^auth: .*401/);
    const table = expectExit(await ws.run(['provider', 'list']), 0, 'provider list (table)').stdout;
    expect(table).toMatch(/acme\/email\/sendgrid\s.*unhealthy/);
    const route = expectExit(await ws.run(['provider', 'route', '--tenant', 'acme', '--channel', 'email']), 0, 'provider route').stdout;
    expect(route).toMatch(/1\s.*acme\/email\/sendgrid\s.*unhealthy/);
    expect(route).toMatch(/2\s.*system\/email\/outbox/);
  });

  test('key revoked mid-batch (202, then 401): later rows fall back and the config is marked unhealthy although it sent before', async () => {
    let calls = 0;
    // batchSize=1: one request per row (no personalization batching).
    const { ws, s, summary } = await batchOverSendGrid((req) => (++calls === 1 ? forward(prism.url, req) : sgError(401, REVOKED)), ['--set', 'batchSize=1']);
    expect(summary).toMatchObject({ rowCount: 3, sentCount: 3, fallbackCount: 2, byProvider: [{ provider: 'acme/email/sendgrid', sentCount: 1 }, { provider: 'system/email/outbox', sentCount: 2 }] });
    expect(sends(s)).toHaveLength(2);
    const list = parseJson<ProviderListRow[]>(await ws.run(['provider', 'list', '--json']));
    expect(list.find((p) => p.id === 'acme/email/sendgrid')).toMatchObject({ health: 'unhealthy' });
  });

  test('an endpoint that is not an http(s) URL: the adapter does not start (config), the next provider sends, once per run', async () => {
    const ws = await workspace();
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: 'ftp://mail.example.invalid', key: sendGridKey() });
    const outbox = path.join(ws.dir, 'outbox');
    await addSystemOutbox(ws, outbox);
    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--json']);
    expectExit(r, 0, 'send test with a bad endpoint');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'sent', provider: 'system/email/outbox', fallback: true });
    expect(out.attempts[0]).toMatchObject({ provider: 'acme/email/sendgrid', status: 'failed', errorKind: 'config' });
    const list = parseJson<ProviderListRow[]>(await ws.run(['provider', 'list', '--json']));
    expect(list.find((p) => p.id === 'acme/email/sendgrid')?.healthDetail).toContain('setting endpoint "ftp://mail.example.invalid" must be an http(s) base URL');
  });

  test('429 then success: the same provider sends after the X-RateLimit-Reset wait, no fallback', async () => {
    const ws = await workspace();
    let resetAt = 0;
    const s = await stub((req) => {
      if (sends(s).length === 1) {
        resetAt = Math.floor(req.at / 1000) + 1;
        return sgError(429, [{ message: 'too many requests', field: null }], {
          'X-RateLimit-Limit': '600',
          'X-RateLimit-Remaining': '0',
          'X-RateLimit-Reset': String(resetAt),
        });
      }
      return forward(prism.url, req);
    });
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
    const outbox = path.join(ws.dir, 'outbox');
    await addSystemOutbox(ws, outbox);

    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--json']);
    expectExit(r, 0, 'send test after 429');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'sent', provider: 'acme/email/sendgrid', messageId: PRISM_MESSAGE_ID, fallback: false });
    expect(out.attempts.map((a) => [a.attempt, a.status, a.errorKind ?? null])).toEqual([
      [1, 'failed', 'rate_limited'],
      [2, 'sent', null],
    ]);
    expect(sends(s)).toHaveLength(2);
    // The retry waited for the reset time the provider gave (a Unix time in seconds).
    expect(sends(s)[1]!.at).toBeGreaterThanOrEqual(resetAt * 1000 - 20);
    expect(await readOutbox(outbox)).toHaveLength(0);
  });

  test('5xx on every attempt: --max-attempts bounds the retries, then the next provider sends', async () => {
    const ws = await workspace();
    const s = await stub(() => sgError(503, [{ message: 'service unavailable', field: null }]));
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
    const outbox = path.join(ws.dir, 'outbox');
    await addSystemOutbox(ws, outbox);

    const r = await ws.run(['--max-attempts', '4', '--retry-base-ms', '5', 'send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--json']);
    expectExit(r, 0, 'send test with 5xx');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'sent', provider: 'system/email/outbox', fallback: true });
    expect(out.attempts.filter((a) => a.provider === 'acme/email/sendgrid').map((a) => a.errorKind)).toEqual(['transient', 'transient', 'transient', 'transient']);
    expect(sends(s)).toHaveLength(4);
    expect(await readOutbox(outbox)).toHaveLength(1);
    // A transient failure does not mark the config unhealthy.
    const list = parseJson<ProviderListRow[]>(await ws.run(['provider', 'list', '--json']));
    expect(list.find((p) => p.id === 'acme/email/sendgrid')?.health).not.toBe('unhealthy');

    const bad = await ws.run(['--max-attempts', '0', 'send', 'test', '--tenant', 'acme', '--to', 'ana@example.com']);
    expectExit(bad, 2, '--max-attempts 0');
    expect(bad.stderr).toContain('--max-attempts 0: expected a whole number from 1 to 10');
  });

  test('invalid recipient (400 on personalizations.0.to): failed, no retry, no fallback, the system provider is never called', async () => {
    const ws = await workspace();
    const tenantStub = await stub(() => sgError(400, [{ message: 'Does not contain a valid address.', field: 'personalizations.0.to.0.email' }]));
    const systemStub = await stub(viaPrism);
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: tenantStub.url, key: sendGridKey() });
    await addSendGrid(ws, { owner: 'system', endpoint: systemStub.url, key: sendGridKey() });

    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'nobody@example.com', '--json']);
    expectExit(r, 1, 'send test to an invalid recipient');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'failed', provider: 'acme/email/sendgrid', fallback: false, errorKind: 'recipient' });
    expect(out.error).toContain('personalizations.0.to.0.email');
    expect(sends(tenantStub)).toHaveLength(1);
    expect(systemStub.requests).toHaveLength(0);
    const list = parseJson<ProviderListRow[]>(await ws.run(['provider', 'list', '--json']));
    expect(list.find((p) => p.id === 'acme/email/sendgrid')?.health).not.toBe('unhealthy');
  });
});

describe('sendgrid verify (GET /v3/scopes)', () => {
  test('good key, key without mail.send, revoked key', async () => {
    // The request and answers follow the published scopes contract.
    const contract = JSON.parse(fs.readFileSync(path.join(CONTRACTS, 'tsg_scopes_v3.json'), 'utf8')) as { paths: Record<string, Record<string, unknown>> };
    expect(contract.paths['/v3/scopes']?.get).toBeDefined();
    const good = sendGridKey();
    const narrow = sendGridKey();
    const ws = await workspace();
    const s = await stub((req) => {
      if (req.method !== 'GET' || req.url !== '/v3/scopes') return { status: 404, body: { errors: [{ message: 'not found', field: null }] } };
      if (req.headers.authorization === `Bearer ${good}`) return { status: 200, body: { scopes: ['alerts.read', 'mail.send', 'scopes.read'] } };
      if (req.headers.authorization === `Bearer ${narrow}`) return { status: 200, body: { scopes: ['alerts.read', 'stats.read'] } };
      return sgError(401, [{ message: 'authorization required', field: null }]);
    });
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: good, name: 'good' });
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: narrow, name: 'narrow' });
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey(), name: 'revoked' });

    const ok = expectExit(await ws.run(['provider', 'verify', 'acme/email/good']), 0, 'verify good key');
    expect(ok.stdout).toContain('ok  acme/email/good: API key valid, mail.send granted');
    const n = expectExit(await ws.run(['provider', 'verify', 'acme/email/narrow']), 1, 'verify key without mail.send');
    expect(n.stdout).toContain('lacks the mail.send scope');
    const bad = expectExit(await ws.run(['provider', 'verify', 'acme/email/revoked']), 1, 'verify revoked key');
    expect(bad.stdout).toMatch(/failed {2}acme\/email\/revoked: auth: SendGrid rejected the API key \(401\)/);
    expect(s.requests.every((r) => r.method === 'GET' && r.url === '/v3/scopes')).toBe(true);
    expect(s.requests).toHaveLength(3);
    const list = parseJson<ProviderListRow[]>(await ws.run(['provider', 'list', '--json']));
    expect(Object.fromEntries(list.map((p) => [p.id, p.health]))).toEqual({
      'acme/email/good': 'healthy',
      'acme/email/narrow': 'unhealthy',
      'acme/email/revoked': 'unhealthy',
    });
  });
});

interface SentBody {
  from: { email: string; name?: string };
  personalizations: Array<{ to: Array<{ email: string }>; subject: string; headers?: Record<string, string>; substitutions?: Record<string, string> }>;
  content: Array<{ type: string; value: string }>;
}

/** What SendGrid does for one personalization: every substitution tag in the content replaced by its value. */
function delivered(body: SentBody, p: number): { text?: string; html?: string } {
  const subs = Object.entries(body.personalizations[p]!.substitutions ?? {});
  const part = (type: string) => {
    const c = body.content.find((x) => x.type === type);
    return c && subs.reduce((v, [k, val]) => v.split(k).join(val), c.value);
  };
  return { text: part('text/plain'), html: part('text/html') };
}

/** The batch row a personalization belongs to (from its X-Switchboard-Batch header). */
const rowOf = (p: SentBody['personalizations'][number]) => Number(p.headers!['X-Switchboard-Batch']!.split('/')[1]);

/** Forwards to Prism (which checks the request against the spec); a 202 gets a fresh X-Message-Id per request. */
function viaPrismWithIds(): { handler: (req: RecordedRequest) => Promise<StubReply>; ids: Map<RecordedRequest, string> } {
  const ids = new Map<RecordedRequest, string>();
  let n = 0;
  return {
    ids,
    handler: async (req) => {
      const reply = await forward(prism.url, req);
      if (reply.status === 202) {
        const id = `req${++n}-${randomBytes(6).toString('hex')}`;
        ids.set(req, id);
        reply.headers = { ...reply.headers, 'x-message-id': id };
      }
      return reply;
    },
  };
}

/** A tenant on sendgrid (its stub answering with `handler`) over a system outbox, and `send batch` of `rows` ("email,first_name" lines). */
async function batchOfNames(handler: Parameters<typeof startHttpStub>[0], rows: string[], exit: number) {
  const ws = await workspace();
  const s = await stub(handler);
  await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
  const outbox = path.join(ws.dir, 'outbox');
  await addSystemOutbox(ws, outbox);
  const csv = ws.file('rows.csv', ['email,first_name', ...rows, ''].join('\n'));
  const tpl = ws.file('t.txt', 'Hi {{first_name}}\n');
  const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--json']);
  expectExit(r, exit, 'send batch over sendgrid');
  return { s, outbox, ...parseBatchOutput(r) };
}

describe('sendgrid personalization batches', () => {
  test('2,500 rows go out as 3 requests (1000/1000/500); every row records its request X-Message-Id and gets its own rendered body', async () => {
    const ws = await workspace();
    const { handler, ids } = viaPrismWithIds();
    const s = await stub(handler);
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
    const n = 2500;
    const lines = ['email,first_name,code'];
    for (let i = 1; i <= n; i++) lines.push(`u${i}@example.com,${i % 7 === 0 ? `"Zoë & ""Co"" ${i}"` : `Name${i}`},C-${i * 13}`);
    const csv = ws.file('rows.csv', lines.join('\n') + '\n');
    const tpl = ws.file('t.html', '<h1>Hello {{first_name}}</h1>\n<p>Your code is <b>{{code}}</b>.</p>\n<p>Same footer for all.</p>\n');

    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Code for {{first_name}}', '--concurrency', '2', '--json'], { timeoutMs: 90_000 });
    expectExit(r, 0, 'send batch of 2,500 rows via sendgrid');
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: n, sentCount: n, failedCount: 0, fallbackCount: 0, byProvider: [{ provider: 'acme/email/sendgrid', sentCount: n }] });
    const reqs = sends(s);
    // Prism checked each request against the spec and answered 202 to every one (a violation answers 4xx).
    expect(ids.size).toBe(reqs.length);
    const bodies = reqs.map((q) => JSON.parse(q.body) as SentBody);
    expect(bodies.map((b) => b.personalizations.length).sort((a, b) => b - a)).toEqual([1000, 1000, 500]);
    const requestIdOfRow = new Map<number, string>();
    bodies.forEach((b, k) => b.personalizations.forEach((p) => requestIdOfRow.set(rowOf(p), ids.get(reqs[k]!)!)));
    expect(requestIdOfRow.size).toBe(n);
    for (const row of rows) expect(row.messageId).toBe(requestIdOfRow.get(row.row));
    expect(new Set(rows.map((x) => x.messageId)).size).toBe(3);

    // Each personalization: its own recipient and subject, and the body rendered for its row.
    const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
    for (const b of bodies) {
      b.personalizations.forEach((p, k) => {
        const i = rowOf(p);
        const name = i % 7 === 0 ? `Zoë & "Co" ${i}` : `Name${i}`;
        expect(p.to).toEqual([{ email: `u${i}@example.com` }]);
        expect(p.subject).toBe(`Code for ${name}`);
        const got = delivered(b, k);
        expect(got.html).toBe(`<h1>Hello ${esc(name)}</h1>\n<p>Your code is <b>C-${i * 13}</b>.</p>\n<p>Same footer for all.</p>\n`);
        expect(got.text).toContain(`Your code is C-${i * 13}.`);
        expect(got.text).toContain(name.toUpperCase());
      });
    }
  }, 120_000);

  test('the exact request: content once with substitution tags, one personalization per row', async () => {
    const ws = await workspace();
    const { handler } = viaPrismWithIds();
    const s = await stub(handler);
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
    const csv = ws.file('rows.csv', 'email,first_name,code\nana@example.com,Ana,A1\nbo@example.com,Bo <b>,B22\n');
    const tpl = ws.file('t.txt', 'Hi {{first_name}},\nyour code is {{code}}.\n');
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{first_name}}', '--json']);
    expectExit(r, 0, 'send batch of 2 rows');
    const { summary } = parseBatchOutput(r);
    expect(sends(s)).toHaveLength(1);
    const body = JSON.parse(sends(s)[0]!.body) as SentBody;
    const tag = /-sb[0-9a-f]{8}t0-/.exec(body.content[0]!.value)?.[0];
    expect(tag).toBeDefined();
    const tag1 = tag!.replace('t0-', 't1-');
    expect(body).toEqual({
      from: { email: 'noreply@acme.test', name: 'Acme Dental' },
      personalizations: [
        {
          to: [{ email: 'ana@example.com' }],
          subject: 'Hi Ana',
          headers: { 'X-Switchboard-Batch': `${summary.batchId}/1` },
          substitutions: { [tag!]: 'Ana', [tag1]: 'A1' },
          custom_args: { sb_tenant: 'acme', sb_batch: summary.batchId, sb_row: '1' },
        },
        {
          to: [{ email: 'bo@example.com' }],
          subject: 'Hi Bo <b>',
          headers: { 'X-Switchboard-Batch': `${summary.batchId}/2` },
          substitutions: { [tag!]: 'Bo <b>', [tag1]: 'B22' },
          custom_args: { sb_tenant: 'acme', sb_batch: summary.batchId, sb_row: '2' },
        },
      ],
      content: [{ type: 'text/plain', value: `Hi ${tag},\nyour code is ${tag1}.\n` }],
    });
  });

  test('a row whose body differs by more than 10,000 bytes goes in a request of its own', async () => {
    const ws = await workspace();
    const { handler, ids } = viaPrismWithIds();
    const s = await stub(handler);
    await addSendGrid(ws, { owner: { tenant: 'acme' }, endpoint: s.url, key: sendGridKey() });
    const big = 'x'.repeat(11_000);
    const csv = ws.file('rows.csv', `email,note\na@example.com,short\nb@example.com,${big}\nc@example.com,tiny\n`);
    const tpl = ws.file('t.txt', 'Note: {{note}}\n');
    const r = await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Note', '--json']);
    expectExit(r, 0, 'send batch with one large row');
    const { rows } = parseBatchOutput(r);
    const bodies = sends(s).map((q) => JSON.parse(q.body) as SentBody);
    expect(bodies.map((b) => b.personalizations.map((p) => p.to[0]!.email))).toEqual([['a@example.com', 'c@example.com'], ['b@example.com']]);
    expect(bodies[1]!.content).toEqual([{ type: 'text/plain', value: `Note: ${big}\n` }]);
    expect(rows.map((x) => [x.state, x.messageId])).toEqual([
      ['sent', ids.get(sends(s)[0]!)],
      ['sent', ids.get(sends(s)[1]!)],
      ['sent', ids.get(sends(s)[0]!)],
    ]);
  });

  test('429 on a batched request: the provider pauses until X-RateLimit-Reset, then the same request goes again', async () => {
    const { handler, ids } = viaPrismWithIds();
    let resetAt = 0;
    let calls = 0;
    const { s, outbox, summary, rows } = await batchOfNames((req) => {
      if (++calls === 1) {
        resetAt = Math.floor(req.at / 1000) + 1;
        return sgError(429, [{ message: 'too many requests', field: null }], { 'X-RateLimit-Limit': '600', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(resetAt) });
      }
      return handler(req);
    }, ['ana@example.com,Ana', 'bo@example.com,Bo', 'cai@example.com,Cai'], 0);
    expect(summary).toMatchObject({ sentCount: 3, fallbackCount: 0, byProvider: [{ provider: 'acme/email/sendgrid', sentCount: 3 }] });
    expect(sends(s)).toHaveLength(2);
    expect(sends(s)[0]!.body).toBe(sends(s)[1]!.body.replace(/-sb[0-9a-f]{8}/g, /-sb[0-9a-f]{8}/.exec(sends(s)[0]!.body)![0]));
    expect(sends(s)[1]!.at).toBeGreaterThanOrEqual(resetAt * 1000 - 20);
    for (const row of rows) expect(row.messageId).toBe(ids.get(sends(s)[1]!));
    expect(await readOutbox(outbox)).toHaveLength(0);
  });

  test('400 naming one personalization`s recipient: that row fails (no fallback), the others go in a further batched request', async () => {
    const { handler, ids } = viaPrismWithIds();
    let calls = 0;
    const { s, outbox, summary, rows } = await batchOfNames(
      (req) => (++calls === 1 ? sgError(400, [{ message: 'Does not contain a valid address.', field: 'personalizations.2.to.0.email' }]) : handler(req)),
      ['ana@example.com,Ana', 'bo@example.com,Bo', 'bad@example.com,Bad', 'di@example.com,Di'],
      3,
    );
    expect(summary).toMatchObject({ rowCount: 4, sentCount: 3, failedCount: 1, fallbackCount: 0 });
    const bad = rows.find((x) => x.recipient === 'bad@example.com')!;
    expect(bad).toMatchObject({ state: 'failed', provider: 'acme/email/sendgrid', fallback: false, messageId: null });
    expect(bad.error).toMatch(/^recipient: SendGrid refused the recipient \(400\).*personalizations\.2\.to\.0\.email/);
    const bodies = sends(s).map((q) => JSON.parse(q.body) as SentBody);
    expect(bodies.map((b) => b.personalizations.map((p) => p.to[0]!.email))).toEqual([
      ['ana@example.com', 'bo@example.com', 'bad@example.com', 'di@example.com'],
      ['ana@example.com', 'bo@example.com', 'di@example.com'],
    ]);
    for (const row of rows.filter((x) => x !== bad)) expect(row).toMatchObject({ state: 'sent', provider: 'acme/email/sendgrid', messageId: ids.get(sends(s)[1]!) });
    expect(await readOutbox(outbox)).toHaveLength(0);
  });
});
