// e2e: sender domains through the binary, against a local SendGrid domain API (behind Prism, validated against
// ../shared/contracts/tsg_domain_authentication_v3.json), a local SES v2 identities API, and a real DNS server
// (dnsmasq on 127.0.0.1) publishing the records: all correct, one CNAME missing, one wrong value, SPF with too
// many lookups, no DMARC.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, parseJson, describe as show, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit } from '../helpers/setup.js';
import { startDnsmasq, type TestDns, type TestRecord } from '../helpers/dnsmasq.js';
import { startSendgridDomains, type SendgridDomainsServer } from '../helpers/sendgrid-domains.js';
import { startSesIdentities, type SesServer } from '../helpers/ses-identities.js';

interface Rec {
  purpose: string;
  type: 'CNAME' | 'TXT' | 'MX';
  host: string;
  value: string;
  priority: number | null;
}
interface DomainJson {
  domain: string;
  tenantId: string | null;
  provider: string | null;
  status: string;
  records: Rec[];
  checkedAt: string | null;
  detail: string | null;
}
interface CheckJson {
  ok: boolean;
  failed: string[];
  records: Array<{ purpose: string; state: string; found: string[]; expected: string }>;
  spf: { state: string; lookupCount: number; problem: string | null; includesProvider: boolean };
  dmarc: { state: string; policy: string | null };
}
interface VerifyJson {
  status: string;
  attemptCount: number;
  timedOut?: boolean;
  records: Array<{ purpose: string; valid: boolean; reason: string | null }>;
}

const TENANT = 'acme-dental';
const SG_REF = `${TENANT}/email/sendgrid`;
const SES_REF = `${TENANT}/email/ses`;
const REGION = 'eu-west-1';
const SG_DOMAINS = ['good.test', 'missing.test', 'wrong.test', 'spf.test', 'nodmarc.test'];

describe('domain authentication', () => {
  let ws: Workspace;
  let sg: SendgridDomainsServer;
  let ses: SesServer;
  let dns: TestDns | undefined;
  // Generated at run time: no key-looking strings in the repository.
  const apiKey = `SG.${randomBytes(11).toString('hex')}.${randomBytes(21).toString('hex')}`;
  const accessKeyId = `TEST${randomBytes(8).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(30).toString('base64');
  const records = new Map<string, Rec[]>();

  beforeAll(async () => {
    ws = makeWorkspace();
    [sg, ses] = await Promise.all([startSendgridDomains(apiKey), startSesIdentities(accessKeyId, REGION)]);
    await addTenant(ws, TENANT, 'Acme Dental');
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', TENANT, '--channel', 'email', '--kind', 'sendgrid', '--set', 'from=reminders@good.test', '--set', `endpoint=${sg.url}`, '--secret-env', 'apiKey=SG_KEY'],
        { env: { SG_KEY: apiKey } },
      ),
      0,
      'provider add sendgrid',
    );
    expectExit(
      await ws.run(
        ['provider', 'add', '--tenant', TENANT, '--channel', 'email', '--kind', 'ses', '--set', `region=${REGION}`, '--set', 'from=hello@ses.test',
          '--set', `accessKeyId=${accessKeyId}`, '--set', `endpoint=${ses.url}`, '--secret-env', 'secretAccessKey=AWS_SECRET'],
        { env: { AWS_SECRET: secretAccessKey } },
      ),
      0,
      'provider add ses',
    );
  });

  afterAll(async () => {
    await Promise.all([dns?.stop(), sg?.stop(), ses?.stop()]);
    ws?.cleanup();
  });

  test('add creates the domains at SendGrid (automatic security) and SES (Easy DKIM, MAIL FROM) and stores their records', async () => {
    for (const d of SG_DOMAINS) {
      const extra = d === 'good.test' ? ['--subdomain', 'mail', '--dkim-selector', 'abc'] : [];
      const r = expectExit(await ws.run(['domain', 'add', '--tenant', TENANT, d, '--provider', SG_REF, ...extra, '--json']), 0, `domain add ${d}`);
      const added = parseJson<DomainJson>(r);
      expect(added).toMatchObject({ domain: d, tenantId: TENANT, provider: SG_REF, status: 'pending' });
      expect(added.records.map((x) => x.purpose)).toEqual(['mail_cname', 'dkim1', 'dkim2']);
      records.set(d, added.records);
    }
    const creates = sg.requests.filter((q) => q.method === 'POST' && q.path === '/v3/whitelabel/domains');
    expect(creates.map((q) => q.body)).toContainEqual({ domain: 'good.test', automatic_security: true, subdomain: 'mail', custom_dkim_selector: 'abc' });
    expect(creates.map((q) => q.body)).toContainEqual({ domain: 'wrong.test', automatic_security: true });
    expect(records.get('good.test')).toEqual([
      { purpose: 'mail_cname', type: 'CNAME', host: 'mail.good.test', value: 'u4242.wl.sendgrid.net', priority: null },
      { purpose: 'dkim1', type: 'CNAME', host: 'abc._domainkey.good.test', value: 'abc.domainkey.u4242.wl.sendgrid.net', priority: null },
      { purpose: 'dkim2', type: 'CNAME', host: 'abc2._domainkey.good.test', value: 'abc2.domainkey.u4242.wl.sendgrid.net', priority: null },
    ]);

    // Human output tells the operator what to publish; in a pipe, as tab-separated lines.
    const human = expectExit(await ws.run(['domain', 'records', 'good.test']), 0, 'domain records');
    expect(human.stdout).toMatch(/^CNAME\tabc\._domainkey\.good\.test\tabc\.domainkey\.u4242\.wl\.sendgrid\.net$/m);
    const zone = expectExit(await ws.run(['domain', 'records', 'good.test', '--format', 'zone']), 0, 'domain records --format zone');
    expect(zone.stdout).toMatch(/^abc\._domainkey\.good\.test\.\s+3600 IN CNAME\s+abc\.domainkey\.u4242\.wl\.sendgrid\.net\.$/m);
    expect(zone.stdout).toContain('"v=spf1 include:sendgrid.net ~all"');

    const sesAdd = parseJson<DomainJson>(
      expectExit(await ws.run(['domain', 'add', '--tenant', TENANT, 'ses.test', '--provider', SES_REF, '--mail-from', 'mail', '--json']), 0, 'domain add ses'),
    );
    const tokens = ses.identities.get('ses.test')!.tokens;
    expect(sesAdd.records).toEqual([
      ...tokens.map((t, i) => ({ purpose: `dkim${i + 1}`, type: 'CNAME', host: `${t}._domainkey.ses.test`, value: `${t}.dkim.amazonses.com`, priority: null })),
      { purpose: 'mail_from_mx', type: 'MX', host: 'mail.ses.test', value: `feedback-smtp.${REGION}.amazonses.com`, priority: 10 },
      { purpose: 'mail_from_spf', type: 'TXT', host: 'mail.ses.test', value: 'v=spf1 include:amazonses.com ~all', priority: null },
    ]);
    expect(ses.requests.find((q) => q.method === 'POST')?.body).toEqual({ EmailIdentity: 'ses.test' });
    expect(ses.requests.find((q) => q.method === 'PUT')).toMatchObject({ path: '/v2/email/identities/ses.test/mail-from', body: { MailFromDomain: 'mail.ses.test', BehaviorOnMxFailure: 'USE_DEFAULT_VALUE' } });
    records.set('ses.test', sesAdd.records);

    // Adding the same domain again, or with a provider that cannot authenticate domains, is a usage error.
    const again = await ws.run(['domain', 'add', '--tenant', TENANT, 'good.test', '--provider', SG_REF]);
    expect(again.exitCode, show(again)).toBe(2);
    expect(again.stderr).toContain('already added');
    const noProvider = await ws.run(['domain', 'add', '--tenant', TENANT, 'other.test']);
    expect(noProvider.exitCode, show(noProvider)).toBe(2);
    expect(noProvider.stderr).toContain('--provider is required');

    const audit = parseJson<Array<{ action: string; target: string }>>(expectExit(await ws.run(['audit', 'list', '--json']), 0, 'audit list'));
    expect(audit.filter((a) => a.action === 'domain.add').map((a) => a.target)).toEqual([...SG_DOMAINS, 'ses.test']);
  });

  test('unverified sender domains are warned about in provider list and before a batch', async () => {
    const list = expectExit(await ws.run(['provider', 'list']), 0, 'provider list');
    expect(list.stderr).toContain(`warning: ${SG_REF}: sender domain good.test is pending at sendgrid`);
    expect(list.stderr).toContain(`warning: ${SES_REF}: sender domain ses.test is pending at ses`);
    const csv = ws.file('r.csv', 'email\npat@example.com\n');
    const tpl = ws.file('t.txt', 'Hello');
    const batch = expectExit(
      await ws.run(['send', 'batch', '--tenant', TENANT, '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--dry-run']),
      0,
      'send batch --dry-run',
    );
    expect(batch.stderr).toContain(`warning: ${SG_REF}: sender domain good.test is pending`);
  });

  test('check looks every record up in real DNS: OK, Missing, Wrong value, SPF lookups, DMARC', async () => {
    const zone: TestRecord[] = [
      { type: 'TXT', host: 'sendgrid.net', value: 'v=spf1 ip4:167.89.0.0/17 ~all' },
      { type: 'TXT', host: 'amazonses.com', value: 'v=spf1 ip4:199.255.192.0/22 ~all' },
      // spf.test: 2 lookups, then l1 adds 5 and l2 adds 5 more: 12 in all
      { type: 'TXT', host: 'l1.spf.test', value: 'v=spf1 a mx ptr exists:x.spf.test include:l2.spf.test ~all' },
      { type: 'TXT', host: 'l2.spf.test', value: 'v=spf1 a mx a:x.spf.test mx:y.spf.test/24 include:l3.spf.test ~all' },
      { type: 'TXT', host: 'l3.spf.test', value: 'v=spf1 ip4:192.0.2.1 -all' },
    ];
    for (const [domain, recs] of records) {
      for (const r of recs) {
        if (domain === 'missing.test' && r.purpose === 'dkim2') continue;
        const value = domain === 'wrong.test' && r.purpose === 'dkim1' ? 's1.domainkey.u9999.wl.sendgrid.net' : r.value;
        zone.push(r.type === 'MX' ? { type: 'MX', host: r.host, value, priority: r.priority ?? undefined } : { type: r.type, host: r.host, value });
      }
      const include = domain === 'ses.test' ? 'include:amazonses.com' : 'include:sendgrid.net';
      zone.push({ type: 'TXT', host: domain, value: domain === 'spf.test' ? `v=spf1 ${include} include:l1.spf.test -all` : `v=spf1 ${include} ~all` });
      if (domain !== 'nodmarc.test') zone.push({ type: 'TXT', host: `_dmarc.${domain}`, value: `v=DMARC1; p=${domain === 'good.test' ? 'quarantine' : 'none'}; rua=mailto:dmarc@${domain}` });
    }
    dns = await startDnsmasq(zone);
    const check = async (domain: string, code: number) => {
      const r = await ws.run(['domain', 'check', domain, '--resolver', dns!.server, '--json']);
      expect(r.exitCode, show(r)).toBe(code);
      return parseJson<CheckJson>(r);
    };

    const good = await check('good.test', 0);
    expect(good.records.map((r) => r.state)).toEqual(['ok', 'ok', 'ok']);
    expect(good.spf).toMatchObject({ state: 'ok', lookupCount: 1, includesProvider: true });
    expect(good.dmarc).toMatchObject({ state: 'ok', policy: 'quarantine' });
    const goodHuman = expectExit(await ws.run(['domain', 'check', 'good.test', '--resolver', dns.server]), 0, 'check good.test');
    expect(goodHuman.stdout).toContain('All required records are in place.');

    const missing = await check('missing.test', 1);
    expect(missing.records.find((r) => r.purpose === 'dkim2')).toMatchObject({ state: 'missing', found: [] });
    expect(missing.failed).toEqual(['CNAME s2._domainkey.missing.test']);

    const wrong = await check('wrong.test', 1);
    expect(wrong.records.find((r) => r.purpose === 'dkim1')).toMatchObject({ state: 'wrong', found: ['s1.domainkey.u9999.wl.sendgrid.net'], expected: 's1.domainkey.u4242.wl.sendgrid.net' });
    const wrongHuman = await ws.run(['domain', 'check', 'wrong.test', '--resolver', dns.server]);
    expect(wrongHuman.exitCode, show(wrongHuman)).toBe(1);
    expect(wrongHuman.stdout).toMatch(/Wrong value.*s1\._domainkey\.wrong\.test.*s1\.domainkey\.u9999\.wl\.sendgrid\.net/);
    expect(wrongHuman.stderr).toContain('wrong.test: 1 required DNS check failed');

    const spf = await check('spf.test', 1);
    expect(spf.records.every((r) => r.state === 'ok')).toBe(true);
    expect(spf.spf).toMatchObject({ state: 'wrong', lookupCount: 12 });
    expect(spf.spf.problem).toContain('more than the limit of 10');
    expect(spf.failed).toEqual(['SPF']);

    const nodmarc = await check('nodmarc.test', 0);
    expect(nodmarc.dmarc.state).toBe('missing');
    const nodmarcHuman = expectExit(await ws.run(['domain', 'check', 'nodmarc.test', '--resolver', dns.server]), 0, 'check nodmarc.test');
    expect(nodmarcHuman.stdout).toMatch(/Missing \(recommended\).*_dmarc\.nodmarc\.test/);

    const sesCheck = await check('ses.test', 0);
    expect(sesCheck.records.map((r) => `${r.purpose}:${r.state}`)).toEqual(['dkim1:ok', 'dkim2:ok', 'dkim3:ok', 'mail_from_mx:ok', 'mail_from_spf:ok']);

    const badResolver = await ws.run(['domain', 'check', 'good.test', '--resolver', 'dns.example:53']);
    expect(badResolver.exitCode, show(badResolver)).toBe(2);
    expect(badResolver.stderr).toContain('--resolver dns.example:53');
  });

  test('verify shows the provider\'s failing results; --wait succeeds on the third poll; --wait times out', async () => {
    const failing = await ws.run(['domain', 'verify', 'missing.test', '--json']);
    expect(failing.exitCode, show(failing)).toBe(1);
    const f = parseJson<VerifyJson>(failing);
    expect(f.status).toBe('failed');
    expect(f.records.find((r) => r.purpose === 'dkim2')?.reason).toContain('Expected CNAME for "s2._domainkey.missing.test"');

    sg.validOn.set('good.test', 3);
    const wait = await ws.run(['domain', 'verify', 'good.test', '--wait', '--interval', '200ms', '--timeout', '60s', '--resolver', dns!.server, '--json']);
    expect(wait.exitCode, show(wait)).toBe(0);
    expect(parseJson<VerifyJson>(wait)).toMatchObject({ status: 'verified', attemptCount: 3, timedOut: false });
    expect(wait.stderr).toContain('local DNS check: all required records are in place');
    // Dated lines (stderr is not a terminal here): each poll line starts with an ISO 8601 time stamp.
    expect(wait.stderr).toMatch(/ poll 1: failed .*next in 0\.2 s\n\S+ poll 2: failed .*\n\S+ poll 3: verified\n/);
    const goodState = [...sg.domains.values()].find((d) => d.domain === 'good.test')!;
    expect(goodState.validations).toBe(3);

    // 3 s of polls 200 ms apart: at least two even on a loaded machine (with 1 s, one slow poll could be the only one).
    const timeout = await ws.run(['domain', 'verify', 'nodmarc.test', '--wait', '--interval', '200ms', '--timeout', '3s', '--resolver', dns!.server]);
    expect(timeout.exitCode, show(timeout)).toBe(1);
    expect(timeout.stderr).toContain('nodmarc.test: not verified after 3s');
    expect([...sg.domains.values()].find((d) => d.domain === 'nodmarc.test')!.validations).toBeGreaterThanOrEqual(2);

    const identity = ses.identities.get('ses.test')!;
    ses.successOn.set('ses.test', identity.gets + 3);
    const sesWait = await ws.run(['domain', 'verify', 'ses.test', '--wait', '--interval', '200ms', '--timeout', '60s', '--resolver', dns!.server, '--json']);
    expect(sesWait.exitCode, show(sesWait)).toBe(0);
    expect(parseJson<VerifyJson>(sesWait)).toMatchObject({ status: 'verified', attemptCount: 3 });

    const list = parseJson<DomainJson[]>(expectExit(await ws.run(['domain', 'list', '--tenant', TENANT, '--json']), 0, 'domain list'));
    const status = Object.fromEntries(list.map((d) => [d.domain, d.status]));
    expect(status).toEqual({ 'good.test': 'verified', 'missing.test': 'failed', 'nodmarc.test': 'failed', 'ses.test': 'verified', 'spf.test': 'pending', 'wrong.test': 'pending' });
    expect(list.find((d) => d.domain === 'good.test')?.checkedAt).toBeTruthy();

    // Both providers' sender domains are verified now: no warnings.
    const providers = expectExit(await ws.run(['provider', 'list']), 0, 'provider list');
    expect(providers.stderr).not.toContain('warning');
  });

  test('remove asks for --yes without a terminal, then deletes at the provider and locally', async () => {
    const refused = await ws.run(['domain', 'remove', 'wrong.test']);
    expect(refused.exitCode, show(refused)).toBe(2);
    expect(refused.stderr).toContain('--yes');

    const id = [...sg.domains.values()].find((d) => d.domain === 'wrong.test')!.id;
    expectExit(await ws.run(['domain', 'remove', 'wrong.test', '--yes']), 0, 'domain remove wrong.test');
    expect(sg.requests.some((q) => q.method === 'DELETE' && q.path === `/v3/whitelabel/domains/${id}`)).toBe(true);
    expectExit(await ws.run(['domain', 'remove', 'ses.test', '--yes']), 0, 'domain remove ses.test');
    expect(ses.identities.has('ses.test')).toBe(false);

    const gone = await ws.run(['domain', 'records', 'wrong.test']);
    expect(gone.exitCode, show(gone)).toBe(2);
    expect(gone.stderr).toContain('no domain wrong.test');
    // Every request and response passed Prism's validation against the published spec.
    expect(sg.prismLog()).not.toMatch(/violation|UNPROCESSABLE|Invalid request/i);
  });
});
