// e2e: the fallback matrix on the sms channel, through the built binary: the tenant's twilio provider (a local
// Twilio server, every request checked by Prism against twilio_api_v2010.json) and the system default outbox.
//   revoked token (20003/401)  → the system outbox sends, the row records fallback, the config turns unhealthy
//   429 + Retry-After: 1, then OK → the same provider, after the wait
//   5xx on every attempt       → the next provider (the outbox) after the retries
//   invalid number (21211)     → failed, no fallback, the outbox never called
//   STOP (21610)               → failed, the number suppressed for the tenant, a later batch skips it
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit, parseBatchOutput, readSuppressions, sendPhoneBatch, type BatchDetail } from '../helpers/setup.js';
import { startPrism, type PrismServer } from '../helpers/prism.js';
import { startTwilioStub, twilioError, type Script, type TwilioStub } from '../helpers/phone-stubs.js';

const hex = (n: number) => randomBytes(n).toString('hex');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let prism: PrismServer;
beforeAll(async () => {
  prism = await startPrism('twilio_api_v2010.json');
});
afterAll(async () => prism?.close());

const INVALID = '+14155550001';
const STOPPED = '+14155550002';
const BUSY = '+14155550003';
const DOWN = '+14155550004';
const DOWN_ONCE = '+14155550005';

interface Env {
  ws: Workspace;
  stub: TwilioStub;
  outbox: string;
}

async function setup(script: Script = {}): Promise<Env> {
  const accountSid = `AC${hex(16)}`;
  const token = hex(16);
  const stub = await startTwilioStub({ prism, accountSid, authToken: token, script });
  cleanups.push(() => stub.close());
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  await addTenant(ws, 'acme');
  expectExit(
    await ws.run(
      ['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'twilio', '--set', `accountSid=${accountSid}`, '--set', 'from=+14155550100', '--set', `endpoint=${stub.url}`, '--secret-env', 'authToken=TW'],
      { env: { TW: token } },
    ),
    0,
    'add twilio',
  );
  const outbox = path.join(ws.dir, 'outbox');
  expectExit(await ws.run(['provider', 'add', '--system', '--channel', 'sms', '--kind', 'outbox', '--set', `dir=${outbox}`]), 0, 'add outbox');
  return { ws, stub, outbox };
}

function outboxTo(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => String((JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { to: string }).to))
    .sort();
}

interface TestSend {
  status: string;
  provider: string | null;
  fallback: boolean;
  messageId: string | null;
  attempts: Array<{ provider: string; attempt: number; status: string; errorKind: string | null }>;
  error: string | null;
  errorKind: string | null;
  errorCode: string | null;
}

function sendTest(ws: Workspace, to: string, extra: string[] = []) {
  return ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'sms', '--to', to, '--body', 'Your appointment is tomorrow', '--json', ...extra]);
}

describe('sms fallback matrix (twilio → system outbox)', () => {
  test('revoked token (20003): test send and batch go through the system outbox, marked fallback; twilio unhealthy', async () => {
    const { ws, stub, outbox } = await setup();
    stub.setAuthToken(hex(16));
    const t = parseJson<TestSend>(expectExit(await sendTest(ws, '+14155552671'), 0, 'send test'));
    expect(t).toMatchObject({ status: 'sent', provider: 'system/sms/outbox', fallback: true });
    expect(t.attempts.map((a) => [a.provider, a.status, a.errorKind])).toEqual([
      ['acme/sms/twilio', 'failed', 'auth'],
      ['system/sms/outbox', 'sent', null],
    ]);
    // One row at a time, so the second row sees the circuit the first one opened.
    const r = expectExit(await sendPhoneBatch(ws, 'sms', ['+14155552672', '+14155552673'], ['--concurrency', '1']), 0, 'batch');
    const { summary } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 2, sentCount: 2, failedCount: 0, fallbackCount: 2, byProvider: [{ provider: 'system/sms/outbox', sentCount: 2 }] });
    const detail = parseJson<BatchDetail>(expectExit(await ws.run(['batch', 'show', summary.batchId, '--items', '--json']), 0, 'batch show'));
    for (const item of detail.items ?? []) expect(item).toMatchObject({ state: 'sent', provider: 'system/sms/outbox', fallback: true });
    expect(outboxTo(outbox)).toEqual(['+14155552671', '+14155552672', '+14155552673']);
    // Auth failures open the circuit: one refused request per run (test send, batch), not one per row.
    expect(stub.sends.map((s) => s.status)).toEqual([401, 401]);
    const list = parseJson<Array<{ id: string; health: string }>>(expectExit(await ws.run(['provider', 'list', '--json']), 0, 'list'));
    expect(list.find((p) => p.id === 'acme/sms/twilio')?.health).toBe('unhealthy');
    expect(stub.violations).toEqual([]);
  });

  test('429 with Retry-After: 1, then accepted: same provider, after the wait', async () => {
    const { ws, stub, outbox } = await setup({ [BUSY]: [twilioError(429, 20429, 'Too Many Requests', { 'Retry-After': '1' })] });
    const t = parseJson<TestSend>(expectExit(await sendTest(ws, BUSY), 0, 'send test'));
    expect(t).toMatchObject({ status: 'sent', provider: 'acme/sms/twilio', fallback: false });
    expect(t.attempts.map((a) => [a.attempt, a.status, a.errorKind])).toEqual([
      [1, 'failed', 'rate_limited'],
      [2, 'sent', null],
    ]);
    expect(stub.sends.map((s) => s.status)).toEqual([429, 201]);
    expect(t.messageId).toBe(stub.sends[1]!.messageId);
    // The retry waited for Retry-After (1 s) before asking again.
    expect(stub.sends[1]!.at - stub.sends[0]!.at).toBeGreaterThanOrEqual(950);
    expect(outboxTo(outbox)).toEqual([]);
    expect(stub.violations).toEqual([]);
  });

  test('5xx on every attempt: retried, then the next provider (batch row records fallback)', async () => {
    const err = twilioError(503, 20500, 'Service Unavailable');
    const { ws, stub, outbox } = await setup({ [DOWN]: [err, err, err], [DOWN_ONCE]: [err] });
    const r = expectExit(await sendPhoneBatch(ws, 'sms', [DOWN, '+14155552671']), 0, 'batch');
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 2, sentCount: 2, failedCount: 0, fallbackCount: 1 });
    expect(rows.find((x) => x.recipient === DOWN)).toMatchObject({ state: 'sent', provider: 'system/sms/outbox', fallback: true });
    expect(rows.find((x) => x.recipient === '+14155552671')).toMatchObject({ state: 'sent', provider: 'acme/sms/twilio', fallback: false });
    expect(stub.sends.filter((s) => s.to === DOWN).map((s) => s.status)).toEqual([503, 503, 503]);
    expect(outboxTo(outbox)).toEqual([DOWN]);

    // The retry bound is a flag: with --max-attempts 1 the first 5xx moves on to the next provider.
    const bad = await sendTest(ws, DOWN_ONCE, ['--max-attempts', '0']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--max-attempts 0: expected a whole number from 1 to 10/);
    const t = parseJson<TestSend>(expectExit(await sendTest(ws, DOWN_ONCE, ['--max-attempts', '1']), 0, 'send test --max-attempts 1'));
    expect(t).toMatchObject({ status: 'sent', provider: 'system/sms/outbox', fallback: true });
    expect(stub.sends.filter((s) => s.to === DOWN_ONCE).map((s) => s.status)).toEqual([503]);
    expect(stub.violations).toEqual([]);
  });

  test('invalid number (21211): failed, not retried, no fallback, the outbox never called', async () => {
    const { ws, stub, outbox } = await setup({ [INVALID]: [twilioError(400, 21211, "The 'To' number +14155550001 is not a valid phone number.")] });
    const r = await sendTest(ws, INVALID);
    expect(r.exitCode).toBe(1);
    const t = parseJson<TestSend>(r);
    expect(t).toMatchObject({ status: 'failed', fallback: false, errorKind: 'recipient', errorCode: '21211' });
    expect(t.attempts).toHaveLength(1);
    expect(stub.sends).toHaveLength(1);
    expect(outboxTo(outbox)).toEqual([]);
    expect(fs.existsSync(outbox)).toBe(false);
  });

  test('STOP (21610): the row fails, the number is suppressed for the tenant, and a later batch skips it', async () => {
    const { ws, stub, outbox } = await setup({ [STOPPED]: [twilioError(400, 21610, 'Attempt to send to unsubscribed recipient')] });
    const r1 = expectExit(await sendPhoneBatch(ws, 'sms', ['+14155552671', STOPPED]), 3, 'first batch');
    const first = parseBatchOutput(r1);
    expect(first.summary).toMatchObject({ rowCount: 2, sentCount: 1, failedCount: 1, fallbackCount: 0 });
    expect(first.rows.find((x) => x.recipient === STOPPED)).toMatchObject({ state: 'failed', fallback: false });
    expect(outboxTo(outbox)).toEqual([]);

    expect(readSuppressions(ws.store, 'acme')).toEqual([{ channel: 'sms', address: STOPPED, source: 'acme/sms/twilio' }]);

    const r2 = expectExit(await sendPhoneBatch(ws, 'sms', [STOPPED, '+14155552672']), 0, 'second batch');
    const second = parseBatchOutput(r2);
    expect(second.summary).toMatchObject({ rowCount: 2, sentCount: 1, skippedCount: 1, failedCount: 0 });
    expect(second.rows.find((x) => x.recipient === STOPPED)).toMatchObject({ state: 'skipped' });
    // Twilio was asked about the stopped number once only: in the first batch.
    expect(stub.sends.filter((s) => s.to === STOPPED)).toHaveLength(1);
    expect(stub.violations).toEqual([]);
  });
});
