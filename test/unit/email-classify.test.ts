import { describe, expect, it } from 'vitest';
import { classifySendGridError } from '../../src/providers/sendgrid.js';
import { classifySesError } from '../../src/providers/ses.js';

/** What @sendgrid/helpers ResponseError looks like: HTTP status in `code`, body and headers under `response`. */
const sg = (status: number, errors: Array<{ message: string; field?: string | null }> = [], headers: Record<string, string> = {}) =>
  Object.assign(new Error('x'), { code: status, response: { headers, body: { errors } } });

const NOW = 1_700_000_000_000;

describe('classifySendGridError (DESIGN §5 kinds)', () => {
  it.each([
    [sg(401, [{ message: 'The provided authorization grant is invalid, expired, or revoked', field: null }]), 'auth'],
    [sg(403, [{ message: 'access forbidden', field: null }]), 'auth'],
    [sg(403, [{ message: 'The from address does not match a verified Sender Identity.', field: 'from' }]), 'config'],
    [sg(400, [{ message: 'Does not contain a valid address.', field: 'personalizations.0.to.0.email' }]), 'recipient'],
    [sg(400, [{ message: 'Invalid cc', field: 'personalizations[1].cc' }]), 'recipient'],
    [sg(400, [{ message: 'The subject is required.', field: 'subject' }]), 'config'],
    [sg(400, []), 'config'],
    [sg(413), 'config'],
    [sg(500), 'transient'],
    [sg(503), 'transient'],
    [sg(429, [{ message: 'too many requests', field: null }]), 'rate_limited'],
    [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'transient'],
    [Object.assign(new Error('timeout of 30000ms exceeded'), { code: 'ECONNABORTED' }), 'transient'],
    [new Error('Expected `to` to be an object'), 'config'],
  ])('%#: %s', (err, kind) => {
    expect(classifySendGridError(err, NOW).kind).toBe(kind);
  });

  it('waits until X-RateLimit-Reset (Unix seconds), never a negative time', () => {
    const reset = Math.floor(NOW / 1000) + 3;
    expect(classifySendGridError(sg(429, [], { 'x-ratelimit-reset': String(reset) }), NOW).details.retryAfterMs).toBe(reset * 1000 - NOW);
    expect(classifySendGridError(sg(429, [], { 'x-ratelimit-reset': String(reset - 10) }), NOW).details.retryAfterMs).toBe(0);
    expect(classifySendGridError(sg(429), NOW).details.retryAfterMs).toBeUndefined();
  });

  it('keeps the status and names the field in the message', () => {
    const e = classifySendGridError(sg(400, [{ message: 'Does not contain a valid address.', field: 'personalizations.0.to.0.email' }]), NOW);
    expect(e.details.code).toBe('400');
    expect(e.message).toBe('SendGrid refused the recipient (400): Does not contain a valid address. (personalizations.0.to.0.email)');
  });
});

/** What the AWS SDK v3 throws: the error code in `name`, the HTTP status in `$metadata`. */
const aws = (name: string, status: number | undefined, message = 'x', fault: 'client' | 'server' = 'client') =>
  Object.assign(new Error(message), { name, $fault: fault, $metadata: status === undefined ? {} : { httpStatusCode: status } });

describe('classifySesError (DESIGN §5 kinds)', () => {
  it.each([
    [aws('MessageRejected', 400, 'Email address is not verified. The following identities failed the check in region EU-WEST-1: bo@example.com'), 'recipient'],
    [aws('MessageRejected', 400, 'Illegal address'), 'recipient'],
    [aws('MessageRejected', 400, 'Email address is not verified. The following identities failed the check in region EU-WEST-1: noreply@acme.test'), 'config'],
    [aws('MailFromDomainNotVerifiedException', 400), 'config'],
    [aws('AccountSuspendedException', 400), 'config'],
    [aws('SendingPausedException', 400), 'config'],
    [aws('NotFoundException', 404), 'config'],
    [aws('NotAuthorized', 400), 'auth'],
    [aws('AccessDeniedException', 403), 'auth'],
    [aws('InvalidClientTokenId', 403), 'auth'],
    [aws('UnrecognizedClientException', 403), 'auth'],
    [aws('SignatureDoesNotMatch', 403), 'auth'],
    [aws('TooManyRequestsException', 429), 'rate_limited'],
    [aws('ThrottlingException', 400), 'rate_limited'],
    [aws('LimitExceededException', 400), 'rate_limited'],
    [aws('InternalFailure', 500, 'x', 'server'), 'transient'],
    [aws('ServiceUnavailable', 503, 'x', 'server'), 'transient'],
    [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED', name: 'Error' }), 'transient'],
    [aws('SomethingNew', 400), 'config'],
  ])('%#: %s', (err, kind) => {
    expect(classifySesError(err, 'bo@example.com').kind).toBe(kind);
  });

  it('keeps the error code', () => {
    expect(classifySesError(aws('TooManyRequestsException', 429)).details.code).toBe('TooManyRequestsException');
  });
});
