// Unit: the signature checks against the providers' published examples and our own signatures, and what each
// parser makes of the providers' documented payloads.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { verifySendGridSignature, parseSendGridEvents } from '../../src/providers/webhooks/sendgrid.js';
import { verifyTwilioSignature, parseTwilioEvent, parseTwilioForm } from '../../src/providers/webhooks/twilio.js';
import { metaSignatureMatches, parseMetaChanges } from '../../src/providers/webhooks/meta.js';
import { verifySnsMessage, parseSnsNotification, snsCertFileName, snsStringToSign } from '../../src/providers/webhooks/sns.js';
import { WebhookRejection } from '../../src/providers/webhooks/types.js';
import { listUnsubscribeHeaders, readCorrelation, statusCallbackUrl } from '../../src/providers/tracking.js';
import { SENDGRID_VECTOR, metaSignature, sendGridSigner, snsSigner, twilioSignature } from '../helpers/events.js';

const rejects = async (p: Promise<unknown>, status: number) => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WebhookRejection);
  expect((err as WebhookRejection).status).toBe(status);
};

describe('SendGrid Signed Event Webhook', () => {
  const vector = { publicKey: SENDGRID_VECTOR.publicKey, body: Buffer.from(SENDGRID_VECTOR.payload), signature: SENDGRID_VECTOR.signature, timestamp: SENDGRID_VECTOR.timestamp };
  const at = Number(SENDGRID_VECTOR.timestamp) * 1000;

  test('the published test vector verifies; one byte less of the body (its trailing CRLF) does not', async () => {
    await verifySendGridSignature({ ...vector, nowMs: at + 1000, toleranceMs: 300_000 });
    await rejects(verifySendGridSignature({ ...vector, body: Buffer.from(SENDGRID_VECTOR.payload.trimEnd()), nowMs: at, toleranceMs: 300_000 }), 403);
  });

  test('a timestamp older than the tolerance is refused; no headers is 401', async () => {
    await rejects(verifySendGridSignature({ ...vector, nowMs: at + 301_000, toleranceMs: 300_000 }), 403);
    await rejects(verifySendGridSignature({ ...vector, signature: undefined, nowMs: at, toleranceMs: 300_000 }), 401);
  });

  test('a key pair of our own: signed body verifies, another key does not', async () => {
    const a = sendGridSigner();
    const b = sendGridSigner();
    const body = JSON.stringify([{ email: 'x@example.com', event: 'delivered', sg_event_id: 'e1', sg_message_id: 'M.1', timestamp: 1 }]);
    const h = a.headers(body);
    const args = { body: Buffer.from(body), signature: h['x-twilio-email-event-webhook-signature'], timestamp: h['x-twilio-email-event-webhook-timestamp'], nowMs: Date.now(), toleranceMs: 300_000 };
    await verifySendGridSignature({ ...args, publicKey: a.publicKey });
    await rejects(verifySendGridSignature({ ...args, publicKey: b.publicKey }), 403);
  });

  test('events: types, message id, correlation from custom args, hard and soft bounces, dropped for a bounced address', () => {
    const events = parseSendGridEvents(
      JSON.stringify([
        { email: 'Ana@Example.com', event: 'delivered', sg_event_id: 'd1', sg_message_id: 'XMSG.filter1', timestamp: 1700000000, sb_tenant: 'acme', sb_batch: 'b-20261201-0a0b0c0d', sb_row: '7' },
        { email: 'b@example.com', event: 'bounce', type: 'bounce', status: '5.1.1', reason: 'unknown user', sg_event_id: 'b1', sg_message_id: 'XMSG.f' },
        { email: 'c@example.com', event: 'bounce', type: 'blocked', status: '4.7.1', reason: 'try later', sg_event_id: 'b2', sg_message_id: 'XMSG.f' },
        { email: 'd@example.com', event: 'spamreport', sg_event_id: 's1', sg_message_id: 'XMSG.f' },
        'not an event',
      ]),
    );
    expect(events.map((e) => [e.key, e.type, e.recipient, e.messageId, e.action?.kind ?? null])).toEqual([
      ['sendgrid:d1', 'delivered', 'ana@example.com', 'XMSG', null],
      ['sendgrid:b1', 'bounced', 'b@example.com', 'XMSG', 'suppress'],
      ['sendgrid:b2', 'bounced', 'c@example.com', 'XMSG', 'soft-bounce'],
      ['sendgrid:s1', 'complained', 'd@example.com', 'XMSG', 'suppress'],
    ]);
    expect(events[0]!.correlation).toEqual({ tenantId: 'acme', batchId: 'b-20261201-0a0b0c0d', rowNo: 7 });
    expect(events[0]!.occurredAt?.toISOString()).toBe('2023-11-14T22:13:20.000Z');
    const [dropped] = parseSendGridEvents(SENDGRID_VECTOR.payload);
    expect(dropped).toMatchObject({ type: 'dropped', recipient: 'hello@world.com', messageId: 'LRzXl_NHStOGhQ4kofSm_A', action: { kind: 'suppress' } });
    expect(() => parseSendGridEvents('{"not":"an array"}')).toThrow(WebhookRejection);
  });
});

describe('Twilio X-Twilio-Signature', () => {
  // The example of https://www.twilio.com/docs/usage/webhooks/webhooks-security (auth token 12345).
  const url = 'https://mycompany.com/myapp.php?foo=1&bar=2';
  const params = { CallSid: 'CA1234567890ABCDE', Caller: '+12349013030', Digits: '1234', From: '+12349013030', To: '+18005551212' };

  test("the documented example's signature verifies, and our own computation gives it", async () => {
    expect(twilioSignature('12345', url, params)).toBe('0/KCTR6DLpKmkAf8muzZqo1nDgQ=');
    await verifyTwilioSignature({ authToken: '12345', signature: '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', url, body: Buffer.alloc(0), params });
    await rejects(verifyTwilioSignature({ authToken: '12345', signature: '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', url, body: Buffer.alloc(0), params: { ...params, Digits: '1235' } }), 403);
    await rejects(verifyTwilioSignature({ authToken: '54321', signature: '0/KCTR6DLpKmkAf8muzZqo1nDgQ=', url, body: Buffer.alloc(0), params }), 403);
    await rejects(verifyTwilioSignature({ authToken: '12345', url, body: Buffer.alloc(0), params }), 401);
  });

  test('status callbacks: 21610 is an opt-out, correlation from the callback URL; inbound STOP and START', () => {
    const [failed] = parseTwilioEvent(parseTwilioForm('MessageSid=SM1&MessageStatus=undelivered&ErrorCode=21610&To=%2B14155550100&From=%2B14155550199'), new URLSearchParams('sb_tenant=acme&sb_batch=b-1&sb_row=3'));
    expect(failed).toMatchObject({ key: 'twilio:SM1:undelivered', type: 'undelivered', recipient: '+14155550100', messageId: 'SM1', correlation: { tenantId: 'acme', batchId: 'b-1', rowNo: 3 }, action: { kind: 'suppress' } });
    const [stop] = parseTwilioEvent(parseTwilioForm('MessageSid=SM2&SmsStatus=received&Body=%20stop%20&From=whatsapp%3A%2B14155550100&To=whatsapp%3A%2B14155550199'), new URLSearchParams());
    expect(stop).toMatchObject({ key: 'twilio:SM2', type: 'opted-out', recipient: '+14155550100', action: { kind: 'suppress' } });
    const [start] = parseTwilioEvent(parseTwilioForm('MessageSid=SM3&SmsStatus=received&Body=START&From=%2B14155550100&To=%2B14155550199'), new URLSearchParams());
    expect(start).toMatchObject({ type: 'opted-in', action: { kind: 'opt-in' } });
  });
});

describe('Meta X-Hub-Signature-256', () => {
  test('HMAC-SHA256 of the raw body with the app secret, compared in constant time', () => {
    const body = Buffer.from('{"object":"whatsapp_business_account","entry":[]}');
    expect(metaSignatureMatches('s3cret', body, metaSignature('s3cret', body.toString()))).toBe(true);
    expect(metaSignatureMatches('other', body, metaSignature('s3cret', body.toString()))).toBe(false);
    expect(metaSignatureMatches('s3cret', body, 'sha256=00')).toBe(false);
    expect(metaSignatureMatches('s3cret', body, undefined)).toBe(false);
  });

  test('statuses with biz_opaque_callback_data and error 131050; inbound STOP', () => {
    const [change] = parseMetaChanges({
      entry: [
        {
          changes: [
            {
              value: {
                metadata: { phone_number_id: '1065' },
                statuses: [{ id: 'wamid.A', status: 'failed', timestamp: '1700000000', recipient_id: '447700900123', biz_opaque_callback_data: 'sb_tenant=acme&sb_batch=b-9&sb_row=2', errors: [{ code: 131050, title: 'stopped marketing' }] }],
                messages: [{ id: 'wamid.B', from: '447700900123', timestamp: '1700000001', type: 'text', text: { body: 'STOP' } }],
              },
            },
          ],
        },
      ],
    });
    expect(change!.phoneNumberId).toBe('1065');
    expect(change!.events.map((e) => [e.key, e.type, e.recipient, e.action?.kind])).toEqual([
      ['meta:wamid.A:failed:1700000000', 'failed', '+447700900123', 'suppress'],
      ['meta:wamid.B', 'opted-out', '+447700900123', 'suppress'],
    ]);
    expect(change!.events[0]!.correlation).toEqual({ tenantId: 'acme', batchId: 'b-9', rowNo: 2 });
  });
});

describe('Amazon SNS signatures', () => {
  test('SignatureVersion 1 and 2 verify with a pre-seeded certificate; a changed field or an off-domain URL does not', async () => {
    const signer = await snsSigner();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-sns-'));
    try {
      signer.seed(dir);
      expect(fs.existsSync(path.join(dir, snsCertFileName(signer.certUrl)))).toBe(true);
      const topic = 'arn:aws:sns:us-east-1:123456789012:ses-events';
      for (const v of ['1', '2'] as const) {
        const m = signer.message('Notification', topic, '{"notificationType":"Delivery"}', v);
        await verifySnsMessage(m, { cacheDir: dir, now: new Date() });
        await rejects(verifySnsMessage({ ...m, Message: '{"notificationType":"Bounce"}' }, { cacheDir: dir, now: new Date() }), 403);
      }
      const conf = signer.message('SubscriptionConfirmation', topic, 'You have chosen to subscribe');
      expect(snsStringToSign(conf)).toMatch(/^Message\n.*\nMessageId\n.*\nSubscribeURL\n.*\nTimestamp\n.*\nToken\n.*\nTopicArn\n.*\nType\nSubscriptionConfirmation\n$/s);
      await verifySnsMessage(conf, { cacheDir: dir, now: new Date() });
      const offDomain = { ...signer.message('Notification', topic, '{}'), SigningCertURL: 'https://sns.us-east-1.amazonaws.com.evil.test/x.pem' };
      await rejects(verifySnsMessage(offDomain, { cacheDir: dir, now: new Date() }), 403);
      await rejects(verifySnsMessage({ ...signer.message('Notification', topic, '{}'), SignatureVersion: '3' }, { cacheDir: dir, now: new Date() }), 403);
      // A certificate that is not in the cache is fetched; the fetcher's failure is a refusal, not a crash.
      const other = await snsSigner();
      await rejects(verifySnsMessage(other.message('Notification', topic, '{}'), { cacheDir: dir, now: new Date(), fetcher: () => Promise.reject(new Error('offline')) }), 403);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SES bounce (permanent, transient) and complaint notifications: one event per recipient', () => {
    const note = (ses: unknown) => ({ Type: 'Notification', MessageId: 'm-1', Timestamp: '2026-12-01T10:00:00.000Z', Message: JSON.stringify(ses) });
    const mail = { messageId: '0100-abc', destination: ['a@example.com', 'b@example.com'], headers: [{ name: 'X-Switchboard-Batch', value: 'b-20261201-00000001/4' }] };
    const hard = parseSnsNotification(note({ notificationType: 'Bounce', mail, bounce: { bounceType: 'Permanent', bounceSubType: 'General', bouncedRecipients: [{ emailAddress: 'A@example.com', diagnosticCode: 'smtp; 550 5.1.1' }] } }));
    expect(hard).toHaveLength(1);
    expect(hard[0]).toMatchObject({ key: 'sns:m-1:a@example.com', type: 'bounced', messageId: '0100-abc', recipient: 'a@example.com', action: { kind: 'suppress' }, correlation: { batchId: 'b-20261201-00000001', rowNo: 4 } });
    const soft = parseSnsNotification(note({ notificationType: 'Bounce', mail, bounce: { bounceType: 'Transient', bouncedRecipients: [{ emailAddress: 'b@example.com' }] } }));
    expect(soft[0]!.action?.kind).toBe('soft-bounce');
    const complaint = parseSnsNotification(note({ eventType: 'Complaint', mail: { ...mail, tags: { sb_tenant: ['acme'], sb_batch: ['b-2'], sb_row: ['9'] } }, complaint: { complainedRecipients: [{ emailAddress: 'a@example.com' }, { emailAddress: 'b@example.com' }], complaintFeedbackType: 'abuse' } }));
    expect(complaint.map((e) => [e.recipient, e.type, e.action?.kind])).toEqual([
      ['a@example.com', 'complained', 'suppress'],
      ['b@example.com', 'complained', 'suppress'],
    ]);
    expect(complaint[0]!.correlation).toEqual({ tenantId: 'acme', batchId: 'b-2', rowNo: 9 });
    expect(parseSnsNotification({ Type: 'Notification', MessageId: 'x', Message: 'Successfully validated SNS topic for Amazon SES event publishing.' })).toEqual([]);
  });
});

describe('tracking on the wire', () => {
  test('List-Unsubscribe only for bulk e-mail, One-Click only with the https link; status callback URL only with a public URL', () => {
    const t = { tenantId: 'acme', batchId: 'b-1', rowNo: 2, publicUrl: 'https://hooks.example.com', unsubscribeUrl: 'https://hooks.example.com/unsubscribe/b-1.2.x' };
    expect(listUnsubscribeHeaders(t, 'unsub@acme.test')).toEqual({
      'List-Unsubscribe': '<https://hooks.example.com/unsubscribe/b-1.2.x>, <mailto:unsub@acme.test?subject=unsubscribe>',
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    });
    expect(listUnsubscribeHeaders({ tenantId: 'acme', batchId: 'b-1', rowNo: 2 }, 'unsub@acme.test')).toEqual({ 'List-Unsubscribe': '<mailto:unsub@acme.test?subject=unsubscribe>' });
    expect(listUnsubscribeHeaders({ tenantId: 'acme' }, 'unsub@acme.test')).toEqual({});
    expect(statusCallbackUrl(t, 'acme/sms/twilio')).toBe('https://hooks.example.com/hooks/acme/sms/twilio?sb_tenant=acme&sb_batch=b-1&sb_row=2');
    expect(statusCallbackUrl({ tenantId: 'acme' }, 'acme/sms/twilio')).toBeUndefined();
    expect(readCorrelation((k) => ({ sb_tenant: 'Not A Slug', sb_batch: 'b-1', sb_row: '0' })[k])).toEqual({});
  });
});
