// e2e: `switchboard events serve` as a separate process, posted to with a real HTTP client, with payloads signed
// the way each provider signs them (test/helpers/events.ts): SendGrid's published test vector and key pairs made
// here, Twilio HMAC-SHA1, Meta HMAC-SHA256, SNS certificates made here and pre-seeded in --sns-cert-cache. Valid
// requests are stored and applied; a bad signature, a stale timestamp, a wrong tenant path, an unknown topic or
// an oversized body is refused and stores nothing. SIGTERM stops it with exit 0.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit } from '../helpers/setup.js';
import { startHttpStub, type HttpStub } from '../helpers/http-stub.js';
import {
  SENDGRID_VECTOR, metaBody, metaSignature, postSns, postTwilio, rawPost, sendGridSigner, sgEvent, snsSigner, startServe, storeRows,
  type SendGridSigner, type Serve, type SnsSigner,
} from '../helpers/events.js';

const PUBLIC = 'https://hooks.acme.test';
const ACCOUNT = `AC${randomBytes(16).toString('hex')}`;
const TWILIO_TOKEN = randomBytes(16).toString('hex');
const OUR_NUMBER = '+14155550199';
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:acme-ses-events';
const APP_SECRET = { acme: randomBytes(16).toString('hex'), beta: randomBytes(16).toString('hex') };
const VERIFY_TOKEN = randomBytes(8).toString('hex');

let ws: Workspace;
let serve: Serve;
let sgA: SendGridSigner;
let sgB: SendGridSigner;
let sns: SnsSigner;
let snsApi: HttpStub;
const certDir = () => path.join(ws.dir, 'sns-certs');

const rows = <T>(sql: string, ...args: unknown[]): T[] => storeRows<T>(ws.store, sql, ...args);
const eventCount = () => rows<{ n: number }>('SELECT count(*) AS n FROM events')[0]!.n;
const suppressed = (tenant: string, channel = 'email') => rows<{ address: string; source: string }>('SELECT address, source FROM suppressions WHERE tenant_id = ? AND channel = ? ORDER BY address', tenant, channel);

async function provider(args: string[], secrets: Record<string, string>): Promise<void> {
  const env = Object.fromEntries(Object.entries(secrets).map(([k, v]) => [`S_${k.toUpperCase()}`, v]));
  const secretFlags = Object.keys(secrets).flatMap((k) => ['--secret-env', `${k}=S_${k.toUpperCase()}`]);
  expectExit(await ws.run(['provider', 'add', ...args, ...secretFlags], { env }), 0, `provider add ${args.join(' ')}`);
}

beforeAll(async () => {
  ws = makeWorkspace();
  sgA = sendGridSigner();
  sgB = sendGridSigner();
  sns = await snsSigner();
  sns.seed(certDir());
  snsApi = await startHttpStub((req) => ({ status: 200, headers: { 'content-type': 'text/xml' }, body: `<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>${req.query.get('TopicArn')}:1</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>` }));
  await addTenant(ws, 'acme');
  await addTenant(ws, 'beta');
  const sg = (t: string, key: string) => ['--tenant', t, '--channel', 'email', '--kind', 'sendgrid', '--set', `from=noreply@${t}.test`, '--set', 'endpoint=http://127.0.0.1:9', '--set', `eventWebhookPublicKey=${key}`];
  await provider(sg('acme', sgA.publicKey), { apiKey: 'SG.a' });
  await provider(sg('beta', sgB.publicKey), { apiKey: 'SG.b' });
  await provider(['--tenant', 'acme', '--channel', 'sms', '--kind', 'twilio', '--set', `accountSid=${ACCOUNT}`, '--set', `from=${OUR_NUMBER}`], { authToken: TWILIO_TOKEN });
  const meta = (t: 'acme' | 'beta', id: string) => ['--tenant', t, '--channel', 'whatsapp', '--kind', 'meta-whatsapp', '--set', `phoneNumberId=${id}`];
  await provider(meta('acme', '1001'), { accessToken: 'EAA-a', appSecret: APP_SECRET.acme, webhookVerifyToken: VERIFY_TOKEN });
  await provider(meta('beta', '2002'), { accessToken: 'EAA-b', appSecret: APP_SECRET.beta });
  await provider(
    ['--tenant', 'acme', '--channel', 'email', '--kind', 'ses', '--set', 'region=us-east-1', '--set', 'from=noreply@acme.test', '--set', 'accessKeyId=AKIATEST', '--set', `snsTopicArn=${TOPIC}`, '--set', `snsEndpoint=${snsApi.url}`],
    { secretAccessKey: 'secret' },
  );
  serve = await startServe(ws, ['--public-url', PUBLIC, '--sns-cert-cache', certDir()]);
}, 60_000);

afterAll(async () => {
  if (serve?.child.exitCode === null) await serve.stop('SIGKILL');
  await snsApi?.close();
  ws?.cleanup();
});

describe('SendGrid Event Webhook', () => {
  test('signed with our key pair: stored and applied (hard bounce suppressed); the same request again changes nothing', async () => {
    const body = JSON.stringify([sgEvent('delivered', 'ana@example.com', 'SGA1'), sgEvent('bounce', 'bad@example.com', 'SGA1', { type: 'bounce', status: '5.1.1', reason: '550 no such user' })]) + '\r\n';
    const url = `${serve.url}/hooks/acme/email/sendgrid`;
    const first = await fetch(url, { method: 'POST', headers: sgA.headers(body), body });
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ stored: 2, duplicates: 0, suppressed: 1 });
    const again = await fetch(url, { method: 'POST', headers: sgA.headers(body), body });
    expect(await again.json()).toMatchObject({ stored: 0, duplicates: 2, suppressed: 0 });
    expect(suppressed('acme')).toEqual([{ address: 'bad@example.com', source: 'acme/email/sendgrid' }]);
    expect(rows('SELECT count(*) AS n FROM events WHERE tenant_id = ?', 'acme')).toEqual([{ n: 2 }]);
  });

  test('bad signature, no signature, stale timestamp, another tenant\'s path, oversized body: refused, nothing stored', async () => {
    const before = eventCount();
    const body = JSON.stringify([sgEvent('spamreport', 'x@example.com', 'SGA2')]);
    const post = (p: string, headers: Record<string, string>, b: string = body) => fetch(`${serve.url}${p}`, { method: 'POST', headers, body: b });
    const tampered = { ...sgA.headers(body) };
    expect((await post('/hooks/acme/email/sendgrid', tampered, body.replace('x@', 'y@'))).status).toBe(403);
    expect((await post('/hooks/acme/email/sendgrid', { 'content-type': 'application/json' })).status).toBe(401);
    expect((await post('/hooks/acme/email/sendgrid', sgA.headers(body, Math.floor(Date.now() / 1000) - 600))).status).toBe(403);
    // Signed with acme's key, posted to beta's config: beta's key does not verify it.
    expect((await post('/hooks/beta/email/sendgrid', sgA.headers(body))).status).toBe(403);
    expect((await post('/hooks/nobody/email/sendgrid', sgA.headers(body))).status).toBe(404);
    const big = `[${'"x",'.repeat(1_400_000)}"x"]`;
    expect(Buffer.byteLength(big)).toBeGreaterThan(5 * 1024 * 1024);
    expect((await rawPost(`${serve.url}/hooks/acme/email/sendgrid`, big, sgA.headers(big))).status).toBe(413);
    expect(eventCount()).toBe(before);
    expect(suppressed('beta')).toEqual([]);
  });

  test("the published test vector is refused as stale under the default 5-minute tolerance, and verifies with a wider one", async () => {
    await provider(['--tenant', 'acme', '--channel', 'email', '--kind', 'sendgrid', '--name', 'vector', '--set', 'from=noreply@acme.test', '--set', `eventWebhookPublicKey=${SENDGRID_VECTOR.publicKey}`], { apiKey: 'SG.v' });
    const headers = { 'content-type': 'application/json', 'x-twilio-email-event-webhook-signature': SENDGRID_VECTOR.signature, 'x-twilio-email-event-webhook-timestamp': SENDGRID_VECTOR.timestamp };
    const stale = await fetch(`${serve.url}/hooks/acme/email/vector`, { method: 'POST', headers, body: SENDGRID_VECTOR.payload });
    expect(stale.status).toBe(403);
    const wide = await startServe(ws, ['--signature-tolerance', '100000d']);
    try {
      const ok = await fetch(`${wide.url}/hooks/acme/email/vector`, { method: 'POST', headers, body: SENDGRID_VECTOR.payload });
      expect(ok.status, await ok.clone().text()).toBe(200);
      expect(await ok.json()).toMatchObject({ stored: 1, suppressed: 1 });
      // One byte less (the trailing CRLF the vector was signed with): refused.
      const cut = await fetch(`${wide.url}/hooks/acme/email/vector`, { method: 'POST', headers, body: SENDGRID_VECTOR.payload.trimEnd() });
      expect(cut.status).toBe(403);
    } finally {
      expect((await wide.stop()).exitCode).toBe(0);
    }
    expect(suppressed('acme').map((s) => s.address)).toContain('hello@world.com');
  });
});

describe('Twilio', () => {
  const path1 = '/hooks/acme/sms/twilio?sb_tenant=acme';
  test('a status callback signed for the public URL is stored with its status; a wrong token is refused', async () => {
    const params = { MessageSid: `SM${randomBytes(16).toString('hex')}`, MessageStatus: 'delivered', AccountSid: ACCOUNT, From: OUR_NUMBER, To: '+14155550100' };
    const ok = await postTwilio(serve.url, PUBLIC, path1, TWILIO_TOKEN, params);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toMatch(/<Response>/);
    const before = eventCount();
    const bad = await postTwilio(serve.url, PUBLIC, path1, TWILIO_TOKEN, { ...params, MessageStatus: 'failed' }, 'not-the-token');
    expect(bad.status).toBe(403);
    // Signed for another URL (e.g. the internal one) does not verify either: Twilio signs what it requested.
    const wrongUrl = await postTwilio(serve.url, serve.url, path1, TWILIO_TOKEN, { ...params, MessageStatus: 'failed' });
    expect(wrongUrl.status).toBe(403);
    expect(eventCount()).toBe(before);
    expect(rows('SELECT type, recipient, tenant_id AS tenantId FROM events WHERE message_id = ?', params.MessageSid)).toEqual([{ type: 'delivered', recipient: '+14155550100', tenantId: 'acme' }]);
  });

  test('inbound STOP on the shared /hooks/twilio route suppresses; START lifts it; 21610 on a callback suppresses', async () => {
    const inbound = (body: string) => ({ MessageSid: `SM${randomBytes(16).toString('hex')}`, SmsStatus: 'received', AccountSid: ACCOUNT, From: '+14155550111', To: OUR_NUMBER, Body: body });
    expect((await postTwilio(serve.url, PUBLIC, '/hooks/twilio', TWILIO_TOKEN, inbound('Stop'))).status).toBe(200);
    expect(suppressed('acme', 'sms')).toEqual([{ address: '+14155550111', source: 'acme/sms/twilio' }]);
    expect((await postTwilio(serve.url, PUBLIC, '/hooks/twilio', TWILIO_TOKEN, inbound('START'))).status).toBe(200);
    expect(suppressed('acme', 'sms')).toEqual([]);
    const callback = { MessageSid: `SM${randomBytes(16).toString('hex')}`, MessageStatus: 'failed', ErrorCode: '21610', AccountSid: ACCOUNT, From: OUR_NUMBER, To: '+14155550122' };
    expect((await postTwilio(serve.url, PUBLIC, '/hooks/twilio', TWILIO_TOKEN, callback)).status).toBe(200);
    expect(suppressed('acme', 'sms').map((s) => s.address)).toEqual(['+14155550122']);
    const stranger = { ...inbound('STOP'), To: '+14155550000' };
    expect((await postTwilio(serve.url, PUBLIC, '/hooks/twilio', TWILIO_TOKEN, stranger)).status).toBe(404);
  });
});

describe('Meta WhatsApp', () => {
  const status = (id: string, recipient: string, s: string, extra: Record<string, unknown> = {}) => ({ id, status: s, timestamp: String(Math.floor(Date.now() / 1000)), recipient_id: recipient, ...extra });

  test('the subscription handshake echoes the challenge only for the right verify token', async () => {
    const q = (token: string) => `hub.mode=subscribe&hub.verify_token=${token}&hub.challenge=1158201444`;
    const ok = await fetch(`${serve.url}/hooks/meta?${q(VERIFY_TOKEN)}`);
    expect([ok.status, await ok.text()]).toEqual([200, '1158201444']);
    expect((await fetch(`${serve.url}/hooks/acme/whatsapp/meta-whatsapp?${q(VERIFY_TOKEN)}`)).status).toBe(200);
    expect((await fetch(`${serve.url}/hooks/meta?${q('wrong')}`)).status).toBe(403);
    // The log never shows the verify token.
    expect(serve.log()).not.toContain(VERIFY_TOKEN);
  });

  test("the shared endpoint resolves each tenant's number; tenant B's event signed with tenant A's secret is refused", async () => {
    const a = metaBody('1001', { statuses: [status('wamid.A1', '447700900001', 'delivered')] });
    const b = metaBody('2002', { statuses: [status('wamid.B1', '447700900002', 'failed', { errors: [{ code: 131050, title: 'User stopped marketing messages' }] })] });
    const post = (body: string, secret: string) => fetch(`${serve.url}/hooks/meta`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': metaSignature(secret, body) }, body });
    const before = eventCount();
    expect((await post(b, APP_SECRET.acme)).status).toBe(403);
    expect(eventCount()).toBe(before);
    expect((await post(a, APP_SECRET.acme)).status).toBe(200);
    expect((await post(b, APP_SECRET.beta)).status).toBe(200);
    expect(rows('SELECT message_id AS id, tenant_id AS tenantId, provider FROM events WHERE message_id LIKE ? ORDER BY message_id', 'wamid.%')).toEqual([
      { id: 'wamid.A1', tenantId: 'acme', provider: 'acme/whatsapp/meta-whatsapp' },
      { id: 'wamid.B1', tenantId: 'beta', provider: 'beta/whatsapp/meta-whatsapp' },
    ]);
    expect(suppressed('beta', 'whatsapp')).toEqual([{ address: '+447700900002', source: 'beta/whatsapp/meta-whatsapp' }]);
    // On acme's own path, a change for beta's number is not acme's: acknowledged (Meta would resend it forever), ignored.
    const count = eventCount();
    const other = metaBody('2002', { statuses: [status('wamid.B2', '447700900002', 'read')] });
    const own = await fetch(`${serve.url}/hooks/acme/whatsapp/meta-whatsapp`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': metaSignature(APP_SECRET.acme, other) }, body: other });
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ stored: 0, ignored: 1 });
    expect(eventCount()).toBe(count);
  });
});

describe('Amazon SES through SNS', () => {
  const ses = (type: 'Bounce' | 'Complaint', recipient: string) =>
    JSON.stringify({
      notificationType: type,
      mail: { messageId: `0100-${randomBytes(6).toString('hex')}`, timestamp: new Date().toISOString(), destination: [recipient] },
      ...(type === 'Bounce'
        ? { bounce: { bounceType: 'Permanent', bounceSubType: 'General', bouncedRecipients: [{ emailAddress: recipient, diagnosticCode: 'smtp; 550 5.1.1 user unknown' }], timestamp: new Date().toISOString() } }
        : { complaint: { complainedRecipients: [{ emailAddress: recipient }], complaintFeedbackType: 'abuse', timestamp: new Date().toISOString() } }),
    });
  const url = () => `${serve.url}/hooks/acme/email/ses`;

  test('a subscription confirmation is confirmed (ConfirmSubscription reached) only after its signature verifies', async () => {
    const m = sns.message('SubscriptionConfirmation', TOPIC, 'You have chosen to subscribe to the topic');
    const forged = { ...m, Token: 'f'.repeat(64) };
    expect((await postSns(url(), forged)).status).toBe(403);
    expect(snsApi.requests).toHaveLength(0);
    const r = await postSns(url(), m);
    expect(r.status, await r.clone().text()).toBe(200);
    expect(snsApi.requests).toHaveLength(1);
    expect(snsApi.requests[0]!.query.get('Action')).toBe('ConfirmSubscription');
    expect(snsApi.requests[0]!.query.get('Token')).toBe(m.Token);
  });

  test('a bounce (SignatureVersion 2) and a complaint (SignatureVersion 1) suppress their recipients; an unknown topic or a bad signature stores nothing', async () => {
    expect((await postSns(url(), sns.message('Notification', TOPIC, ses('Bounce', 'gone@example.com'), '2'))).status).toBe(200);
    expect((await postSns(url(), sns.message('Notification', TOPIC, ses('Complaint', 'angry@example.com'), '1'))).status).toBe(200);
    const list = parseJson<Array<{ address: string; reason: string; source: string; expiresAt: string | null }>>(await ws.run(['suppress', 'list', '--tenant', 'acme', '--json']));
    expect(list.filter((s) => s.source === 'acme/email/ses').map((s) => [s.address, s.reason, s.expiresAt])).toEqual([
      ['angry@example.com', 'complaint: abuse', null],
      ['gone@example.com', 'hard bounce: Permanent/General', null],
    ]);
    const before = eventCount();
    expect((await postSns(url(), sns.message('Notification', 'arn:aws:sns:us-east-1:999999999999:not-ours', ses('Bounce', 'x@example.com')))).status).toBe(403);
    const tampered = sns.message('Notification', TOPIC, ses('Bounce', 'y@example.com'));
    expect((await postSns(url(), { ...tampered, Message: ses('Bounce', 'z@example.com') })).status).toBe(403);
    const unknownCert = await snsSigner(); // not in the cache, and nothing can be fetched from here
    expect((await postSns(url(), unknownCert.message('Notification', TOPIC, ses('Bounce', 'w@example.com')))).status).toBe(403);
    expect(eventCount()).toBe(before);
  });
});

describe('events serve process', () => {
  test('one log line per request (no tokens, no queries); SIGTERM exits 0', async () => {
    const log = serve.log().trim().split('\n');
    expect(log.length).toBeGreaterThanOrEqual(20);
    for (const l of log) expect(l.split('\t')).toHaveLength(7);
    expect(log.some((l) => /\tPOST\t\/hooks\/acme\/email\/sendgrid\t403\t/.test(l))).toBe(true);
    expect(serve.log()).not.toContain('?');
    const r = await serve.stop('SIGTERM');
    expect(r.exitCode, serve.stderr()).toBe(0);
    expect(serve.stderr()).toMatch(/stopped after \d+ requests/);
  });
});
