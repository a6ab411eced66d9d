// e2e: what an operator, a CI job and a cron job see, over one store set up once (issue 12):
// - every `--json` command's output against its JSON Schema in test/schemas/ and the README's vocabulary rules;
// - list commands in a pipe: a header line, then one line per row with the header's field count;
// - table times in the local zone (TZ) with their offset, --utc; JSON in UTC;
// - a --quiet cron run whose tenant has SendGrid and SES configs it does not use: stderr empty;
// - every destructive verb without a terminal and without --yes: exit 2 naming --yes, nothing changed;
// - shell completion: the library's callback and the bash script under bash's completion machinery.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { baseEnv, binPath, makeWorkspace, parseJson, parseJsonLines, repoRoot, randomKey, spawnCli, type CliResult, type Workspace } from '../helpers/cli.js';
import { dumpStore, expectExit } from '../helpers/setup.js';
import { startSesIdentities, type SesServer } from '../helpers/ses-identities.js';
import { startTty } from '../helpers/tty.js';
import { sgEvent, startServe } from '../helpers/events.js';
import { checkJson, schemaDir, TIME } from '../helpers/schemas.js';


let ws: Workspace;
let ses: SesServer;
let batchId: string;
const covered = new Set<string>();
const AWS = { accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`, secret: randomBytes(30).toString('base64'), region: 'eu-west-1' };

/** Runs a `--json` command, expects `exit`, checks stdout against `schema` (every line for JSON Lines). */
async function json(schema: string, args: string[], exit = 0, opts: { lines?: boolean; env?: Record<string, string> } = {}): Promise<unknown> {
  const r = await ws.run([...args, '--json'], { env: opts.env });
  const what = `switchboard ${args.join(' ')} --json`;
  expectExit(r, exit, what);
  covered.add(schema);
  if (opts.lines) return parseJsonLines(r).map((d) => checkJson(schema, d, what));
  return checkJson(schema, parseJson(r), what);
}

beforeAll(async () => {
  ws = makeWorkspace();
  ses = await startSesIdentities(AWS.accessKeyId, AWS.region);
  const out = path.join(ws.dir, 'outbox');
  const sesArgs = (tenant: string, name: string, accessKeyId: string, priority: string) => [
    'provider', 'add', '--tenant', tenant, '--channel', 'email', '--kind', 'ses', '--name', name, '--priority', priority,
    '--set', `region=${AWS.region}`, '--set', `from=noreply@${tenant}.example`, '--set', `accessKeyId=${accessKeyId}`,
    '--set', `endpoint=${ses.url}`, '--secret-env', 'secretAccessKey=AWS_SECRET',
  ];
  const steps: string[][] = [
    ['tenant', 'add', 'acme-dental', '--name', 'Acme Dental'],
    ['tenant', 'add', 'beta-clinic', '--name', 'Beta Clinic'],
    ['tenant', 'add', 'cron-care', '--name', 'Cron Care'],
    ['tenant', 'add', 'delta-dent', '--name', 'Delta'],
    ['provider', 'add', '--tenant', 'delta-dent', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${out}`],
    ['provider', 'add', '--system', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${out}`],
    ['provider', 'add', '--tenant', 'acme-dental', '--channel', 'sms', '--kind', 'outbox', '--set', `dir=${out}`, '--set', 'pricePerSegment=0.0079', '--set', 'currency=usd'],
    sesArgs('acme-dental', 'ses', AWS.accessKeyId, '200'),
    sesArgs('acme-dental', 'sesbad', `AKIA${randomBytes(8).toString('hex').toUpperCase()}`, '300'),
    ['provider', 'add', '--tenant', 'beta-clinic', '--channel', 'email', '--kind', 'outbox', '--name', 'spare', '--priority', '900', '--set', `dir=${out}`],
    // cron-care sends through its own outbox; its SendGrid and SES configs (sender domains not authenticated) stay unused.
    ['provider', 'add', '--tenant', 'cron-care', '--channel', 'email', '--kind', 'outbox', '--priority', '10', '--set', `dir=${out}`],
    ['provider', 'add', '--tenant', 'cron-care', '--channel', 'email', '--kind', 'sendgrid', '--priority', '100', '--set', 'from=news@cron-care.example', '--secret-env', 'apiKey=SG_KEY'],
    sesArgs('cron-care', 'ses', AWS.accessKeyId, '200'),
  ];
  // Set up through the CLI, each step's --json checked too (tenant add, provider add).
  for (const s of steps) {
    const r = expectExit(await ws.run([...s, '--json'], { env: { AWS_SECRET: AWS.secret, SG_KEY: `SG.${randomBytes(20).toString('hex')}` } }), 0, s.join(' '));
    const schema = s[0] === 'tenant' ? 'tenant-add' : 'provider-show';
    covered.add(schema);
    checkJson(schema, parseJson(r), s.join(' '));
  }
  ws.file('people.csv', 'email,name\nana@example.com,Ana\nbo@example.com,Bo\n');
  ws.file('hello.txt', 'Hello {{name}}, see you soon.\n');
  ws.file('phones.csv', 'phone,name\n+14155550100,Ann\n+14155550101,Zoë 😀\n');
  ws.file('stops.csv', 'email\nstop1@example.com\nstop2@example.com\n');
}, 60_000);

afterAll(async () => {
  await ses?.stop();
  ws?.cleanup();
});

describe('--json: one vocabulary, a JSON Schema per command', () => {
  test('tenants, providers, kinds, routes', async () => {
    // Reads run side by side.
    const [list, show, route] = (await Promise.all([
      json('tenant-list', ['tenant', 'list']),
      json('tenant-show', ['tenant', 'show', 'acme-dental']),
      json('provider-route', ['provider', 'route', '--tenant', 'acme-dental', '--channel', 'email']),
      json('provider-list', ['provider', 'list']),
      json('provider-show', ['provider', 'show', 'acme-dental/sms/outbox']),
      json('provider-kinds', ['provider', 'kinds']),
      json('provider-kinds', ['provider', 'kinds', 'twilio']),
      json('provider-verify', ['provider', 'verify', 'system/email/outbox']),
    ])) as unknown as [Array<{ id: string; providerCount: number }>, { providerCount: number; providers: Array<{ id: string }> }, { chain: Array<{ provider: string }> }];
    expect(list.find((t) => t.id === 'acme-dental')?.providerCount).toBe(3);
    expect(show.providers.map((p) => p.id)).toEqual(['acme-dental/email/ses', 'acme-dental/email/sesbad', 'acme-dental/sms/outbox']);
    expect(show.providerCount).toBe(show.providers.length);
    expect(route.chain.map((e) => e.provider)).toEqual(['acme-dental/email/ses', 'acme-dental/email/sesbad', 'system/email/outbox']);
    await json('tenant-add', ['tenant', 'update', 'acme-dental', '--name', 'Acme Dental Group']);
    await json('provider-show', ['provider', 'update', 'acme-dental/email/ses', '--set', 'configurationSet=transactional']);
    await json('provider-remove', ['provider', 'remove', 'delta-dent/email/outbox', '--yes']);
    await json('tenant-remove', ['tenant', 'remove', 'delta-dent', '--yes']);
  });

  test('send test, sent and failed after an auth error: one shape, every attempt, the last provider tried', async () => {
    const sent = (await json('send-test', ['send', 'test', '--tenant', 'beta-clinic', '--to', 'ana@example.com'])) as { status: string; provider: string };
    expect(sent).toMatchObject({ status: 'sent', provider: 'beta-clinic/email/spare', errorKind: null });
    const r = await ws.run(['send', 'test', '--tenant', 'acme-dental', '--provider', 'acme-dental/email/sesbad', '--no-fallback', '--to', 'ana@example.com', '--json'], { env: {} });
    expectExit(r, 1, 'send test with a refused key');
    covered.add('send-test');
    const failed = checkJson('send-test', parseJson(r), 'failed send test') as { status: string; provider: string; attempts: unknown[]; errorKind: string; messageId: null };
    expect(failed).toMatchObject({ status: 'failed', provider: 'acme-dental/email/sesbad', errorKind: 'auth', messageId: null });
    expect(failed.attempts.length).toBeGreaterThanOrEqual(1);
    // An SES client was built on Node 20: the SDK's NodeVersionSupportWarning does not reach stderr.
    expect(r.stderr).not.toMatch(/NodeVersionSupportWarning|DeprecationWarning|a\.co\//);
  });

  test('send batch, batch list/show/export/resume/retry/cancel (JSON Lines per record)', async () => {
    const lines = (await json('send-batch', ['send', 'batch', '--tenant', 'beta-clinic', '--csv', `${ws.dir}/people.csv`, '--template-file', `${ws.dir}/hello.txt`, '--subject', 'Hi {{name}}'], 0, { lines: true })) as Array<{ type: string; batchId?: string; sentCount?: number }>;
    const summary = lines.at(-1)!;
    expect(summary).toMatchObject({ type: 'summary', sentCount: 2 });
    batchId = summary.batchId!;
    const [, plain, withItems] = (await Promise.all([
      json('batch-list', ['batch', 'list']),
      json('batch-show', ['batch', 'show', batchId]),
      json('batch-show', ['batch', 'show', batchId, '--items']),
    ])) as [unknown, { items: unknown }, { items: unknown[] }];
    expect(plain.items).toBeNull();
    expect(withItems.items).toHaveLength(2);
    await json('batch-export', ['batch', 'export', batchId, '--out', `${ws.dir}/export.csv`]);
    await json('send-batch', ['batch', 'resume', batchId], 0, { lines: true });
    expect(await json('batch-retry', ['batch', 'retry', batchId, '--failed', '--yes'])).toMatchObject({ batchId, retriedCount: 0, sentCount: 2 });
    await json('batch-cancel', ['batch', 'cancel', batchId, '--yes']);
  });

  test('templates (with sms segments and cost), suppressions', async () => {
    await json('template-show', ['template', 'add', 'hello', '--tenant', 'acme-dental', '--subject', 'Hi {{name}}', '--text-file', `${ws.dir}/hello.txt`]);
    await json('template-show', ['template', 'add', 'hello-sms', '--tenant', 'acme-dental', '--text-file', `${ws.dir}/hello.txt`]);
    const [, , email, sms] = (await Promise.all([
      json('template-list', ['template', 'list', '--tenant', 'acme-dental']),
      json('template-show', ['template', 'show', 'hello', '--tenant', 'acme-dental']),
      json('template-preview', ['template', 'preview', 'hello', '--tenant', 'acme-dental', '--csv', `${ws.dir}/people.csv`]),
      json('template-preview', ['template', 'preview', 'hello-sms', '--tenant', 'acme-dental', '--csv', `${ws.dir}/phones.csv`, '--row', '2']),
    ])) as [unknown, unknown, Record<string, unknown>, Record<string, unknown>];
    expect(email).toMatchObject({ channel: 'email', subject: 'Hi Ana', sms: null });
    // The price comes from the route's pricePerSegment/currency settings; the emoji and ë make it UCS-2.
    expect(sms).toMatchObject({ channel: 'sms', subject: null, html: null, sms: { encoding: 'UCS-2', segmentCount: 1, nonGsmCharacters: ['ë', '😀'], estimatedCost: 0.0079, currency: 'USD' } });
    await json('template-remove', ['template', 'remove', 'hello', '--tenant', 'acme-dental', '--yes']);
    await json('suppress-add', ['suppress', 'add', 'pat@example.com', '--tenant', 'acme-dental']);
    await json('suppress-import', ['suppress', 'import', '--tenant', 'acme-dental', '--csv', `${ws.dir}/stops.csv`]);
    await json('suppress-list', ['suppress', 'list', '--tenant', 'acme-dental']);
    await json('suppress-remove', ['suppress', 'remove', 'pat@example.com', '--tenant', 'acme-dental', '--yes']);
  });

  test('domains (SES identities), reports, logs, audit, doctor', async () => {
    await json('domain-add', ['domain', 'add', '--tenant', 'acme-dental', 'acme-dental.example', '--provider', 'acme-dental/email/ses']);
    await json('domain-add', ['domain', 'add', '--tenant', 'acme-dental', 'keep.example', '--provider', 'acme-dental/email/ses']);
    await Promise.all([
      json('domain-list', ['domain', 'list']),
      json('domain-records', ['domain', 'records', 'acme-dental.example']),
      // Nothing answers DNS on port 9: every lookup fails, and the shape says so (exit 1).
      json('domain-check', ['domain', 'check', 'acme-dental.example', '--resolver', '127.0.0.1:9'], 1),
      json('domain-verify', ['domain', 'verify', 'acme-dental.example'], 1),
    ]);
    await json('domain-remove', ['domain', 'remove', 'acme-dental.example', '--yes']);
    const [log] = (await Promise.all([
      json('log-list', ['log', 'list']),
      json('report', ['report', '--since', '1d']),
      json('report', ['report', '--since', '1d', '--by', 'provider']),
      json('audit-list', ['audit', 'list']),
      json('key-status', ['key', 'status']),
    ])) as unknown as [Array<{ status: string }>];
    expect(log.map((e) => e.status)).toContain('failed');
    const doctor = await ws.run(['doctor', '--json']);
    covered.add('doctor');
    checkJson('doctor', parseJson(doctor), 'doctor --json');
  });

  test('key init, rotate and reset (a key file)', async () => {
    const kw = makeWorkspace();
    try {
      const env = { SWITCHBOARD_MASTER_KEY: undefined as unknown as string };
      const file = path.join(kw.dir, 'master.key');
      const run = async (schema: string, args: string[], extra: Record<string, string> = {}) => {
        const r = await kw.run([...args, '--json'], { env: { ...env, ...extra } });
        expectExit(r, 0, args.join(' '));
        covered.add(schema);
        return checkJson(schema, parseJson(r), args.join(' '));
      };
      await run('key-init', ['key', 'init', '--file', file]);
      await run('key-rotate', ['key', 'rotate'], { SWITCHBOARD_KEY_FILE: file });
      // A key that does not open the store: reset drops the (no) secrets and makes a new key file.
      await run('key-reset', ['key', 'reset', '--file', path.join(kw.dir, 'new.key'), '--yes'], { SWITCHBOARD_MASTER_KEY: randomKey() });
    } finally {
      kw.cleanup();
    }
  });

  test('delivery events (import, list, message timeline, batch delivery counts, report rates), public URL, events serve, store care', async () => {
    // A batch through cron-care's outbox, then SendGrid events for it imported through cron-care's SendGrid config
    // (the correlation fields a SendGrid send carries): ana delivered, bo bounced.
    const lines = parseJsonLines<{ type: string; batchId?: string; recipient?: string; messageId?: string; row?: number }>(
      expectExit(await ws.run(['send', 'batch', '--tenant', 'cron-care', '--csv', `${ws.dir}/people.csv`, '--template-file', `${ws.dir}/hello.txt`, '--subject', 'Events {{name}}', '--new-batch', '--json']), 0, 'send batch'),
    );
    const b = lines.at(-1)!.batchId!;
    const ev = (event: string, email: string, extra: Record<string, unknown> = {}) => {
      const r = lines.find((l) => l.recipient === email)!;
      return sgEvent(event, email, r.messageId!, { sb_tenant: 'cron-care', sb_batch: b, sb_row: String(r.row), ...extra });
    };
    const file = ws.file('events.json', JSON.stringify([ev('delivered', 'ana@example.com'), ev('bounce', 'bo@example.com', { type: 'bounce', status: '5.1.1', reason: '550 5.1.1 unknown' })]));
    const imported = await json('events-import', ['events', 'import', '--provider', 'cron-care/email/sendgrid', file]);
    expect(imported).toMatchObject({ provider: 'cron-care/email/sendgrid', bodyCount: 1, storedCount: 2, duplicateCount: 0, suppressedCount: 1 });
    const [events, batch, report, sup, logged] = (await Promise.all([
      json('events-list', ['events', 'list', '--tenant', 'cron-care']),
      json('batch-show', ['batch', 'show', b]),
      json('report', ['report', '--since', '1d', '--tenant', 'cron-care']),
      json('suppress-list', ['suppress', 'list', '--tenant', 'cron-care']),
      json('log-list', ['log', 'list', '--batch', b]),
    ])) as unknown as [
      Array<{ type: string; provider: string; batchId: string }>,
      { deliveryCounts: Array<{ status: string; messageCount: number }> },
      { total: { deliveredCount: number; bouncedCount: number; deliveredRate: number; bounceRate: number } },
      Array<{ address: string; source: string; expiresAt: string | null }>,
      Array<{ id: number; recipient: string }>,
    ];
    expect(events.map((e) => [e.type, e.provider, e.batchId]).sort()).toEqual([['bounced', 'cron-care/email/sendgrid', b], ['delivered', 'cron-care/email/sendgrid', b]]);
    expect(batch.deliveryCounts.filter((c) => c.messageCount > 0)).toEqual([{ status: 'delivered', messageCount: 1 }, { status: 'bounced', messageCount: 1 }]);
    expect(report.total).toMatchObject({ deliveredCount: 1, bouncedCount: 1 });
    expect(sup).toEqual([expect.objectContaining({ address: 'bo@example.com', source: 'cron-care/email/sendgrid', expiresAt: null })]);
    const ana = logged.find((e) => e.recipient === 'ana@example.com')!;
    const timeline = (await json('message-show', ['message', 'show', String(ana.id)])) as { id: number; status: string; attempts: unknown[]; events: Array<{ type: string }> };
    expect(timeline).toMatchObject({ id: ana.id, status: 'delivered' });
    expect(timeline.attempts).toHaveLength(1);
    expect(timeline.events.map((e) => e.type)).toEqual(['delivered']);

    // The public URL: set, shown, removed (so the sends of later tests carry none).
    expect(await json('events-public-url', ['events', 'public-url', 'https://hooks.example.com'])).toEqual({ publicUrl: 'https://hooks.example.com', source: 'store' });
    expect(await json('events-public-url', ['events', 'public-url', '--unset'])).toEqual({ publicUrl: null, source: null });

    // events serve --json: one JSON Lines record per request; the text log's lines start with a time stamp.
    for (const asJson of [true, false]) {
      const serve = await startServe(ws, asJson ? ['--json'] : []);
      try {
        for (const route of ['/healthz', '/hooks/nobody/email/x', '/unsubscribe/not-a-token']) await fetch(`${serve.url}${route}`);
      } finally {
        expect((await serve.stop('SIGTERM')).exitCode, serve.stderr()).toBe(0);
      }
      const logLines = serve.log().trim().split('\n');
      expect(logLines).toHaveLength(3);
      if (asJson) {
        covered.add('events-serve');
        for (const l of logLines) checkJson('events-serve', JSON.parse(l), 'events serve --json');
      } else {
        for (const l of logLines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z)\tGET\t\/\S*\t\d{3}\t/);
      }
      // Its status lines on stderr (no terminal) are dated too.
      for (const l of serve.stderr().trim().split('\n')) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z) /);
    }

    const backup = (await json('store-backup', ['store', 'backup', '--out', path.join(ws.dir, 'backup.db')])) as { byteCount: number; file: string };
    expect(fs.statSync(backup.file).size).toBe(backup.byteCount);
    await json('store-vacuum', ['store', 'vacuum']);
    await json('store-copy', ['store', 'copy', '--to', path.join(ws.dir, 'copy.db')]);
    // doctor --deep: integrity_check, key-file mode, config MACs and required secrets among its checks.
    const doctor = await ws.run(['doctor', '--deep', '--json']);
    checkJson('doctor', parseJson(doctor), 'doctor --deep --json');
  });

  test('every schema in test/schemas/ was used by a command above', () => {
    const schemas = fs.readdirSync(schemaDir).filter((n) => n !== 'defs.schema.json').map((n) => n.replace('.schema.json', ''));
    expect(schemas.filter((s) => !covered.has(s))).toEqual([]);
  });
});

describe('text output', () => {
  /** Checks the pipe rule: a header line, then one line per row with as many tab-separated fields. */
  const piped = (r: CliResult, what: string): string[][] => {
    expectExit(r, 0, what);
    const lines = r.stdout.replace(/\n$/, '').split('\n').map((l) => l.split('\t'));
    expect(lines[0]!.every((h) => /^[A-Z#][A-Z /#]*$/.test(h)), `${what}: line 1 is a header\n${r.stdout}`).toBe(true);
    for (const l of lines.slice(1)) expect(l.length, `${what}: ${l.join('\\t')}`).toBe(lines[0]!.length);
    return lines;
  };

  test('every list command in a pipe: header line, then rows with the header\'s field count; an empty list is the header alone', async () => {
    const lists = [
      ['tenant', 'list'],
      ['provider', 'list'],
      ['provider', 'kinds'],
      ['provider', 'route', '--tenant', 'acme-dental', '--channel', 'email'],
      ['batch', 'list'],
      ['template', 'list', '--tenant', 'acme-dental'],
      ['suppress', 'list', '--tenant', 'acme-dental'],
      ['domain', 'list'],
      ['report', '--since', '30d', '--by', 'provider'],
      ['log', 'list'],
      ['audit', 'list'],
      ['events', 'list'],
    ];
    const results = await Promise.all(lists.map((args) => ws.run(args)));
    results.forEach((r, i) => expect(piped(r, lists[i]!.join(' ')).length, lists[i]!.join(' ')).toBeGreaterThan(1));
    // The route's fallback switch is a note on stderr, not a line after the table.
    const route = results[3]!;
    expect(route.stdout).not.toMatch(/fallback to system defaults/);
    expect(route.stderr).toMatch(/fallback to system defaults: on/);
    // Empty lists: the header alone on stdout, the note (if any) on stderr.
    // (A store must exist: no command but the creating ones makes one.)
    const empty = makeWorkspace();
    try {
      expectExit(await empty.run(['tenant', 'add', 'gone', '--name', 'Gone']), 0, 'tenant add');
      expectExit(await empty.run(['tenant', 'remove', 'gone', '--yes']), 0, 'tenant remove');
      const runs = await Promise.all([['tenant', 'list'], ['batch', 'list'], ['report'], ['events', 'list']].map((args) => empty.run(args)));
      for (const r of runs) expect(piped(r, 'an empty list'), r.stdout).toHaveLength(1);
      expect(runs[0]!.stderr).toMatch(/No tenants yet/);
      expect(runs[3]!.stderr).toMatch(/No events/);
    } finally {
      empty.cleanup();
    }
  });

  test('table times are local with their offset (TZ), --utc forces UTC; JSON stays UTC', async () => {
    const ny = await ws.run(['tenant', 'list'], { env: { TZ: 'America/New_York' } });
    const created = piped(ny, 'tenant list (New York)').slice(1).map((l) => l[4]);
    // The store was made moments ago; New York is at -05:00 in winter and -04:00 in summer.
    const offset = new Date().toLocaleString('en-US', { timeZone: 'America/New_York', timeZoneName: 'longOffset' }).match(/GMT([+-]\d\d:\d\d)/)![1];
    for (const c of created) expect(c).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d ${offset!.replace('+', '\\+')}$`));
    const utc = await ws.run(['tenant', 'list', '--utc'], { env: { TZ: 'America/New_York' } });
    for (const l of piped(utc, 'tenant list --utc').slice(1)) expect(l[4]).toMatch(/ \+00:00$/);
    const asJson = parseJson<Array<{ createdAt: string }>>(await ws.run(['tenant', 'list', '--json'], { env: { TZ: 'America/New_York' } }));
    for (const t of asJson) expect(t.createdAt).toMatch(TIME);
  });

  test('bare switchboard and switchboard <group> alike: help on stdout, exit 0; group help has examples', async () => {
    for (const args of [[], ['tenant']]) {
      const r = await ws.run(args);
      expect(r.exitCode, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: switchboard/);
      expect(r.stdout).toMatch(/Examples:\n {2}\$ switchboard/);
      expect(r.stderr).toBe('');
    }
  });
});

describe('cron: quiet and local', () => {
  test('--quiet send batch for a tenant whose SendGrid and SES configs the run does not use: stderr empty, exit 0', async () => {
    const args = ['send', 'batch', '--tenant', 'cron-care', '--csv', `${ws.dir}/people.csv`, '--template-file', `${ws.dir}/hello.txt`, '--subject', 'Hi {{name}}'];
    const quiet = await ws.run(['--quiet', ...args, '--new-batch']);
    expectExit(quiet, 0, 'quiet cron run');
    expect(quiet.stderr).toBe('');
    // Without --quiet the run warns about no provider it does not use.
    const loud = await ws.run([...args, '--new-batch']);
    expectExit(loud, 0, 'cron run');
    expect(loud.stderr).not.toMatch(/sendgrid|ses/i);
  });

  test('warnings name the provider the run starts with, once, dated without a terminal', async () => {
    const list = await ws.run(['provider', 'list', '--tenant', 'cron-care']);
    const warnings = list.stderr.split('\n').filter((l) => l.includes('warning:'));
    expect(warnings.length).toBe(2); // sendgrid and ses, each once
    for (const w of warnings) expect(w).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z) warning: cron-care\/email\/(sendgrid|ses): sender domain/);
  });
});

describe('destructive verbs without a terminal', () => {
  test('each refuses without --yes (exit 2 naming --yes) and changes nothing', async () => {
    const before = dumpStore(ws.store);
    const verbs = [
      ['tenant', 'remove', 'beta-clinic'],
      ['provider', 'remove', 'beta-clinic/email/spare'],
      ['template', 'remove', 'hello-sms', '--tenant', 'acme-dental'],
      ['suppress', 'remove', 'stop1@example.com', '--tenant', 'acme-dental'],
      ['domain', 'remove', 'keep.example'],
      ['key', 'reset', '--file', path.join(ws.dir, 'other.key')],
    ];
    for (const v of verbs) {
      const r = await ws.run(v, { env: { SWITCHBOARD_MASTER_KEY: v[0] === 'key' ? randomKey() : ws.key } });
      expect(r.exitCode, `${v.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr, v.join(' ')).toMatch(/--yes/);
    }
    // A finished batch has nothing to cancel: no question, one line, exit 0, nothing changed (checked below).
    const done = await ws.run(['batch', 'cancel', batchId]);
    expect(done.exitCode, done.stderr).toBe(0);
    expect(done.stdout.trim()).toBe(`batch ${batchId} is already done; nothing to cancel`);
    expect(dumpStore(ws.store)).toBe(before);
    expect(fs.existsSync(path.join(ws.dir, 'other.key'))).toBe(false);
  });
});

describe('destructive verbs on a terminal', () => {
  test('batch cancel asks; no exits 1 ("nothing changed") and changes nothing; yes cancels', async () => {
    // A batch with rows left to send (a finished one has nothing to cancel): --rate 1, stopped after its first row
    // (20 rows at one a second: the run is still going however late the signal comes on a busy machine).
    const asked = ws.file('asked.csv', ['email,name', ...Array.from({ length: 20 }, (_, i) => `asked${i}@example.com,Asked${i}`)].join('\n') + '\n');
    const run = spawnCli(ws, ['send', 'batch', '--tenant', 'cron-care', '--csv', asked, '--template-file', `${ws.dir}/hello.txt`, '--subject', 'Asked', '--rate', '1', '--json']);
    let firstRow = false;
    run.stdout!.on('data', (d: Buffer) => {
      if (!firstRow && d.toString().includes('"type":"row"')) {
        firstRow = true;
        run.kill('SIGINT');
      }
    });
    const stopped = await run;
    expect(stopped.exitCode, String(stopped.stderr)).toBe(130);
    const b = parseJsonLines<{ batchId: string }>({ exitCode: 130, stdout: String(stopped.stdout), stderr: String(stopped.stderr) }).at(-1)!.batchId;
    const mid = parseJson<{ status: string; pendingCount: number }>(await ws.run(['batch', 'show', b, '--json']));
    expect(mid.status).toBe('interrupted');
    expect(mid.pendingCount).toBeGreaterThan(0);
    // Without a terminal, cancelling it needs --yes.
    const refused = await ws.run(['batch', 'cancel', b]);
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    const before = dumpStore(ws.store);
    const ask = (answer: string) => {
      const tty = startTty([process.execPath, binPath, 'batch', 'cancel', b], { ...baseEnv(ws.home), ...ws.env }, repoRoot);
      return (async () => {
        try {
          await tty.waitFor(new RegExp(`Cancel batch ${b} for good`));
          tty.type(answer);
          tty.keys('Enter');
          return { code: await tty.exitCode(), screen: tty.screen() };
        } finally {
          tty.stop();
        }
      })();
    };
    const no = await ask('n');
    expect(no.code, no.screen).toBe(1);
    expect(no.screen).toMatch(/declined; nothing changed/);
    expect(dumpStore(ws.store)).toBe(before);
    const yes = await ask('y');
    expect(yes.code, yes.screen).toBe(0);
    expect(parseJson<{ status: string }>(await ws.run(['batch', 'show', b, '--json'])).status).toBe('cancelled');
  });
});

describe('shell completion', () => {
  /** `switchboard complete -- <words>`: the library's callback the shell scripts call; the candidate values. */
  const candidates = async (words: string[], env: Record<string, string> = ws.env): Promise<string[]> => {
    const r = await execa(process.execPath, [binPath, 'complete', '--', ...words], { env: { ...baseEnv(ws.home), ...env }, extendEnv: false, reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const lines = String(r.stdout).split('\n').filter(Boolean);
    expect(lines.at(-1)).toMatch(/^:\d+$/);
    return lines.slice(0, -1).map((l) => l.split('\t')[0]!);
  };

  test('commands, flags, tenant ids, provider refs and batch ids from the store', async () => {
    const [refs, commands, flags, tenants, batches] = await Promise.all([
      candidates(['provider', 'show', 'acme']),
      candidates(['provider', '']),
      candidates(['send', 'test', '--ten']),
      candidates(['send', 'test', '--tenant', '']),
      candidates(['batch', 'show', '']),
    ]);
    expect(refs).toEqual(['acme-dental/email/ses', 'acme-dental/email/sesbad', 'acme-dental/sms/outbox']);
    expect(commands).toEqual(expect.arrayContaining(['add', 'list', 'show', 'kinds', 'verify', 'route']));
    expect(flags).toEqual(['--tenant']);
    expect(tenants).toEqual(['acme-dental', 'beta-clinic', 'cron-care']); // delta-dent was removed
    expect(batches).toContain(batchId);
    // --store on the line wins over the environment; a store that does not exist gives no ids and is not created.
    const missing = path.join(ws.dir, 'nothing-here.db');
    expect(await candidates(['--store', missing, 'tenant', 'show', ''])).toEqual([]);
    expect(fs.existsSync(missing)).toBe(false);
  });

  test('the bash script, under bash-completion: `switchboard provider show acme<TAB>`', async () => {
    const bin = path.join(ws.dir, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'switchboard'), `#!/bin/sh\nexec "${process.execPath}" "${binPath}" "$@"\n`, { mode: 0o755 });
    const script = [
      'source /usr/share/bash-completion/bash_completion',
      'source <(switchboard completion bash)',
      'COMP_WORDS=(switchboard provider show acme); COMP_CWORD=3; COMP_LINE="switchboard provider show acme"; COMP_POINT=${#COMP_LINE}',
      '__switchboard_complete 2>/dev/null',
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n');
    const r = await execa('bash', ['-c', script], { env: { ...baseEnv(ws.home), ...ws.env, PATH: `${bin}:${process.env.PATH}` }, extendEnv: false, reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stdout).split('\n').filter(Boolean)).toEqual(['acme-dental/email/ses', 'acme-dental/email/sesbad', 'acme-dental/sms/outbox']);
  });

  test('zsh and fish scripts are printed; completion loads no provider SDK', async () => {
    for (const shell of ['zsh', 'fish']) {
      const r = await ws.run(['completion', shell]);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/switchboard complete --/);
    }
    const traced = await execa(process.execPath, ['--import', path.join(repoRoot, 'test/helpers/trace-modules.mjs'), binPath, 'complete', '--', 'provider', 'show', ''], {
      env: { ...baseEnv(ws.home), ...ws.env, SWITCHBOARD_TRACE_MODULES: path.join(ws.dir, "trace.txt") },
      extendEnv: false,
      reject: false,
    });
    expect(traced.exitCode, String(traced.stderr)).toBe(0);
    const loaded = fs.readFileSync(path.join(ws.dir, 'trace.txt'), 'utf8');
    expect(loaded).not.toMatch(/node_modules\/(twilio|@aws-sdk|@sendgrid|nodemailer)\//);
  });
});

describe("the README's Quick start", () => {
  test('its main job (`npm run demo`: test/demo.mjs on the built binary) runs on a fresh environment: every step exits 0, the sample CSV lands in the outbox', async () => {
    // No SWITCHBOARD_* variables, a HOME of its own: as on a fresh machine (the demo makes its store and key file).
    const home = fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), 'sb-quickstart-'));
    let demoDir: string | undefined;
    try {
      const r = await execa(process.execPath, [path.join(repoRoot, 'test', 'demo.mjs')], { cwd: repoRoot, env: baseEnv(home), extendEnv: false, reject: false, all: true });
      demoDir = r.stdout.match(/^Demo store: (.*)\/switchboard\.db$/m)?.[1];
      expect(r.exitCode, r.all).toBe(0);
      expect(r.stdout).toMatch(/^\$ switchboard key init --file /m);
      expect(r.stdout).toMatch(/^Created key #1 /m);
      const rows = fs.readFileSync(path.join(repoRoot, 'test', 'fixtures', 'sample.csv'), 'utf8').trim().split('\n').length - 1;
      expect(fs.readdirSync(path.join(demoDir!, 'outbox')).filter((f) => f.endsWith('.eml'))).toHaveLength(rows);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
      if (demoDir) fs.rmSync(demoDir, { recursive: true, force: true });
    }
  });
});
