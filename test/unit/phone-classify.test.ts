// Unit: how Twilio, Meta and SNS failures map to DESIGN §5 kinds, and the HTTP helpers the adapters share.
import { describe, expect, test } from 'vitest';
import { classifyTwilioError, whatsappContent } from '../../src/providers/twilio.js';
import { classifyMetaError, metaMessageBody } from '../../src/providers/meta-whatsapp.js';
import { classifySnsError } from '../../src/providers/sns.js';
import { joinEndpoint, parseEndpoint, retryAfterMs } from '../../src/providers/http.js';

const kindOf = (e: { kind: string; details: { optOut?: boolean; retryAfterMs?: number; code?: string } }) => [e.kind, e.details.optOut ?? false];

describe('twilio error classes', () => {
  test.each([
    [401, 20003, 'auth', false],
    [403, undefined, 'auth', false],
    [400, 21211, 'recipient', false],
    [400, 21614, 'recipient', false],
    [400, 21610, 'recipient', true],
    [429, 20429, 'rate_limited', false],
    [429, undefined, 'rate_limited', false],
    [500, undefined, 'transient', false],
    [503, 20500, 'transient', false],
    [400, 21606, 'config', false],
    [404, 20404, 'config', false],
  ])('HTTP %s code %s → %s (opt-out %s)', (status, code, kind, optOut) => {
    expect(kindOf(classifyTwilioError(status, code === undefined ? {} : { code, message: 'm' }))).toEqual([kind, optOut]);
  });

  test('Retry-After in seconds or as an HTTP date; code recorded', () => {
    const e = classifyTwilioError(429, { code: 20429, message: 'Too Many Requests' }, { 'retry-after': '2' });
    expect(e.details).toMatchObject({ retryAfterMs: 2000, code: '20429' });
    const now = new Date('2026-01-01T00:00:00Z');
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });

  test('WhatsApp templates: Content SID and numbered variables; other names refused', () => {
    const sid = `HX${'ab'.repeat(16)}`;
    expect(whatsappContent({ to: '+1', template: { name: sid, language: 'en', parameters: ['A', 'B'] } })).toEqual({ contentSid: sid, contentVariables: '{"1":"A","2":"B"}' });
    expect(whatsappContent({ to: '+1', template: { name: sid, language: 'en', parameters: [] } })).toEqual({ contentSid: sid });
    expect(whatsappContent({ to: '+1', text: 'hi' })).toEqual({ body: 'hi' });
    expect(() => whatsappContent({ to: '+1', template: { name: 'welcome', language: 'en', parameters: [] } })).toThrow(/Content SID/);
  });
});

describe('meta error classes', () => {
  test.each([
    [401, 190, 'auth', false],
    [403, 10, 'auth', false],
    [400, 131026, 'recipient', false],
    [400, 131047, 'recipient', false],
    [400, 131050, 'recipient', true],
    [429, 130429, 'rate_limited', false],
    [400, 131056, 'rate_limited', false],
    [500, 131000, 'transient', false],
    [502, undefined, 'transient', false],
    [400, 132001, 'config', false],
  ])('HTTP %s code %s → %s (opt-out %s)', (status, code, kind, optOut) => {
    const body = code === undefined ? 'Bad Gateway' : { error: { message: 'm', code } };
    expect(kindOf(classifyMetaError(status, body))).toEqual([kind, optOut]);
  });

  test('template body: language policy and body parameters; no components without parameters', () => {
    expect(metaMessageBody({ to: '+1415', template: { name: 'hello_world', language: 'en_US', parameters: [] } })).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '+1415',
      type: 'template',
      template: { name: 'hello_world', language: { code: 'en_US', policy: 'deterministic' } },
    });
  });
});

describe('sns error classes', () => {
  const aws = (name: string, status: number | undefined, message = 'm') => Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
  test.each([
    ['AuthorizationErrorException', 403, 'm', 'auth', false],
    ['InvalidClientTokenId', 403, 'm', 'auth', false],
    ['SignatureDoesNotMatch', 403, 'm', 'auth', false],
    ['InvalidParameterException', 400, 'Invalid parameter: PhoneNumber Reason: +1 is not valid to publish to', 'recipient', false],
    ['InvalidParameterException', 400, 'Invalid parameter: Message too long', 'config', false],
    ['OptedOutException', 400, 'm', 'recipient', true],
    ['ThrottledException', 429, 'm', 'rate_limited', false],
    ['Throttling', 400, 'm', 'rate_limited', false],
    ['InternalErrorException', 500, 'm', 'transient', false],
    ['ServiceUnavailable', 503, 'm', 'transient', false],
    ['KMSDisabledException', 400, 'm', 'config', false],
  ])('%s (HTTP %s) → %s', (name, status, message, kind, optOut) => {
    expect(kindOf(classifySnsError(aws(name, status, message)))).toEqual([kind, optOut]);
  });

  test('a refused connection is transient', () => {
    expect(classifySnsError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })).kind).toBe('transient');
  });
});

describe('endpoint setting', () => {
  test('base URLs with and without a path prefix; bad values named', () => {
    expect(joinEndpoint(parseEndpoint('http://127.0.0.1:4010'), '/v23.0/1/messages')).toBe('http://127.0.0.1:4010/v23.0/1/messages');
    expect(joinEndpoint(parseEndpoint('https://proxy.example/twilio/'), '/2010-04-01/Accounts/AC1.json')).toBe('https://proxy.example/twilio/2010-04-01/Accounts/AC1.json');
    expect(() => parseEndpoint('graph.facebook.com')).toThrow(/setting endpoint "graph.facebook.com" is not a URL/);
    expect(() => parseEndpoint('ftp://x')).toThrow(/http\(s\) base URL/);
  });
});
