// e2e: commands that send nothing load no provider SDK (DESIGN §5, §8), and a test send loads only what it
// uses (issue 15). Every module the binary loads is
// recorded by a preload (test/helpers/trace-modules.mjs: ES modules via a resolve hook, CommonJS via
// require.cache); a verify of the same configs must show the SDKs, proving the trace can see them.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execa } from 'execa';
import { baseEnv, makeWorkspace, repoRoot, type Workspace } from '../helpers/cli.js';
import { addSmtpProvider, addSystemOutbox, addTenant, expectExit } from '../helpers/setup.js';
import { startHttpStub, type HttpStub } from '../helpers/http-stub.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';

const PRELOAD = path.join(repoRoot, 'test', 'helpers', 'trace-modules.mjs');
/** Provider SDKs, the HTTP framework of `events serve`, and the heavy libraries only sending needs. */
const SDKS = /node_modules\/(@sendgrid|twilio|@aws-sdk|nodemailer|fastify|starkbank-ecdsa)\//;
const SEND_ONLY = /node_modules\/(handlebars|html-to-text|csv-parse|libphonenumber-js|p-queue)\//;
/** The bulk runner's chunks of the bundle (src/core/batch/runner.ts, src/cli/run-batch.ts), stored templates, CSV. */
const BULK_CHUNKS = /\/dist\/bundle\/(batches|run-batch|runner|template-store|csv)(-\w+)?\.cjs$/;
/** E-mail libraries: nodemailer, the address syntax check (validator), HTML to text. */
const EMAIL_LIBS = /node_modules\/(nodemailer|validator|html-to-text)\//;
/** Libraries only a terminal (colour, drawn tables) or an address check needs. */
const TERMINAL_ONLY = /node_modules\/(chalk|cli-table3|validator)\//;

let ws: Workspace;
let stub: HttpStub;
let smtp: TestSmtpServer;
let n = 0;

/** Runs the binary with the module trace on; returns the loaded module paths. */
async function loaded(args: string[], code = 0): Promise<string[]> {
  const file = path.join(ws.dir, `trace-${++n}.txt`);
  const r = await ws.run(args, { env: { NODE_OPTIONS: `--import=${PRELOAD}`, SWITCHBOARD_TRACE_MODULES: file } });
  expectExit(r, code, args.join(' '));
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

beforeAll(async () => {
  ws = makeWorkspace();
  stub = await startHttpStub(() => ({ status: 200, body: { scopes: ['mail.send'] } }));
  await addTenant(ws, 'acme', 'Acme Dental');
  await addSystemOutbox(ws, path.join(ws.dir, 'outbox'));
  const add = (kind: string, sets: string[], secret: string) =>
    ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', kind, ...sets.flatMap((s) => ['--set', s]), '--secret-env', `${secret}=SECRET`], {
      env: { SECRET: randomBytes(16).toString('hex') },
    });
  expectExit(await add('sendgrid', ['from=a@acme.test', `endpoint=${stub.url}`], 'apiKey'), 0, 'add sendgrid');
  expectExit(await add('ses', ['from=a@acme.test', 'region=eu-west-1', 'accessKeyId=test', `endpoint=${stub.url}`], 'secretAccessKey'), 0, 'add ses');
  // A tenant whose e-mail goes over SMTP (STARTTLS, AUTH) to a real smtp-server; sms and whatsapp to outboxes.
  smtp = await startSmtpServer({ users: { mailer: 'pw-startup' } });
  await addTenant(ws, 'mailer', 'Mailer');
  await addSmtpProvider(ws, smtp, { tenant: 'mailer', user: 'mailer', password: 'pw-startup' });
  for (const channel of ['sms', 'whatsapp']) {
    expectExit(await ws.run(['provider', 'add', '--system', '--channel', channel, '--kind', 'outbox', '--set', `dir=${path.join(ws.dir, channel)}`]), 0, `add ${channel} outbox`);
  }
});
afterAll(async () => {
  await stub?.close();
  await smtp?.close();
  ws?.cleanup();
});

describe('start-up: commands that send nothing', () => {
  test.each([
    [['tenant', 'list']],
    [['tenant', 'show', 'acme']],
    [['provider', 'list']],
    [['provider', 'show', 'acme/email/sendgrid']],
    [['provider', 'route', '--tenant', 'acme', '--channel', 'email']],
  ])('%j loads no provider SDK, template engine, CSV parser or phone metadata', async (args) => {
    const modules = await loaded(args);
    expect(modules.some((m) => m.includes('/dist/bundle/main.cjs')), 'the trace saw the CLI bundle').toBe(true);
    expect(modules.filter((m) => SDKS.test(m))).toEqual([]);
    expect(modules.filter((m) => SEND_ONLY.test(m))).toEqual([]);
  });

  test('events list, message show and batch show load neither Fastify nor a provider SDK', async () => {
    for (const args of [['events', 'list'], ['--json', 'batch', 'list'], ['events', 'public-url']]) {
      expect((await loaded(args)).filter((m) => SDKS.test(m)), args.join(' ')).toEqual([]);
    }
    expect((await loaded(['message', 'show', 'no-such-id'], 2)).filter((m) => SDKS.test(m))).toEqual([]);
  });

  test('batch list loads no provider SDK', async () => {
    // The batch command chunk (list shares it with resume, which runs core/batch/runner.ts) still imports the CSV parser.
    expect((await loaded(['--json', 'batch', 'list'])).filter((m) => SDKS.test(m))).toEqual([]);
  });

  test('tenant list loads only its own command chunk of the bundle', async () => {
    const modules = await loaded(['tenant', 'list']);
    const chunks = modules.filter((m) => /\/dist\/bundle\//.test(m)).map((m) => path.basename(m));
    // The modules every command runs are bundled into main.js (.esbuild.mjs, pass 1): no shared chunk either.
    expect([...new Set(chunks)].sort(), chunks.join(' ')).toEqual(['main.cjs', 'tenant.cjs']);
    // Nothing from tsc's per-module output: the launcher runs the bundle.
    expect(modules.filter((m) => /\/dist\/(cli|core|store)\//.test(m))).toEqual([]);
    // The bundle is CommonJS (.esbuild.mjs, pass 3): none of our code goes through the ES-module loader, whose
    // resolve hook records `file:` URLs (the trace's own preload aside).
    expect(modules.filter((m) => m.startsWith('file:') && m.includes('/dist/bundle/'))).toEqual([]);
  });

  test('tenant list loads neither node:crypto nor node:child_process (no secret is sealed, no keychain run)', async () => {
    const modules = await loaded(['tenant', 'list']);
    expect(modules.filter((m) => /^builtin:(crypto|child_process)$/.test(m))).toEqual([]);
    // The trace sees built-ins however they are loaded: a test send checks the config's MAC with node:crypto.
    expect(await loaded(['send', 'test', '--tenant', 'mailer', '--channel', 'email', '--to', 'x@example.com'])).toContain('builtin:crypto');
  });

  test('tenant list in a pipe loads neither chalk nor cli-table3 nor validator', async () => {
    expect((await loaded(['tenant', 'list'])).filter((m) => TERMINAL_ONLY.test(m))).toEqual([]);
  });

  test('--version prints the version without loading any command chunk', async () => {
    const chunks = (await loaded(['--version'])).filter((m) => /\/dist\/bundle\//.test(m)).map((m) => path.basename(m));
    expect(chunks).toContain('main.cjs');
    expect(chunks.filter((c) => /^(tenant|provider|send|batch|key|domain|template|audit|doctor|suppress|report|chunk)(-\w+)?\.cjs$/.test(c))).toEqual([]);
    const version = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
    expect(expectExit(await ws.run(['--version']), 0, '--version').stdout.trim()).toBe(version);
  });

  test('--help still lists every command, without loading a provider SDK', async () => {
    const modules = await loaded(['--help']);
    expect(modules.filter((m) => SDKS.test(m))).toEqual([]);
    const r = expectExit(await ws.run(['--help']), 0, '--help');
    for (const noun of ['tenant', 'provider', 'key', 'send', 'batch', 'audit']) expect(r.stdout).toMatch(new RegExp(`^  ${noun}\\b`, 'm'));
  });

  test('the trace does see SDKs when a command uses them (provider verify)', async () => {
    expect((await loaded(['provider', 'verify', 'acme/email/sendgrid'])).some((m) => /node_modules\/@sendgrid\//.test(m))).toBe(true);
    expect((await loaded(['provider', 'verify', 'acme/email/ses'], 1)).some((m) => /node_modules\/@aws-sdk\//.test(m))).toBe(true);
  });
});

describe('start-up: the code cache of main.cjs', () => {
  /** Runs `tenant list --verbose` with a copy of bin/ and dist/bundle/ in `dir`; returns stdout and the cache line. */
  async function listWith(dir: string): Promise<{ stdout: string; cache: string }> {
    const r = await execa(process.execPath, [path.join(dir, 'bin', 'switchboard'), '--verbose', 'tenant', 'list'], { env: { ...baseEnv(ws.home), ...ws.env }, extendEnv: false, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    return { stdout: r.stdout, cache: /^code cache: (\w+)/m.exec(r.stderr)?.[1] ?? `no cache line in: ${r.stderr}` };
  }

  test('the build\'s cache is used; a stale, corrupt or missing one is not, and the output is the same', async () => {
    const dir = fs.mkdtempSync(path.join(ws.dir, 'copy-'));
    fs.cpSync(path.join(repoRoot, 'bin'), path.join(dir, 'bin'), { recursive: true });
    fs.cpSync(path.join(repoRoot, 'dist', 'bundle'), path.join(dir, 'dist', 'bundle'), { recursive: true });
    fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(dir, 'package.json'));
    fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'));
    const cacheFile = path.join(dir, 'dist', 'bundle', 'main.cjs.v8cache');
    const built = fs.readFileSync(cacheFile);
    const head = built.indexOf(10) + 1;
    expect(built.subarray(0, head).toString('latin1')).toMatch(/^\/\/ switchboard build [0-9a-f]{16}\n$/);

    const used = await listWith(dir);
    expect(used.cache).toBe('used');
    expect(used.stdout).toContain('acme\tAcme Dental');
    // Another build's cache (its id line differs): not handed to V8 at all.
    fs.writeFileSync(cacheFile, Buffer.concat([Buffer.from('// switchboard build 0000000000000000\n'), built.subarray(head)]));
    expect(await listWith(dir)).toEqual({ stdout: used.stdout, cache: 'stale' });
    // This build's id line but data V8 cannot use: V8 rejects it and compiles afresh.
    fs.writeFileSync(cacheFile, Buffer.concat([built.subarray(0, head), randomBytes(built.length - head)]));
    expect(await listWith(dir)).toEqual({ stdout: used.stdout, cache: 'rejected' });
    fs.rmSync(cacheFile);
    expect(await listWith(dir)).toEqual({ stdout: used.stdout, cache: 'absent' });
  });
});

describe('start-up: stdout in a pipe is written without Node\'s stream', () => {
  test('tenant list in a pipe creates neither process.stdout nor process.stderr (no stream modules loaded)', async () => {
    // Not the module trace: its ES-module hooks load Node's stream modules themselves. A CommonJS preload that
    // records process.moduleLoadList (every internal module loaded, by any route) at exit.
    const preload = ws.file('load-list.cjs', "process.on('exit', () => require('node:fs').writeFileSync(process.env.LOAD_LIST, process.moduleLoadList.join('\\n')));\n");
    const out = path.join(ws.dir, 'load-list.txt');
    const r = await ws.run(['tenant', 'list'], { env: { NODE_OPTIONS: `--require=${preload}`, LOAD_LIST: out } });
    expectExit(r, 0, 'tenant list');
    expect(r.stdout).toContain('acme\tAcme Dental');
    const internal = fs.readFileSync(out, 'utf8').split('\n');
    expect(internal, 'the preload ran').toContain('NativeModule fs');
    expect(internal.filter((m) => /^NativeModule (stream|net|tty|internal\/streams\/writable)$/.test(m))).toEqual([]);
  });

  test('a reader that closes the pipe before the output comes: exit 0, nothing on stderr', async () => {
    const child = execa(process.execPath, [path.join(repoRoot, 'bin', 'switchboard'), 'tenant', 'list'], { env: { ...baseEnv(ws.home), ...ws.env }, extendEnv: false, reject: false });
    child.stdout.destroy();
    const r = await child;
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });
});

describe('start-up: send test loads what it uses', () => {
  test('e-mail over SMTP: nodemailer, but no phone metadata, CSV parser, bulk runner, Handlebars, html-to-text or p-queue', async () => {
    const before = smtp.messages.length;
    const modules = await loaded(['--json', 'send', 'test', '--tenant', 'mailer', '--channel', 'email', '--to', 'patient@example.com']);
    expect(smtp.messages.length, 'the SMTP server received the message').toBe(before + 1);
    expect(modules.some((m) => /node_modules\/nodemailer\//.test(m)), 'the trace saw nodemailer').toBe(true);
    expect(modules.filter((m) => SEND_ONLY.test(m))).toEqual([]);
    expect(modules.filter((m) => BULK_CHUNKS.test(m))).toEqual([]);
  });

  test.each([
    ['sms', ['--to', '+14155552671']],
    ['whatsapp', ['--to', '+14155552671']],
    ['sms', ['--to', '(415) 555-2671', '--default-region', 'US']],
  ])('%s: phone metadata, but no e-mail library, CSV parser, bulk runner or template engine (%j)', async (channel, to) => {
    const modules = await loaded(['--json', 'send', 'test', '--tenant', 'acme', '--channel', channel, ...to]);
    expect(modules.some((m) => /node_modules\/libphonenumber-js\//.test(m)), 'the trace saw the phone metadata').toBe(true);
    expect(fs.readdirSync(path.join(ws.dir, channel)).some((f) => f.endsWith('.json')), 'the outbox got the message').toBe(true);
    expect(modules.filter((m) => EMAIL_LIBS.test(m))).toEqual([]);
    expect(modules.filter((m) => /node_modules\/(handlebars|csv-parse)\//.test(m))).toEqual([]);
    expect(modules.filter((m) => BULK_CHUNKS.test(m))).toEqual([]);
  });
});
