// e2e: the ses adapter through the built binary against a local SESv2 REST-JSON endpoint that checks the
// SigV4 signature (re-signed with the known secret) and the SendEmail payload.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { addSystemOutbox, addTenant, expectExit, readOutbox, type ProviderListRow, type SendTestJson } from '../helpers/setup.js';
import { parseSigV4, sesError, startSesStub, type SesCredentials, type SesStub } from '../helpers/sesv2-stub.js';
import type { RecordedRequest, StubReply } from '../helpers/http-stub.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Credentials in AWS's format, made at run time. */
function credentials(): SesCredentials {
  return { accessKeyId: `AK${'IA'}${randomBytes(8).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64'), region: 'eu-west-1' };
}

async function stub(creds: SesCredentials, handler?: (req: RecordedRequest) => StubReply | undefined): Promise<SesStub> {
  const s = await startSesStub(creds, handler);
  cleanups.push(() => s.close());
  return s;
}

async function workspace(): Promise<Workspace> {
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  await addTenant(ws, 'acme', 'Acme Dental');
  return ws;
}

async function addSes(ws: Workspace, endpoint: string, creds: SesCredentials, o: { name?: string; extra?: string[] } = {}): Promise<string> {
  const args = [
    'provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'ses',
    '--set', `region=${creds.region}`, '--set', 'from=noreply@acme.test', '--set', `accessKeyId=${creds.accessKeyId}`,
    '--set', `endpoint=${endpoint}`, ...(o.extra ?? []), '--secret-env', 'secretAccessKey=AWS_SECRET',
  ];
  if (o.name) args.push('--name', o.name);
  expectExit(await ws.run(args, { env: { AWS_SECRET: creds.secretAccessKey } }), 0, 'provider add ses');
  return `acme/email/${o.name ?? 'ses'}`;
}

const sendEmails = (s: SesStub) => s.requests.filter((r) => r.method === 'POST' && r.url === '/v2/email/outbound-emails');


describe('ses adapter', () => {
  test('SendEmail carries the documented payload and a valid SigV4 signature; the MessageId is recorded', async () => {
    const creds = credentials();
    const s = await stub(creds);
    const ws = await workspace();
    await addSes(ws, s.url, creds, { extra: ['--set', 'configurationSet=transactional', '--set', 'fromName=Acme Dental'] });

    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--subject', 'Hello', '--body', 'Hi Ana', '--json']);
    expectExit(r, 0, 'send test via ses');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'sent', provider: 'acme/email/ses', messageId: '0100018f-test-0001-000000', fallback: false });

    expect(sendEmails(s)).toHaveLength(1);
    expect(s.signed).toHaveLength(1);
    const req = sendEmails(s)[0]!;
    const auth = parseSigV4(req.headers.authorization);
    expect(auth).toMatchObject({ accessKeyId: creds.accessKeyId, region: 'eu-west-1', service: 'ses' });
    expect(auth?.signedHeaders).toEqual(expect.arrayContaining(['host', 'x-amz-date']));
    expect(req.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req.body)).toEqual({
      FromEmailAddress: '"Acme Dental" <noreply@acme.test>',
      Destination: { ToAddresses: ['ana@example.com'] },
      Content: { Simple: { Subject: { Data: 'Hello', Charset: 'UTF-8' }, Body: { Text: { Data: 'Hi Ana', Charset: 'UTF-8' } } } },
      // The tenant as a message tag, echoed in SES event notifications (delivery events).
      EmailTags: [{ Name: 'sb_tenant', Value: 'acme' }],
      ConfigurationSetName: 'transactional',
    });
  });

  test('a wrong secret is refused (SignatureDoesNotMatch → auth): the system default sends and the config is unhealthy', async () => {
    const creds = credentials();
    const s = await stub(creds);
    const ws = await workspace();
    await addSes(ws, s.url, { ...creds, secretAccessKey: randomBytes(30).toString('base64') });
    const outbox = path.join(ws.dir, 'outbox');
    await addSystemOutbox(ws, outbox);

    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--json']);
    expectExit(r, 0, 'send test with a wrong secret');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'sent', provider: 'system/email/outbox', fallback: true });
    expect(out.attempts[0]).toMatchObject({ provider: 'acme/email/ses', status: 'failed', errorKind: 'auth' });
    expect(sendEmails(s)).toHaveLength(1);
    expect(s.signed).toHaveLength(0);
    expect(await readOutbox(outbox)).toHaveLength(1);
    const list = parseJson<ProviderListRow[]>(await ws.run(['provider', 'list', '--json']));
    expect(list.find((p) => p.id === 'acme/email/ses')).toMatchObject({ health: 'unhealthy', healthDetail: expect.stringContaining('SignatureDoesNotMatch') });
  });

  test('throttled (TooManyRequestsException) then accepted: same provider, no fallback', async () => {
    const creds = credentials();
    const s: SesStub = await stub(creds, (req) =>
      req.url === '/v2/email/outbound-emails' && s.signed.filter((x) => x.url === req.url).length === 1
        ? sesError(429, 'TooManyRequestsException', 'Maximum sending rate exceeded.')
        : undefined,
    );
    const ws = await workspace();
    await addSes(ws, s.url, creds);
    await addSystemOutbox(ws, path.join(ws.dir, 'outbox'));
    const r = await ws.run(['--retry-base-ms', '10', 'send', 'test', '--tenant', 'acme', '--to', 'ana@example.com', '--json']);
    expectExit(r, 0, 'send test after throttling');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'sent', provider: 'acme/email/ses', fallback: false });
    expect(out.attempts.map((a) => a.errorKind ?? a.status)).toEqual(['rate_limited', 'sent']);
    expect(sendEmails(s)).toHaveLength(2);
  });

  test('MessageRejected naming the recipient → recipient: failed, no fallback', async () => {
    const creds = credentials();
    const s = await stub(creds, (req) =>
      req.url === '/v2/email/outbound-emails'
        ? sesError(400, 'MessageRejected', 'Email address is not verified. The following identities failed the check in region EU-WEST-1: nobody@example.com')
        : undefined,
    );
    const ws = await workspace();
    await addSes(ws, s.url, creds);
    const outbox = path.join(ws.dir, 'outbox');
    await addSystemOutbox(ws, outbox);
    const r = await ws.run(['send', 'test', '--tenant', 'acme', '--to', 'nobody@example.com', '--json']);
    expectExit(r, 1, 'send test to a rejected recipient');
    const out = parseJson<SendTestJson>(r);
    expect(out).toMatchObject({ status: 'failed', provider: 'acme/email/ses', fallback: false, errorKind: 'recipient' });
    expect(sendEmails(s)).toHaveLength(1);
    expect(await readOutbox(outbox)).toHaveLength(0);
  });

  test('verify (GetAccount): good credentials, wrong key id, sending disabled', async () => {
    const creds = credentials();
    let enabled = true;
    const s = await stub(creds, (req) =>
      req.url === '/v2/email/account' && !enabled
        ? { status: 200, body: { SendingEnabled: false, EnforcementStatus: 'PROBATION', SendQuota: { Max24HourSend: 200, MaxSendRate: 1, SentLast24Hours: 0 } } }
        : undefined,
    );
    const ws = await workspace();
    await addSes(ws, s.url, creds, { name: 'good' });
    await addSes(ws, s.url, { ...creds, accessKeyId: credentials().accessKeyId }, { name: 'unknown-key' });

    const ok = expectExit(await ws.run(['provider', 'verify', 'acme/email/good']), 0, 'verify good');
    expect(ok.stdout).toContain('ok  acme/email/good: sending enabled in eu-west-1; quota 200/24h at 1 msg/s, 3 sent in the last 24h, sandbox');
    const bad = expectExit(await ws.run(['provider', 'verify', 'acme/email/unknown-key']), 1, 'verify unknown key id');
    expect(bad.stdout).toContain('auth: SES refused the credentials: UnrecognizedClientException');
    enabled = false;
    const off = expectExit(await ws.run(['provider', 'verify', 'acme/email/good']), 1, 'verify with sending disabled');
    expect(off.stdout).toContain('sending is disabled for this account in eu-west-1 (enforcement: PROBATION');
    expect(s.requests.every((r) => r.method === 'GET' && r.url === '/v2/email/account')).toBe(true);
  });
});
