// e2e: `send test` through a tenant's smtp provider, an explicit provider, and with/without fallback.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';
import { addSmtpProvider, addSystemOutbox, addTenant, normId, readOutbox } from '../helpers/setup.js';
import { checkJson } from '../helpers/schemas.js';

interface SendResult {
  status: 'sent' | 'failed';
  provider: string;
  messageId: string | null;
  fallback: boolean;
  attempts: unknown[];
  error?: unknown;
}

describe('send test', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;
  let outbox: string;

  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: 'send-test-right-pw' } });
    outbox = path.join(ws.dir, 'outbox');
    await addTenant(ws, 'acme');
    await addTenant(ws, 'beta');
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: 'send-test-right-pw', from: 'hello@acme.test' });
    await addSmtpProvider(ws, srv, { tenant: 'beta', user: 'mailer', password: 'send-test-WRONG-pw' });
    await addSystemOutbox(ws, outbox);
  });

  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  const sendTest = (tenant: string, to: string, extra: string[] = []): ReturnType<Workspace['run']> =>
    ws.run(['send', 'test', '--tenant', tenant, '--channel', 'email', '--to', to, '--subject', `Ping ${to}`, '--body', `Hello ${to}, this is a test.`, '--json', ...extra]);

  test('via the tenant smtp provider', async () => {
    const r = await sendTest('acme', 'ana@example.com');
    expect(r.exitCode, show(r)).toBe(0);
    const res = parseJson<SendResult>(r);
    expect(res).toMatchObject({ status: 'sent', provider: 'acme/email/smtp', fallback: false });
    expect(Array.isArray(res.attempts)).toBe(true);
    expect(res.attempts.length).toBeGreaterThanOrEqual(1);

    expect(srv.messages).toHaveLength(1);
    const m = srv.messages[0]!;
    expect(m.envelope.to).toEqual(['ana@example.com']);
    expect(m.to).toEqual(['ana@example.com']);
    expect(m.from).toBe('hello@acme.test');
    expect(m.subject).toBe('Ping ana@example.com');
    expect(m.text).toContain('Hello ana@example.com, this is a test.');
    expect(m.secure).toBe(true);
    expect(normId(res.messageId)).not.toBe('');
    expect(normId(res.messageId)).toBe(normId(m.messageId));
    expect(await readOutbox(outbox)).toHaveLength(0);
  });

  test('--provider system/email/outbox sends through the named provider only', async () => {
    const r = await sendTest('acme', 'bo@example.com', ['--provider', 'system/email/outbox']);
    expect(r.exitCode, show(r)).toBe(0);
    const res = parseJson<SendResult>(r);
    expect(res).toMatchObject({ status: 'sent', provider: 'system/email/outbox' });
    expect(srv.messages).toHaveLength(1);
    const files = await readOutbox(outbox);
    expect(files).toHaveLength(1);
    expect(files[0]!.to).toEqual(['bo@example.com']);
    expect(files[0]!.subject).toBe('Ping bo@example.com');
    expect(files[0]!.text).toContain('Hello bo@example.com, this is a test.');
  });

  test('--provider with an unknown ref is a usage error', async () => {
    const r = await sendTest('acme', 'x@example.com', ['--provider', 'acme/email/nope']);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toContain('acme/email/nope');
    expect(srv.messages).toHaveLength(1);
    expect(await readOutbox(outbox)).toHaveLength(1);
  });

  test('--no-fallback with a wrong smtp password fails (exit 1) and writes nothing to the outbox', async () => {
    const authFailuresBefore = srv.authFailures;
    const r = await sendTest('beta', 'cy@example.com', ['--no-fallback']);
    expect(r.exitCode, show(r)).toBe(1);
    expect(srv.authFailures).toBeGreaterThan(authFailuresBefore);
    expect(srv.messages).toHaveLength(1);
    expect(await readOutbox(outbox)).toHaveLength(1);
    const res = parseJson<SendResult>(r);
    expect(res.status).toBe('failed');
    expect(res.fallback).toBe(false);
    expect(res.error).toBeTruthy();
    expect(JSON.stringify(res.error)).toMatch(/auth|535|credentials|login/i);
  });

  test('a 535 from the server is the code of the attempt too, not only of the result', async () => {
    const r = await sendTest('beta', 'ed@example.com', ['--no-fallback']);
    expect(r.exitCode, show(r)).toBe(1);
    const res = checkJson('send-test', parseJson(r), 'send test after 535') as { errorKind: string; errorCode: string; attempts: { status: string; errorKind: string; errorCode: string | null }[] };
    expect(res).toMatchObject({ errorKind: 'auth', errorCode: '535' });
    expect(res.attempts).toHaveLength(1); // auth failures open the circuit: no retry against the same server
    expect(res.attempts[0]).toMatchObject({ status: 'failed', errorKind: 'auth', errorCode: '535' });
  });

  test('without --no-fallback the same send falls back to the system outbox', async () => {
    const r = await sendTest('beta', 'di@example.com');
    expect(r.exitCode, show(r)).toBe(0);
    const res = parseJson<SendResult>(r);
    expect(res).toMatchObject({ status: 'sent', provider: 'system/email/outbox', fallback: true });
    expect(res.attempts.length).toBeGreaterThanOrEqual(2);
    const files = await readOutbox(outbox);
    expect(files).toHaveLength(2);
    expect(files.filter((f) => f.to.includes('di@example.com'))).toHaveLength(1);
    expect(srv.messages).toHaveLength(1);
  });
});
