// Unit tests for the logic of domain authentication: SPF lookup counting, DMARC parsing, --resolver parsing,
// the zone-file snippet, poll backoff and domain names. DNS answers come from a table here; the real DNS
// path is covered end to end against dnsmasq (test/e2e/domains.test.ts).
import { describe, expect, it } from 'vitest';
import { checkDmarc, checkSpf, parseResolver, spfLookups, type DnsLookup } from '../../src/core/dns-check.js';
import { checkDomainName, pollDelay, zoneSnippet, type Domain } from '../../src/core/domains.js';

function table(txt: Record<string, string[]>): DnsLookup {
  const none = async () => ({ found: [] as string[] });
  return { server: 'table', cname: none, mx: none, txt: async (host) => ({ found: txt[host] ?? [] }) };
}

describe('SPF', () => {
  it('counts include, redirect, a, mx, ptr and exists recursively; ip4/ip6/all cost nothing', async () => {
    const dns = table({
      'inc.test': ['v=spf1 a:x.test mx/24 ip4:192.0.2.0/24 redirect=red.test'],
      'red.test': ['v=spf1 exists:%{i}.x.test ptr include:sendgrid.net -all'],
      'sendgrid.net': ['v=spf1 ip4:167.89.0.0/17 ~all'],
    });
    const r = await spfLookups(dns.txt, 'v=spf1 include:inc.test ip6:2001:db8::/32 ~all', 'include:sendgrid.net');
    // include:inc.test, a:x.test, mx/24, redirect=red.test, exists, ptr, include:sendgrid.net
    expect(r).toEqual({ lookups: 7, includesProvider: true, problems: [] });
  });

  it('states: missing, more than one record, too many lookups, no provider include, ok', async () => {
    const inc = (n: number) => Array.from({ length: n }, (_, i) => `include:i${i}.test`).join(' ');
    const dns = table({
      'none.test': ['google-site-verification=abc'],
      'two.test': ['v=spf1 include:sendgrid.net ~all', 'v=spf1 mx ~all'],
      'many.test': [`v=spf1 include:sendgrid.net ${inc(10)} ~all`],
      'other.test': ['v=spf1 include:_spf.google.com ~all'],
      'ok.test': ['v=spf1 mx include:sendgrid.net ~all'],
      'sendgrid.net': ['v=spf1 ip4:167.89.0.0/17 ~all'],
      '_spf.google.com': ['v=spf1 ip4:35.190.247.0/24 ~all'],
      ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`i${i}.test`, ['v=spf1 ip4:192.0.2.1 ~all']])),
    });
    expect((await checkSpf(dns, 'none.test', 'include:sendgrid.net')).state).toBe('missing');
    expect(await checkSpf(dns, 'two.test', 'include:sendgrid.net')).toMatchObject({ state: 'wrong', problem: expect.stringContaining('2 SPF records') });
    expect(await checkSpf(dns, 'many.test', 'include:sendgrid.net')).toMatchObject({ state: 'wrong', lookups: 11 });
    expect(await checkSpf(dns, 'other.test', 'include:sendgrid.net')).toMatchObject({ state: 'wrong', problem: 'does not have include:sendgrid.net' });
    expect(await checkSpf(dns, 'ok.test', 'include:sendgrid.net')).toMatchObject({ state: 'ok', lookups: 2, problem: null });
  });

  it('stops on include loops', async () => {
    const dns = table({ 'a.test': ['v=spf1 include:b.test ~all'], 'b.test': ['v=spf1 include:a.test ~all'] });
    const r = await spfLookups(dns.txt, 'v=spf1 include:a.test ~all', 'include:sendgrid.net');
    expect(r.lookups).toBeGreaterThan(10);
  });
});

describe('DMARC', () => {
  it('reads the policy, falls back to the parent domain, rejects a record without p=', async () => {
    const dns = table({ '_dmarc.example.test': ['v=DMARC1; p=reject; rua=mailto:d@example.test'], '_dmarc.bad.test': ['v=DMARC1; rua=mailto:x@bad.test'] });
    expect(await checkDmarc(dns, 'mail.example.test')).toMatchObject({ state: 'ok', policy: 'reject', host: '_dmarc.example.test' });
    expect(await checkDmarc(dns, 'bad.test')).toMatchObject({ state: 'wrong' });
    expect(await checkDmarc(dns, 'none.test')).toMatchObject({ state: 'missing', host: '_dmarc.none.test' });
  });
});

describe('flags and formats', () => {
  it('parses --resolver ip[:port] and names the flag on bad input', () => {
    expect(parseResolver('127.0.0.1:5353')).toBe('127.0.0.1:5353');
    expect(parseResolver('1.1.1.1')).toBe('1.1.1.1:53');
    expect(parseResolver('[::1]:53')).toBe('[::1]:53');
    expect(() => parseResolver('dns.google')).toThrow(/--resolver dns.google/);
    expect(() => parseResolver('127.0.0.1:0')).toThrow(/--resolver/);
  });

  it('normalizes domain names and rejects others naming the argument', () => {
    expect(checkDomainName('Acme-Dental.Example.')).toBe('acme-dental.example');
    expect(() => checkDomainName('acme')).toThrow(/<domain> "acme"/);
    expect(() => checkDomainName('bad_name.example')).toThrow(/not a domain name/);
  });

  it('backs off from 5 s, doubling, capped by the interval', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => pollDelay(a, 300_000))).toEqual([5000, 10000, 20000, 40000, 80000, 160000, 300000, 300000]);
    expect([1, 2, 3].map((a) => pollDelay(a, 200))).toEqual([200, 200, 200]);
  });

  it('writes a BIND snippet with absolute names, MX preference and quoted TXT', () => {
    const d = {
      domain: 'ses.test',
      providerKind: 'ses',
      providerRef: 'acme/email/ses',
      records: [
        { purpose: 'dkim1', type: 'CNAME', host: 'tok._domainkey.ses.test', value: 'tok.dkim.amazonses.com' },
        { purpose: 'mail_from_mx', type: 'MX', host: 'mail.ses.test', value: 'feedback-smtp.eu-west-1.amazonses.com', priority: 10 },
        { purpose: 'mail_from_spf', type: 'TXT', host: 'mail.ses.test', value: 'v=spf1 include:amazonses.com ~all' },
      ],
    } as Domain;
    const lines = zoneSnippet(d).split('\n');
    expect(lines).toContain('tok._domainkey.ses.test. 3600 IN CNAME tok.dkim.amazonses.com.');
    expect(lines).toContain('mail.ses.test.           3600 IN MX    10 feedback-smtp.eu-west-1.amazonses.com.');
    expect(lines).toContain('mail.ses.test.           3600 IN TXT   "v=spf1 include:amazonses.com ~all"');
    expect(lines.filter((l) => l.startsWith(';')).length).toBe(3);
  });
});
