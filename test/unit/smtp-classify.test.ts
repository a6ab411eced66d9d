import { describe, expect, it } from 'vitest';
import { classifySmtpError } from '../../src/providers/smtp.js';

const err = (fields: Record<string, unknown>) => Object.assign(new Error(String(fields.response ?? 'x')), fields);

describe('classifySmtpError (DESIGN §5 kinds)', () => {
  it.each([
    [{ code: 'EAUTH', responseCode: 535, command: 'AUTH PLAIN', response: '535 5.7.8 bad credentials' }, 'auth'],
    [{ code: 'ENOAUTH' }, 'auth'],
    [{ code: 'EENVELOPE', responseCode: 550, command: 'RCPT TO', response: '550 5.1.1 no such user' }, 'recipient'],
    [{ code: 'EENVELOPE', responseCode: 553, command: 'RCPT TO', response: '553 bad address' }, 'recipient'],
    [{ code: 'EENVELOPE', responseCode: 550, command: 'MAIL FROM', response: '550 sender not allowed' }, 'config'],
    [{ code: 'EENVELOPE', responseCode: 452, command: 'RCPT TO', response: '452 too many recipients' }, 'transient'],
    [{ code: 'EMESSAGE', responseCode: 451, command: 'DATA', response: '451 try later' }, 'transient'],
    [{ code: 'EPROTOCOL', responseCode: 421, response: '421 too busy' }, 'transient'],
    [{ code: 'EMESSAGE', responseCode: 554, command: 'DATA', response: '554 rejected' }, 'config'],
    [{ code: 'ECONNECTION', message: 'connect ECONNREFUSED' }, 'transient'],
    [{ code: 'ETIMEDOUT' }, 'transient'],
    [{ code: 'ETLS', message: 'self signed certificate' }, 'config'],
  ])('%o → %s', (fields, kind) => {
    const e = classifySmtpError(err(fields));
    expect(e.kind).toBe(kind);
  });

  it('keeps the reply code', () => {
    expect(classifySmtpError(err({ code: 'EAUTH', responseCode: 535 })).details.code).toBe('535');
  });
});
