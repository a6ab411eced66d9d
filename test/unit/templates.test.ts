import { describe, expect, it } from 'vitest';
import { compileTemplate, isHtmlTemplate } from '../../src/core/templates.js';
import { UsageError } from '../../src/errors.js';

describe('templates', () => {
  it('finds required and optional variables', () => {
    const t = compileTemplate({
      subject: 'Hi {{first_name}}',
      body: '{{greeting}} {{#if note}}{{note}} {{vip_name}}{{/if}}{{#each items}}{{label}}{{/each}} {{upper clinic}} {{@index}}',
      html: false,
    });
    expect(t.required).toEqual(['clinic', 'first_name', 'greeting', 'items']);
    expect(t.optional).toEqual(['note', 'vip_name']);
  });

  it('escapes values in HTML bodies and derives a text part; plain text is not escaped', () => {
    const html = compileTemplate({ subject: 'For {{name}}', body: '<p>Hello <b>{{name}}</b></p>', html: true });
    const r = html.render({ name: 'Tom & <Jerry>' });
    expect(r.html).toBe('<p>Hello <b>Tom &amp; &lt;Jerry&gt;</b></p>');
    expect(r.text).toContain('Hello Tom & <Jerry>');
    expect(r.subject).toBe('For Tom & <Jerry>');
    const text = compileTemplate({ subject: 's', body: 'Hello {{name}}', html: false });
    expect(text.render({ name: 'Tom & Jerry' })).toEqual({ subject: 's', text: 'Hello Tom & Jerry' });
  });

  it('folds whitespace and newlines out of subjects (no header injection)', () => {
    const t = compileTemplate({ subject: 'Hi {{name}}', body: 'x', html: false });
    expect(t.render({ name: 'a\r\nBcc: evil@example.com' }).subject).toBe('Hi a Bcc: evil@example.com');
  });

  it('reports a syntax error naming the flag', () => {
    expect(() => compileTemplate({ subject: 'Hi {{name', body: 'x', html: false })).toThrow(UsageError);
    expect(() => compileTemplate({ subject: 'Hi {{name', body: 'x', html: false })).toThrow(/--subject/);
    expect(() => compileTemplate({ subject: 'ok', body: '{{#if x}}', html: false })).toThrow(/--template-file/);
  });

  it('changes its hash with any source change', () => {
    const a = compileTemplate({ subject: 'a', body: 'b', html: false }).hash;
    expect(compileTemplate({ subject: 'a', body: 'b', html: true }).hash).not.toBe(a);
    expect(compileTemplate({ subject: 'a ', body: 'b', html: false }).hash).not.toBe(a);
  });

  it('recognises HTML template file names', () => {
    expect(isHtmlTemplate('x.html')).toBe(true);
    expect(isHtmlTemplate('x.HTM')).toBe(true);
    expect(isHtmlTemplate('x.html.hbs')).toBe(true);
    expect(isHtmlTemplate('x.txt')).toBe(false);
    expect(isHtmlTemplate('x.hbs')).toBe(false);
  });
});
