// e2e (issue 10): the send engine a cron job can be left alone with. Outages pause the batch (exit 75, rows
// pending) instead of failing rows; the same line continues it once the provider is back; Ctrl-C stops requests
// at once; exit codes follow the batch's state; the derived key's dedupe window (SWITCHBOARD_NOW test hook);
// duplicate recipients; `batch retry`; a lock held past the busy timeout; a lease taken over.
// Real servers throughout: smtp-server (down, then up on the same port) and a SendGrid-like HTTP server.
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, spawnCli, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { startHttpStub, type HttpStub, type StubHandler } from '../helpers/http-stub.js';
import { addSmtpProvider, addSystemOutbox, addTenant, expectExit, parseBatchOutput, readOutbox, type BatchDetail } from '../helpers/setup.js';

const PASSWORD = 'pause-pw-31c';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function workspace(): Promise<Workspace> {
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  await addTenant(ws, 'acme', 'Acme Dental');
  return ws;
}

async function smtp(port?: number): Promise<TestSmtpServer> {
  const srv = await startSmtpServer({ users: { mailer: PASSWORD }, ...(port ? { port } : {}) });
  cleanups.push(() => srv.close());
  return srv;
}

async function stub(handler: StubHandler): Promise<HttpStub> {
  const s = await startHttpStub(handler);
  cleanups.push(() => s.close());
  return s;
}

function rowsCsv(ws: Workspace, name: string, n: number, prefix: string): string {
  return ws.file(name, ['email,name', ...Array.from({ length: n }, (_, i) => `${prefix}${i + 1}@example.com,${prefix.toUpperCase()}${i + 1}`)].join('\n') + '\n');
}

/** A workspace whose route is the system outbox, a CSV of `n` rows and a text template. */
async function outboxSetup(name: string, n: number, prefix: string): Promise<{ ws: Workspace; out: string; csv: string; tpl: string }> {
  const ws = await workspace();
  const out = `${ws.dir}/outbox`;
  await addSystemOutbox(ws, out);
  return { ws, out, csv: rowsCsv(ws, name, n, prefix), tpl: ws.file('t.txt', 'Hello {{name}}\n') };
}

function batchLine(csv: string, tpl: string, extra: string[] = []): string[] {
  return ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi {{name}}', ...extra];
}

function sendGridKey(): string {
  return ['SG', randomBytes(11).toString('hex'), randomBytes(22).toString('hex')].join('.');
}

async function addSendGrid(ws: Workspace, owner: 'tenant' | 'system', endpoint: string, key: string): Promise<string> {
  const args = [
    'provider', 'add', ...(owner === 'system' ? ['--system'] : ['--tenant', 'acme']), '--channel', 'email', '--kind', 'sendgrid', '--name', 'sg',
    '--set', 'from=noreply@acme.test', '--set', `endpoint=${endpoint}`, '--secret-env', 'apiKey=SG_KEY',
  ];
  expectExit(await ws.run(args, { env: { SG_KEY: key } }), 0, 'provider add sendgrid');
  return `${owner === 'system' ? 'system' : 'acme'}/email/sg`;
}

/** A SendGrid-like /v3/mail/send: 202 with an X-Message-Id, counting each personalization's recipient. */
function sendGridOk(delivered: string[]): StubHandler {
  let n = 0;
  return (req) => {
    const body = JSON.parse(req.body) as { personalizations: Array<{ to: Array<{ email: string }> }> };
    for (const p of body.personalizations) delivered.push(p.to[0]!.email);
    return { status: 202, headers: { 'X-Message-Id': `sg-${++n}` } };
  };
}

function sgError(status: number, message: string) {
  return { status, body: { errors: [{ message, field: null, help: null }] } };
}

function itemsOf(detail: BatchDetail) {
  return detail.items ?? [];
}

async function show_(ws: Workspace, id: string): Promise<BatchDetail> {
  return parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', id, '--items', '--json']), 0, 'batch show'));
}

describe('an outage pauses the batch; the same line continues it', () => {
  test('SMTP server down: exit 75 within seconds, every row pending, the reason named; server up: the same line sends each row once', async () => {
    const ws = await workspace();
    // Learn a port and the server's certificate, then stop it: connections to that port are refused.
    const first = await smtp();
    const port = first.port;
    await addSmtpProvider(ws, first, { tenant: 'acme', user: 'mailer', password: PASSWORD });
    await first.close();
    const csv = rowsCsv(ws, 'out.csv', 40, 'o');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const line = batchLine(csv, tpl, ['--json']);

    const t0 = Date.now();
    const paused = await ws.run(line);
    const took = Date.now() - t0;
    expectExit(paused, 75, 'send batch while the server is down');
    expect(took, 'a paused run takes seconds').toBeLessThan(15_000);
    const { summary } = parseBatchOutput(paused);
    expect(summary).toMatchObject({ status: 'paused', rowCount: 40, pendingCount: 40, sentCount: 0, failedCount: 0, unknownCount: 0 });
    expect(summary.pausedReason).toMatch(/^acme\/email\/smtp: .*ECONNREFUSED|^acme\/email\/smtp: .*refused/i);
    expect(summary.pausedAt).toMatch(/Z$/);
    expect(paused.stderr).toContain(`switchboard batch resume ${summary.batchId}`);
    const detail = await show_(ws, summary.batchId);
    expect(detail).toMatchObject({ status: 'paused', pendingCount: 40 });
    expect(itemsOf(detail).every((i) => i.state === 'pending')).toBe(true);

    // A re-run while still down pauses again (75), not "already sent".
    expectExit(await ws.run(line), 75, 'the same line, still down');

    const srv = await smtp(port);
    const done = expectExit(await ws.run(line), 0, 'the same line, server up');
    expect(parseBatchOutput(done).summary).toMatchObject({ batchId: summary.batchId, status: 'done', sentCount: 40, resumed: true, pausedReason: null });
    await sleep(100);
    const to = srv.messages.map((m) => m.envelope.to[0]).sort();
    expect(to).toHaveLength(40);
    expect(new Set(to).size).toBe(40);
  });

  test('SendGrid-like server answering 503: paused (75) after a few attempts, not 40 rows of retries; back to 202: the same line completes', async () => {
    const ws = await workspace();
    const delivered: string[] = [];
    const s = await stub(() => sgError(503, 'service unavailable'));
    await addSendGrid(ws, 'tenant', s.url, sendGridKey());
    const csv = rowsCsv(ws, 'sg.csv', 40, 's');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const line = batchLine(csv, tpl, ['--json', '--retry-base-ms', '20', '--max-attempts', '3']);
    const paused = await ws.run(line);
    expectExit(paused, 75, 'send batch against 503');
    const { summary } = parseBatchOutput(paused);
    expect(summary).toMatchObject({ status: 'paused', pendingCount: 40, failedCount: 0 });
    expect(summary.pausedReason).toMatch(/^acme\/email\/sg: .*503/);
    // One batched request of 40 rows, tried 3 times: the circuit opens; nothing is tried row by row after.
    expect(s.requests.length).toBeLessThanOrEqual(3);

    s.handle(sendGridOk(delivered));
    const done = expectExit(await ws.run(line), 0, 'the same line, server back');
    expect(parseBatchOutput(done).summary).toMatchObject({ batchId: summary.batchId, status: 'done', sentCount: 40 });
    expect(delivered.sort()).toEqual(Array.from({ length: 40 }, (_, i) => `s${i + 1}@example.com`).sort());
  });

  test('one row whose retries run out while the others are sent: paused (75) saying so, not "no provider could take messages"; the next run sends it', async () => {
    const ws = await workspace();
    const delivered: string[] = [];
    const ok = sendGridOk(delivered);
    // 503 for one recipient only, so the circuit stays closed (the rows around it succeed).
    const s = await stub((req) => (req.body.includes('s7@example.com') ? sgError(503, 'try later') : ok(req)));
    const args = ['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'sendgrid', '--name', 'sg', '--set', 'from=noreply@acme.test', '--set', `endpoint=${s.url}`, '--set', 'batchSize=1', '--secret-env', 'apiKey=SG_KEY'];
    expectExit(await ws.run(args, { env: { SG_KEY: sendGridKey() } }), 0, 'provider add sendgrid');
    const line = batchLine(rowsCsv(ws, 'one.csv', 12, 's'), ws.file('t.txt', 'Hello {{name}}\n'), ['--json', '--retry-base-ms', '10', '--max-attempts', '2', '--concurrency', '1']);
    const paused = expectExit(await ws.run(line), 75, 'send batch with one row failing transiently');
    const { summary } = parseBatchOutput(paused);
    expect(summary).toMatchObject({ status: 'paused', pendingCount: 1, sentCount: 11, failedCount: 0 });
    expect(summary.pausedReason).toMatch(/^retries ran out with the route up \(last error: .*503/);
    expect(paused.stderr).toMatch(/paused: retries ran out with the route up \(last error: .*503.*\); 1 rows left pending; continue with: switchboard batch resume/);
    expect(paused.stderr).not.toContain('no provider could take messages');

    s.handle(ok);
    expect(parseBatchOutput(expectExit(await ws.run(line), 0, 'the same line, the row accepted now')).summary).toMatchObject({ status: 'done', sentCount: 12 });
    expect(delivered.filter((r) => r === 's7@example.com')).toHaveLength(1);
  });

  test('revoked key on every provider of the route: paused naming both; after `provider update` the same line completes', async () => {
    const ws = await workspace();
    const delivered: string[] = [];
    const good = sendGridKey();
    const tenantSg = await stub((req) => (req.headers.authorization === `Bearer ${good}` ? sendGridOk(delivered)(req) : sgError(401, 'The provided authorization grant is invalid, expired, or revoked')));
    const systemSg = await stub(() => sgError(401, 'authorization required'));
    const tenantRef = await addSendGrid(ws, 'tenant', tenantSg.url, sendGridKey());
    const systemRef = await addSendGrid(ws, 'system', systemSg.url, sendGridKey());
    const csv = rowsCsv(ws, 'rk.csv', 12, 'r');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const line = batchLine(csv, tpl, ['--json']);
    const paused = await ws.run(line);
    expectExit(paused, 75, 'send batch with revoked keys');
    const { summary } = parseBatchOutput(paused);
    expect(summary).toMatchObject({ status: 'paused', pendingCount: 12, failedCount: 0, sentCount: 0 });
    expect(summary.pausedReason).toMatch(new RegExp(`^${tenantRef}: .*401.*; ${systemRef}: .*401`));
    expect(paused.stderr).toMatch(/paused: no provider could take messages/);

    expectExit(await ws.run(['provider', 'update', tenantRef, '--secret-env', 'apiKey=SG_KEY'], { env: { SG_KEY: good } }), 0, 'provider update');
    const done = expectExit(await ws.run(line), 0, 'the same line after the key is fixed');
    expect(parseBatchOutput(done).summary).toMatchObject({ batchId: summary.batchId, status: 'done', sentCount: 12, fallbackCount: 0 });
    expect(delivered.sort()).toEqual(Array.from({ length: 12 }, (_, i) => `r${i + 1}@example.com`).sort());
  });
});

describe('signals, exit codes, retries', () => {
  test('--rate 1, SIGINT after the first message: nothing more reaches the server beyond the request in flight; exit 130; resume sends the rest once', async () => {
    const ws = await workspace();
    const srv = await smtp();
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: PASSWORD });
    const csv = rowsCsv(ws, 'sig.csv', 8, 'u');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const child = spawnCli(ws, batchLine(csv, tpl, ['--rate', '1', '--concurrency', '4']));
    const t0 = Date.now();
    while (srv.messages.length === 0 && Date.now() - t0 < 20_000) await sleep(10);
    child.kill('SIGINT');
    const atSignal = srv.messages.length;
    const r = await child;
    expect(r.exitCode, String(r.stderr)).toBe(130);
    await sleep(1500);
    // At most the one request that was on the wire when the signal came.
    expect(srv.messages.length - atSignal).toBeLessThanOrEqual(1);
    const id = /batch resume (\S+)/.exec(String(r.stderr))?.[1];
    expect(id, String(r.stderr)).toBeDefined();
    const mid = await show_(ws, id!);
    expect(mid.status).toBe('interrupted');
    expect(itemsOf(mid).filter((i) => i.state === 'unknown' || i.state === 'sending')).toEqual([]);
    expect(itemsOf(mid).filter((i) => i.state === 'sent')).toHaveLength(srv.messages.length);
    expectExit(await ws.run(['batch', 'resume', id!, '--rate', '20']), 0, 'resume');
    await sleep(100);
    const to = srv.messages.map((m) => m.envelope.to[0]);
    expect(to).toHaveLength(8);
    expect(new Set(to).size).toBe(8);
  });

  test('SIGINT while a request never finishes: exit 130 once the 10 s wait for it ends (not at the request timeout); its rows are unknown', async () => {
    const ws = await workspace();
    // A SendGrid-like server that reads the request and never answers (the adapter's own timeout is 30 s).
    const s = await stub(() => new Promise(() => {}));
    await addSendGrid(ws, 'tenant', s.url, sendGridKey());
    const csv = rowsCsv(ws, 'hang.csv', 3, 'h');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const child = spawnCli(ws, batchLine(csv, tpl, ['--json']));
    const t0 = Date.now();
    while (s.requests.length === 0 && Date.now() - t0 < 20_000) await sleep(20);
    expect(s.requests, 'the request reached the server').toHaveLength(1);
    const signalledAt = Date.now();
    child.kill('SIGINT');
    const r = await child;
    const took = Date.now() - signalledAt;
    expect(r.exitCode, String(r.stderr)).toBe(130);
    // STOP_WAIT_MS (10 s) for the request on the wire, then the outcome is recorded and the process ends.
    expect(took, 'waits for the request on the wire').toBeGreaterThanOrEqual(9_500);
    expect(took, 'but no longer than the 10 s cut-off (plus start-up slack)').toBeLessThan(20_000);
    const id = /batch resume (\S+)/.exec(String(r.stderr))?.[1];
    expect(id, String(r.stderr)).toBeDefined();
    const detail = await show_(ws, id!);
    expect(detail.status).toBe('interrupted');
    // The three rows went out in one request whose answer never came: none may count as sent or be sent again
    // without --retry-unknown.
    expect(itemsOf(detail).map((i) => [i.state, i.error])).toEqual(Array(3).fill(['unknown', 'no answer before the run was stopped; outcome unknown']));
    expect(String(r.stderr)).toContain(`3 with unknown outcome (no answer before the stop; see \`batch retry ${id} --unknown\`)`);
    expect(s.requests).toHaveLength(1);
  });

  test('exit code is the batch state: 3 for a batch with a failed row, on the first run and the re-run alike; batch retry asks, needs --yes, is audited', async () => {
    const ws = await workspace();
    const srv = await startSmtpServer({ users: { mailer: PASSWORD }, rejectRecipients: new Set(['x2@example.com']) });
    cleanups.push(() => srv.close());
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: PASSWORD });
    const csv = rowsCsv(ws, 'x.csv', 3, 'x');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const line = batchLine(csv, tpl, ['--json']);
    const first = expectExit(await ws.run(line), 3, 'first run');
    const { summary } = parseBatchOutput(first);
    expect(summary).toMatchObject({ sentCount: 2, failedCount: 1 });
    const again = expectExit(await ws.run(line), 3, 'the same line again');
    expect(parseBatchOutput(again).summary).toMatchObject({ alreadyFinished: true, sentCount: 2, failedCount: 1 });
    expect(again.stderr).toMatch(new RegExp(`batch ${summary.batchId} .*already finished at .*2 sent, 1 failed.*--new-batch`));

    const noYes = await ws.run(['batch', 'retry', summary.batchId, '--failed']);
    expectExit(noYes, 2, 'retry without --yes');
    expect(noYes.stderr).toContain('--yes');
    const bad = await ws.run(['batch', 'retry', summary.batchId, '--error-class', 'weather', '--yes']);
    expectExit(bad, 2, 'bad --error-class');
    expect(bad.stderr).toContain('--error-class weather');
    // Only the classes that fail a row are offered; the row failed for its recipient, so render selects none.
    expectExit(await ws.run(['batch', 'retry', summary.batchId, '--failed', '--error-class', 'transient', '--yes']), 2, '--error-class transient');
    const none = parseJson<{ retriedCount: number }>(expectExit(await ws.run(['batch', 'retry', summary.batchId, '--failed', '--error-class', 'render', '--yes', '--json']), 0, 'retry render'));
    expect(none.retriedCount).toBe(0);
    const retried = parseJson<{ retriedCount: number; pendingCount: number }>(
      expectExit(await ws.run(['batch', 'retry', summary.batchId, '--failed', '--error-class', 'recipient', '--yes', '--json']), 0, 'retry'),
    );
    expect(retried).toMatchObject({ retriedCount: 1, pendingCount: 1 });
    const audit = parseJson<Array<{ action: string; target: string; fields: string[] }>>(await ws.run(['audit', 'list', '--json']));
    expect(audit.find((a) => a.action === 'batch.retry' && a.target === summary.batchId)?.fields).toContain('1 rows');
    // Still refused: the resume records it failed again (exit 3); the recipient got nothing.
    expectExit(await ws.run(['batch', 'resume', summary.batchId]), 3, 'resume after retry');
    expect(srv.rejected.filter((r) => r === 'x2@example.com')).toHaveLength(2);
    expect(srv.messages).toHaveLength(2);
  });

  test('duplicate recipients are counted and warned by line; --dedupe-recipients sends once, the later rows skipped', async () => {
    const ws = await workspace();
    const out = `${ws.dir}/outbox`;
    await addSystemOutbox(ws, out);
    const csv = ws.file('dup.csv', 'email,name\na@example.com,A\nb@example.com,B\nA@example.com,A2\nc@example.com,C\na@example.com,A3\n');
    const tpl = ws.file('t.txt', 'Hello {{name}}\n');
    const warned = expectExit(await ws.run(batchLine(csv, tpl, ['--json'])), 0, 'duplicates sent');
    expect(warned.stderr).toMatch(/2 rows repeat a recipient of an earlier line/);
    expect(warned.stderr).toMatch(/a@example\.com: line 2, then lines 4, 6/);
    expect(parseBatchOutput(warned).summary).toMatchObject({ sentCount: 5, duplicateRecipientCount: 2 });

    const once = expectExit(await ws.run(batchLine(csv, tpl, ['--json', '--new-batch', '--dedupe-recipients'])), 0, 'deduped');
    const { summary } = parseBatchOutput(once);
    expect(summary).toMatchObject({ sentCount: 3, skippedCount: 2, duplicateRecipientCount: 2 });
    const items = itemsOf(await show_(ws, summary.batchId));
    expect(items.filter((i) => i.state === 'skipped').map((i) => [i.line, i.error])).toEqual([
      [4, 'duplicate of line 2'],
      [6, 'duplicate of line 2'],
    ]);
    expect(await readOutbox(out)).toHaveLength(8);
  });
});

describe('idempotency window', () => {
  test('derived key: within 24 h already finished; after, a new batch; an explicit key never expires; --dedupe-window 0 turns it off', async () => {
    const { ws, out, csv, tpl } = await outboxSetup('w.csv', 2, 'w');
    const at = (iso: string) => ({ env: { SWITCHBOARD_NOW: iso } });
    const first = parseBatchOutput(expectExit(await ws.run(batchLine(csv, tpl, ['--json']), at('2026-03-02T07:00:00Z')), 0, 'first')).summary;
    const within = parseBatchOutput(expectExit(await ws.run(batchLine(csv, tpl, ['--json']), at('2026-03-03T06:59:00Z')), 0, 'within 24 h')).summary;
    expect(within).toMatchObject({ batchId: first.batchId, alreadyFinished: true });
    const after = parseBatchOutput(expectExit(await ws.run(batchLine(csv, tpl, ['--json']), at('2026-03-03T07:00:01Z')), 0, 'after 24 h')).summary;
    expect(after.batchId).not.toBe(first.batchId);
    expect(after).toMatchObject({ alreadyFinished: false, sentCount: 2 });
    const wider = parseBatchOutput(expectExit(await ws.run(batchLine(csv, tpl, ['--json', '--dedupe-window', '36h']), at('2026-03-04T18:00:00Z')), 0, '36h')).summary;
    expect(wider).toMatchObject({ batchId: after.batchId, alreadyFinished: true });
    const off = parseBatchOutput(expectExit(await ws.run(batchLine(csv, tpl, ['--json', '--dedupe-window', '0']), at('2026-03-04T18:00:01Z')), 0, 'window 0')).summary;
    expect(off.batchId).not.toBe(after.batchId);

    const keyed = batchLine(csv, tpl, ['--json', '--idempotency-key', 'reminders-2026-03-02']);
    const k1 = parseBatchOutput(expectExit(await ws.run(keyed, at('2026-03-02T07:00:00Z')), 0, 'keyed')).summary;
    const k2 = parseBatchOutput(expectExit(await ws.run(keyed, at('2027-03-02T07:00:00Z')), 0, 'keyed a year later')).summary;
    expect(k2).toMatchObject({ batchId: k1.batchId, alreadyFinished: true });
    expect(await readOutbox(out)).toHaveLength(8);
    expectExit(await ws.run(batchLine(csv, tpl, ['--idempotency-key', 'k', '--dedupe-window', '1h'])), 2, '--dedupe-window with a key');

    // A fully sent batch stays done: `batch cancel` says so in one line, changes nothing and audits nothing.
    const c = rowsCsv(ws, 'c.csv', 1, 'c');
    const cline = batchLine(c, tpl, ['--idempotency-key', 'to-cancel', '--json']);
    const cb = parseBatchOutput(expectExit(await ws.run(cline), 0, 'to cancel')).summary;
    expect(cb.status).toBe('done');
    const plain = expectExit(await ws.run(['batch', 'cancel', cb.batchId, '--yes']), 0, 'cancel a done batch');
    expect(plain.stdout.trim()).toBe(`batch ${cb.batchId} is already done; nothing to cancel`);
    expect(plain.stderr.trim()).toBe('');
    // Without --yes and without a terminal too: there is nothing to confirm.
    const asJson = parseJson<Record<string, unknown>>(expectExit(await ws.run(['batch', 'cancel', cb.batchId, '--json']), 0, 'cancel a done batch, --json'));
    expect(asJson).toMatchObject({ batchId: cb.batchId, status: 'done', alreadyFinished: true, cancelledCount: 0, sentCount: 1, skippedCount: 0 });
    expect(parseJson<{ status: string }>(await ws.run(['batch', 'show', cb.batchId, '--json'])).status).toBe('done');
    const audit = parseJson<Array<{ action: string; target: string }>>(await ws.run(['audit', 'list', '--json']));
    expect(audit.filter((a) => a.action === 'batch.cancel')).toEqual([]);
    const rerun = expectExit(await ws.run(cline), 0, 'done batch again');
    expect(parseBatchOutput(rerun).summary).toMatchObject({ status: 'done', alreadyFinished: true });
  });
});

describe('busy store and lost lease', () => {
  test('a lock held by another connection past the busy timeout during a batch: the batch completes', async () => {
    const { ws, out, csv, tpl } = await outboxSetup('busy.csv', 60, 'b');
    const child = execWithEnv(ws, batchLine(csv, tpl, ['--rate', '30']), { SWITCHBOARD_BUSY_TIMEOUT_MS: '150' });
    const t0 = Date.now();
    while ((await readOutbox(out)).length < 5 && Date.now() - t0 < 20_000) await sleep(20);
    const db = new Database(ws.store);
    db.pragma('busy_timeout = 5000');
    db.exec('BEGIN IMMEDIATE');
    await sleep(1200); // eight busy timeouts of the batch's store
    db.exec('COMMIT');
    db.close();
    const r = await child;
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const got = (await readOutbox(out)).map((m) => m.to[0]);
    expect(got).toHaveLength(60);
    expect(new Set(got).size).toBe(60);
  });

  test('a run whose lease is taken over stops sending at once and exits 4; it does not report the batch as its own', async () => {
    const { ws, out, csv, tpl } = await outboxSetup('lease.csv', 100, 'l');
    const child = spawnCli(ws, batchLine(csv, tpl, ['--rate', '20']));
    const t0 = Date.now();
    while ((await readOutbox(out)).length < 3 && Date.now() - t0 < 20_000) await sleep(20);
    // What another process does when it takes over a lease that ran out (e.g. this one was SIGSTOPped past it).
    const db = new Database(ws.store);
    db.prepare("UPDATE batches SET lease_owner = '999999@elsewhere', lease_expires_at = ?").run(new Date(Date.now() + 60_000).toISOString());
    db.close();
    const taken = (await readOutbox(out)).length;
    const r = await child;
    expect(r.exitCode, String(r.stderr)).toBe(4);
    expect(String(r.stderr)).toMatch(/took over its lease/);
    await sleep(300);
    // At most the requests already holding a slot when the lease changed hands.
    expect((await readOutbox(out)).length - taken).toBeLessThanOrEqual(4);
    const b = parseJson<Array<{ status: string; leaseOwner: string }>>(await ws.run(['batch', 'list', '--json']))[0]!;
    expect(b).toMatchObject({ status: 'running', leaseOwner: '999999@elsewhere' });
  });
});

function execWithEnv(ws: Workspace, args: string[], env: Record<string, string>) {
  const w = { ...ws, env: { ...ws.env, ...env } } as Workspace;
  return spawnCli(w, args);
}
