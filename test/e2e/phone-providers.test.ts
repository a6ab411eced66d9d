// e2e: the sms/whatsapp adapters (twilio, twilio-whatsapp, meta-whatsapp, sns) through the built binary against
// local provider servers reached with the `endpoint` setting. Twilio and Meta requests are checked by Prism
// against the providers' published specs; SNS requests by a Query-protocol server with a SigV4 check. Each test
// asserts the exact payload sent, the message id recorded, and `provider verify` with a good and a bad credential.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit, parseBatchOutput, readSuppressions, sendPhoneBatch } from '../helpers/setup.js';
import { startPrism, type PrismServer } from '../helpers/prism.js';
import { metaError, snsError, startMetaStub, startSnsStub, startTwilioStub } from '../helpers/phone-stubs.js';

const hex = (n: number) => randomBytes(n).toString('hex');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let twilioPrism: PrismServer;
let metaPrism: PrismServer;
beforeAll(async () => {
  [twilioPrism, metaPrism] = await Promise.all([startPrism('twilio_api_v2010.json'), startPrism('meta_business-messaging-api_v23.0.yaml')]);
});
afterAll(async () => {
  await Promise.all([twilioPrism?.close(), metaPrism?.close()]);
});

async function workspace(): Promise<Workspace> {
  const ws = makeWorkspace();
  cleanups.push(() => ws.cleanup());
  await addTenant(ws, 'acme');
  return ws;
}

interface TestSend {
  status: string;
  provider: string;
  messageId: string;
  fallback: boolean;
}

async function verify(ws: Workspace, ref: string): Promise<{ exitCode: number; detail: string }> {
  const r = await ws.run(['provider', 'verify', ref, '--json']);
  return { exitCode: r.exitCode, detail: r.stdout + r.stderr };
}

describe('twilio (sms) and twilio-whatsapp', () => {
  test('sms: To/From/Body as sent, sid recorded; verify with the right and a revoked token', async () => {
    const accountSid = `AC${hex(16)}`;
    const token = hex(16);
    const stub = await startTwilioStub({ prism: twilioPrism, accountSid, authToken: token });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'twilio', '--set', `accountSid=${accountSid}`, '--set', 'from=+14155550100', '--set', `endpoint=${stub.url}`, '--secret-env', 'authToken=TW_TOKEN'],
        { env: { TW_TOKEN: token } },
      ),
      0,
      'provider add twilio',
    );
    const sent = parseJson<TestSend>(
      expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'sms', '--to', '+1 415 555 2671', '--body', 'Your code is 123456', '--json']), 0, 'send test'),
    );
    expect(stub.sends).toHaveLength(1);
    expect(stub.sends[0]!.payload).toEqual({ To: '+14155552671', From: '+14155550100', Body: 'Your code is 123456' });
    expect(sent).toMatchObject({ status: 'sent', provider: 'acme/sms/twilio', messageId: stub.sends[0]!.messageId, fallback: false });
    expect(sent.messageId).toMatch(/^SM[0-9a-f]{32}$/);

    expect(await verify(ws, 'acme/sms/twilio')).toMatchObject({ exitCode: 0 });
    stub.setAuthToken(hex(16)); // the token in the store is now revoked
    const bad = await verify(ws, 'acme/sms/twilio');
    expect(bad.exitCode).toBe(1);
    expect(bad.detail).toMatch(/auth: .*20003/);
    expect(stub.verifies).toEqual([200, 401]);
    expect(stub.violations).toEqual([]);
    // The token never shows up in output.
    expect(bad.detail).not.toContain(token);
  });

  test('sms via a messaging service: MessagingServiceSid instead of From; exactly one of them is required', async () => {
    const accountSid = `AC${hex(16)}`;
    const service = `MG${hex(16)}`;
    const stub = await startTwilioStub({ prism: twilioPrism, accountSid, authToken: 'tok-1' });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    const base = ['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'twilio', '--set', `accountSid=${accountSid}`, '--set', `endpoint=${stub.url}`, '--secret-env', 'authToken=T'];
    const both = await ws.run([...base, '--set', 'from=+14155550100', '--set', `messagingServiceSid=${service}`], { env: { T: 'tok-1' } });
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toMatch(/exactly one of --set from=… and --set messagingServiceSid=…/);
    const badSid = await ws.run([...base, '--set', 'from=+14155550100', '--name', 'x'].map((a) => (a === `accountSid=${accountSid}` ? 'accountSid=AC123' : a)), { env: { T: 'tok-1' } });
    expect(badSid.exitCode).toBe(2);
    expect(badSid.stderr).toMatch(/accountSid: "AC123" is not AC followed by 32 hex digits/);
    expectExit(await ws.run([...base, '--set', `messagingServiceSid=${service}`], { env: { T: 'tok-1' } }), 0, 'add with service');
    expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'sms', '--to', '+447911123456', '--body', 'hi', '--json']), 0, 'send test');
    // With a public URL known (here for one command), the message asks Twilio for status callbacks at /hooks/<ref>.
    const env = { SWITCHBOARD_PUBLIC_URL: 'https://hooks.acme.test' };
    expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'sms', '--to', '+447911123456', '--body', 'hi', '--json'], { env }), 0, 'send test with a public URL');
    expect(stub.sends.map((s) => s.payload)).toEqual([
      { To: '+447911123456', MessagingServiceSid: service, Body: 'hi' },
      { To: '+447911123456', MessagingServiceSid: service, Body: 'hi', StatusCallback: 'https://hooks.acme.test/hooks/acme/sms/twilio?sb_tenant=acme' },
    ]);
    expect(stub.violations).toEqual([]);
  });

  test('whatsapp: whatsapp: addresses; text as Body, templates as ContentSid + ContentVariables', async () => {
    const accountSid = `AC${hex(16)}`;
    const stub = await startTwilioStub({ prism: twilioPrism, accountSid, authToken: 'tok-2' });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'acme', '--channel', 'whatsapp', '--kind', 'twilio-whatsapp', '--set', `accountSid=${accountSid}`, '--set', 'from=+14155238886', '--set', `endpoint=${stub.url}`, '--secret-env', 'authToken=T'],
        { env: { T: 'tok-2' } },
      ),
      0,
      'add twilio-whatsapp',
    );
    expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'whatsapp', '--to', '+14155552671', '--body', 'hello there', '--json']), 0, 'text');
    const contentSid = `HX${hex(16)}`;
    const csv = ws.file('wa.csv', 'phone,first_name,day\n+14155552672,Ada,Tuesday\n+14155552673,"Bo ""B""",Friday\n');
    const r = expectExit(
      await ws.run(['send', 'batch', '--tenant', 'acme', '--channel', 'whatsapp', '--csv', csv, '--template-name', contentSid, '--template-lang', 'en', '--template-param', 'first_name', '--template-param', 'day', '--json']),
      0,
      'template batch',
    );
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 2, sentCount: 2, failedCount: 0 });
    const byTo = Object.fromEntries(stub.sends.map((s) => [s.to, s]));
    expect(byTo['whatsapp:+14155552671']!.payload).toEqual({ To: 'whatsapp:+14155552671', From: 'whatsapp:+14155238886', Body: 'hello there' });
    expect(byTo['whatsapp:+14155552672']!.payload).toEqual({ To: 'whatsapp:+14155552672', From: 'whatsapp:+14155238886', ContentSid: contentSid, ContentVariables: '{"1":"Ada","2":"Tuesday"}' });
    expect(JSON.parse(String(byTo['whatsapp:+14155552673']!.payload.ContentVariables))).toEqual({ 1: 'Bo "B"', 2: 'Friday' });
    for (const row of rows) expect(row.messageId).toBe(byTo[`whatsapp:${row.recipient}`]!.messageId);
    expect(stub.violations).toEqual([]);

    // A template name that is not a Content SID is a configuration problem, reported as such; nothing is sent.
    const before = stub.sends.length;
    const wrong = await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'whatsapp', '--to', '+14155552671', '--template-name', 'appointment_reminder', '--json']);
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stdout + wrong.stderr).toMatch(/Content SID/);
    expect(stub.sends).toHaveLength(before);
  });
});

describe('meta-whatsapp', () => {
  test('text and template JSON as sent (recipient_type, language.policy), wamid recorded; verify good and bad token', async () => {
    const token = `EAA${hex(20)}`;
    const stub = await startMetaStub({ prism: metaPrism, phoneNumberId: '106540352242922', accessToken: token });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'acme', '--channel', 'whatsapp', '--kind', 'meta-whatsapp', '--set', 'phoneNumberId=106540352242922', '--set', `endpoint=${stub.url}`, '--secret-env', 'accessToken=META_TOKEN'],
        { env: { META_TOKEN: token } },
      ),
      0,
      'add meta-whatsapp',
    );
    const text = parseJson<TestSend>(expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'whatsapp', '--to', '+14155552671', '--body', 'Hello!', '--json']), 0, 'text'));
    const tpl = parseJson<TestSend>(
      expectExit(
        await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'whatsapp', '--to', '+14155552672', '--template-name', 'appointment_reminder', '--template-lang', 'en_GB', '--template-param', 'Ada', '--template-param', 'Tuesday', '--json']),
        0,
        'template',
      ),
    );
    // biz_opaque_callback_data carries the tenant, echoed in status webhooks (delivery events).
    expect(stub.sends.map((s) => s.payload)).toEqual([
      { messaging_product: 'whatsapp', recipient_type: 'individual', to: '+14155552671', type: 'text', text: { body: 'Hello!', preview_url: false }, biz_opaque_callback_data: 'sb_tenant=acme' },
      {
        messaging_product: 'whatsapp',
        recipient_type: 'individual',
        biz_opaque_callback_data: 'sb_tenant=acme',
        to: '+14155552672',
        type: 'template',
        template: {
          name: 'appointment_reminder',
          language: { code: 'en_GB', policy: 'deterministic' },
          components: [{ type: 'body', parameters: [{ type: 'text', text: 'Ada' }, { type: 'text', text: 'Tuesday' }] }],
        },
      },
    ]);
    expect([text.messageId, tpl.messageId]).toEqual(stub.sends.map((s) => s.messageId));
    expect(text.messageId).toMatch(/^wamid\./);
    expect(stub.requests.every((r) => r.headers.authorization === `Bearer ${token}` && /^switchboard\/\d+\.\d+\.\d+$/.test(String(r.headers['user-agent'])))).toBe(true);

    expect(await verify(ws, 'acme/whatsapp/meta-whatsapp')).toMatchObject({ exitCode: 0 });
    expectExit(await ws.run(['provider', 'update', 'acme/whatsapp/meta-whatsapp', '--secret-env', 'accessToken=T2'], { env: { T2: `EAA${hex(20)}` } }), 0, 'replace token');
    const bad = await verify(ws, 'acme/whatsapp/meta-whatsapp');
    expect(bad.exitCode).toBe(1);
    expect(bad.detail).toMatch(/auth: .*190/);
    expect(stub.verifies).toEqual([200, 401]);
    expect(stub.violations).toEqual([]);
  });
});

describe('error classes through the binary', () => {
  test('meta-whatsapp: 131050 opt-out is suppressed, 131026 fails the row, 130429 is retried on the same provider', async () => {
    const token = `EAA${hex(20)}`;
    const stub = await startMetaStub({
      prism: metaPrism,
      phoneNumberId: '106540352242922',
      accessToken: token,
      script: {
        '+14155550011': [metaError(400, 131050, 'Unable to deliver message. User has stopped marketing messages')],
        '+14155550012': [metaError(400, 131026, 'Message undeliverable')],
        '+14155550013': [metaError(429, 130429, 'Rate limit hit')],
      },
    });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    expectExit(
      await ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'whatsapp', '--kind', 'meta-whatsapp', '--set', 'phoneNumberId=106540352242922', '--set', `endpoint=${stub.url}`, '--secret-env', 'accessToken=T'], { env: { T: token } }),
      0,
      'add meta',
    );
    const r = expectExit(await sendPhoneBatch(ws, 'whatsapp', ['+14155550011', '+14155550012', '+14155550013']), 3, 'batch');
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 3, sentCount: 1, failedCount: 2 });
    expect(rows.find((x) => x.recipient === '+14155550013')).toMatchObject({ state: 'sent', provider: 'acme/whatsapp/meta-whatsapp' });
    expect(stub.sends.filter((x) => x.to === '+14155550013').map((x) => x.status)).toEqual([429, 200]);
    expect(stub.sends.filter((x) => x.to !== '+14155550013').map((x) => x.status)).toEqual([400, 400]);
    expect(readSuppressions(ws.store, 'acme')).toEqual([{ channel: 'whatsapp', address: '+14155550011', source: 'acme/whatsapp/meta-whatsapp' }]);
    expect(stub.violations).toEqual([]);
  });

  test('sns: OptedOut is suppressed, an invalid PhoneNumber fails the row, Throttling is retried on the same provider', async () => {
    const accessKeyId = `AKTEST${hex(7).toUpperCase()}`;
    const secret = hex(20);
    const stub = await startSnsStub({
      accessKeyId,
      secretAccessKey: secret,
      script: {
        '+14155550021': [snsError(400, 'OptedOut', 'Phone number is opted out')],
        '+14155550022': [snsError(400, 'InvalidParameter', 'Invalid parameter: PhoneNumber Reason: +14155550022 is not valid to publish to')],
        '+14155550023': [snsError(400, 'Throttling', 'Rate exceeded')],
      },
    });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    expectExit(
      await ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'sns', '--set', 'region=us-east-1', '--set', `accessKeyId=${accessKeyId}`, '--set', `endpoint=${stub.url}`, '--secret-env', 'secretAccessKey=S'], { env: { S: secret } }),
      0,
      'add sns',
    );
    const r = expectExit(await sendPhoneBatch(ws, 'sms', ['+14155550021', '+14155550022', '+14155550023']), 3, 'batch');
    const { summary, rows } = parseBatchOutput(r);
    expect(summary).toMatchObject({ rowCount: 3, sentCount: 1, failedCount: 2 });
    expect(rows.find((x) => x.recipient === '+14155550023')).toMatchObject({ state: 'sent', provider: 'acme/sms/sns' });
    expect(stub.sends.filter((x) => x.to === '+14155550023').map((x) => x.status)).toEqual([400, 200]);
    expect(stub.sends.filter((x) => x.to !== '+14155550023').map((x) => x.status)).toEqual([400, 400]);
    expect(readSuppressions(ws.store, 'acme')).toEqual([{ channel: 'sms', address: '+14155550021', source: 'acme/sms/sns' }]);
    expect(stub.violations).toEqual([]);
  });
});

describe('sns', () => {
  test('Publish with PhoneNumber, Message and sender attributes, signed; MessageId recorded; verify good and bad secret', async () => {
    const accessKeyId = `AKTEST${hex(7).toUpperCase()}`;
    const secret = hex(20);
    const stub = await startSnsStub({ accessKeyId, secretAccessKey: secret });
    cleanups.push(() => stub.close());
    const ws = await workspace();
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'sns', '--set', 'region=eu-west-1', '--set', `accessKeyId=${accessKeyId}`, '--set', 'senderId=ACME', '--set', 'originationNumber=+447700900001', '--set', `endpoint=${stub.url}`, '--secret-env', 'secretAccessKey=AWS_SECRET'],
        { env: { AWS_SECRET: secret } },
      ),
      0,
      'add sns',
    );
    const sent = parseJson<TestSend>(expectExit(await ws.run(['send', 'test', '--tenant', 'acme', '--channel', 'sms', '--to', '07911 123456', '--default-region', 'GB', '--body', 'Reminder: 9:30 & bring ID', '--json']), 0, 'send test'));
    expect(stub.sends).toHaveLength(1);
    const p = stub.sends[0]!.payload;
    expect(p).toMatchObject({ Action: 'Publish', Version: '2010-03-31', PhoneNumber: '+447911123456', Message: 'Reminder: 9:30 & bring ID' });
    const attrs = Object.fromEntries(
      [1, 2].map((i) => [p[`MessageAttributes.entry.${i}.Name`], { type: p[`MessageAttributes.entry.${i}.Value.DataType`], value: p[`MessageAttributes.entry.${i}.Value.StringValue`] }]),
    );
    expect(attrs).toEqual({ 'AWS.SNS.SMS.SenderID': { type: 'String', value: 'ACME' }, 'AWS.MM.SMS.OriginationNumber': { type: 'String', value: '+447700900001' } });
    expect(sent).toMatchObject({ status: 'sent', provider: 'acme/sms/sns', messageId: stub.sends[0]!.messageId });

    expect(await verify(ws, 'acme/sms/sns')).toMatchObject({ exitCode: 0 });
    expectExit(await ws.run(['provider', 'update', 'acme/sms/sns', '--secret-env', 'secretAccessKey=S2'], { env: { S2: hex(20) } }), 0, 'replace secret');
    const bad = await verify(ws, 'acme/sms/sns');
    expect(bad.exitCode).toBe(1);
    expect(bad.detail).toMatch(/auth: .*SignatureDoesNotMatch/);
    expect(stub.verifies).toEqual([200, 403]);
    expect(stub.violations).toEqual([]);
  });
});
