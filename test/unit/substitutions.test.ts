// Factoring rendered bodies into a shared skeleton plus per-message substitutions (SendGrid personalization
// batches): exact reconstruction, narrow gaps, the 10,000-byte limit, and the mail send body it yields.
import { describe, expect, test } from 'vitest';
import { factorStrings } from '../../src/providers/substitutions.js';
import { packMailSend } from '../../src/providers/sendgrid.js';
import { compileTemplate } from '../../src/core/templates.js';
import type { EmailMessage } from '../../src/providers/types.js';

function rebuild(literals: string[], gaps: string[]): string {
  return literals.reduce((acc, l, i) => (i === 0 ? l : acc + gaps[i - 1]! + l), '');
}

/** What SendGrid does with a personalization: replaces every substitution tag in the content by its value. */
function substitute(content: string, subs: Record<string, string> = {}): string {
  let out = content;
  for (const [k, v] of Object.entries(subs)) out = out.split(k).join(v);
  return out;
}

describe('factorStrings', () => {
  test('identical strings: one literal, no gaps', () => {
    expect(factorStrings(['same', 'same'])).toEqual({ literals: ['same'], gaps: [[], []] });
  });

  test('gaps are exactly the differing values', () => {
    const f = factorStrings(['Hello Ana, your code is C-1.\nBye Ana\n', 'Hello Bartholomew, your code is C-22.\nBye Bartholomew\n', 'Hello Cy, your code is C-333.\nBye Cy\n']);
    expect(f.literals).toEqual(['Hello ', ', your code is C-', '.\nBye ', '\n']);
    expect(f.gaps).toEqual([
      ['Ana', '1', 'Ana'],
      ['Bartholomew', '22', 'Bartholomew'],
      ['Cy', '333', 'Cy'],
    ]);
  });

  test('rendered HTML with a derived, re-wrapped text part comes back exactly for random rows', () => {
    const t = compileTemplate({
      subject: 'Hi {{name}}',
      body: '<html><body><h1>Hello {{name}}</h1>\n<p>Your order {{order}} ships {{#if express}}<b>tomorrow</b>{{else}}this week{{/if}}. ' +
        'This sentence is long enough that the derived plain-text part wraps it at a different place for a long name like {{name}}.</p>\n' +
        '<p><a href="https://example.com/u?e={{email}}">unsubscribe</a> &amp; more</p></body></html>\n',
      html: true,
    });
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const rows = Array.from({ length: 300 }, (_, i) => ({
      name: ['Ana', 'Bartholomew Featherstonehaugh', 'Zoë <Q> & "Co"', '😀 Émile', ''.padEnd(rnd(40), 'x') || 'y'][rnd(5)]!,
      order: String(rnd(100000)),
      express: rnd(2) ? 'yes' : '',
      email: `user${i}@example.com`,
    }));
    const rendered = rows.map((r) => t.render(r));
    for (const part of ['html', 'text'] as const) {
      const strings = rendered.map((r) => r[part]!);
      const f = factorStrings(strings, 10_000);
      strings.forEach((s, k) => expect(rebuild(f.literals, f.gaps[k]!)).toBe(s));
      // The shared skeleton keeps the template's literal text; the gaps stay small.
      expect(f.literals.join('')).toContain(part === 'html' ? '<p><a href="https://example.com/u?e=user' : 'Your order ');
      expect(Math.max(...f.gaps.map((g) => g!.join('').length))).toBeLessThan(400);
    }
  });

  test('a string too different from the first is left out; the others keep narrow gaps', () => {
    const base = (n: string) => `<p>Dear ${n}</p>\n${'<p>same paragraph</p>\n'.repeat(50)}`;
    const odd = 'x'.repeat(12_000);
    const f = factorStrings([base('A'), odd, base('B')], 10_000);
    expect(f.gaps[1]).toBeUndefined();
    expect(f.gaps[0]).toEqual(['A']);
    expect(f.gaps[2]).toEqual(['B']);
  });
});

describe('packMailSend', () => {
  const from = { email: 'noreply@acme.test', name: 'Acme' };
  const msg = (to: string, name: string, extra: Partial<EmailMessage> = {}): EmailMessage => ({
    to,
    subject: `Hi ${name}`,
    text: `Hello ${name}\n`,
    html: `<p>Hello ${name}</p>\n`,
    headers: { 'X-Switchboard-Batch': `b/${to}` },
    ...extra,
  });

  test('one personalization per message, content once, values as substitutions; SendGrid substitution gives back each rendered body', () => {
    const messages = [msg('a@example.com', 'Ana'), msg('b@example.com', 'Bo &amp; Cy')];
    const pack = packMailSend(messages, from, false, '0a0b0c0d');
    expect(pack.included).toEqual([0, 1]);
    expect(pack.deferred).toEqual([]);
    expect(pack.body).toEqual({
      from,
      content: [
        { type: 'text/plain', value: 'Hello -sb0a0b0c0dt0-\n' },
        { type: 'text/html', value: '<p>Hello -sb0a0b0c0dh0-</p>\n' },
      ],
      personalizations: [
        { to: [{ email: 'a@example.com' }], subject: 'Hi Ana', headers: { 'X-Switchboard-Batch': 'b/a@example.com' }, substitutions: { '-sb0a0b0c0dt0-': 'Ana', '-sb0a0b0c0dh0-': 'Ana' } },
        { to: [{ email: 'b@example.com' }], subject: 'Hi Bo &amp; Cy', headers: { 'X-Switchboard-Batch': 'b/b@example.com' }, substitutions: { '-sb0a0b0c0dt0-': 'Bo &amp; Cy', '-sb0a0b0c0dh0-': 'Bo &amp; Cy' } },
      ],
    });
    pack.body.personalizations.forEach((p, i) => {
      expect(substitute(pack.body.content[0]!.value, p.substitutions)).toBe(messages[i]!.text);
      expect(substitute(pack.body.content[1]!.value, p.substitutions)).toBe(messages[i]!.html);
    });
  });

  test('defers messages over the 10,000-byte substitution limit, of another shape, and past 1000', () => {
    const big = 'y'.repeat(10_500);
    const messages = [msg('a@example.com', 'Ana'), msg('b@example.com', big), msg('c@example.com', 'Cy', { html: undefined }), msg('d@example.com', 'Di')];
    const pack = packMailSend(messages, from, true);
    expect(pack.included).toEqual([0, 3]);
    expect(pack.deferred.map((d) => d.index)).toEqual([1, 2]);
    expect(pack.deferred[0]!.reason).toMatch(/10000 bytes/);
    expect(pack.body.mail_settings).toEqual({ sandbox_mode: { enable: true } });
    const many = Array.from({ length: 1001 }, (_, i) => msg(`u${i}@example.com`, `U${i}`));
    const p2 = packMailSend(many, from, false);
    expect(p2.included).toHaveLength(1000);
    expect(p2.deferred).toEqual([{ index: 1000, reason: 'over 1000 personalizations per request' }]);
  });

  test('a body over 30 MB keeps the personalizations that fit, in order, and defers the rest', () => {
    // Subjects are per personalization: four of 9 MB make a 36 MB body, so the fourth must wait.
    const subject = (c: string) => c.repeat(9_000_000);
    const messages = ['a', 'b', 'c', 'd'].map((c) => msg(`${c}@example.com`, c, { subject: subject(c) }));
    const pack = packMailSend(messages, from, false);
    expect(pack.included).toEqual([0, 1, 2]);
    expect(pack.deferred).toEqual([{ index: 3, reason: 'the request would exceed 30000000 bytes' }]);
    expect(pack.body.personalizations.map((p) => p.to[0]!.email)).toEqual(['a@example.com', 'b@example.com', 'c@example.com']);
    expect(Buffer.byteLength(JSON.stringify(pack.body))).toBeLessThanOrEqual(30_000_000);
    // Under the limit the same messages all go (the body is measured once, not cut).
    expect(packMailSend(messages.slice(0, 3), from, false).deferred).toEqual([]);
  });

  test('a substitution tag that already occurs in the content is not used', () => {
    const messages = [msg('a@example.com', '-sb00000000 Ana'), msg('b@example.com', 'Bo')];
    const pack = packMailSend(messages, from, false, '00000000');
    expect(pack.body.content[0]!.value).not.toContain('-sb00000000t');
    pack.body.personalizations.forEach((p, i) => expect(substitute(pack.body.content[1]!.value, p.substitutions)).toBe(messages[i]!.html));
  });
});
