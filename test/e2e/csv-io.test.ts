// e2e (issue 11): CSV export safe for spreadsheets and exact for programs (read back with Python's csv module),
// input files decoded strictly (Latin-1 and UTF-16 at a real SMTP server, parsed with mailparser), any header
// as a template variable, and control characters from data escaped on stderr.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, describe as show, type Workspace } from '../helpers/cli.js';
import { addSmtpProvider, addTenant, dumpStore, expectExit, outboxWorkspace, parseBatchOutput } from '../helpers/setup.js';
import { startSmtpServer, type TestSmtpServer } from '../helpers/smtp.js';

/** Reads a CSV file with Python's csv module (the reader spreadsheets' import paths behave like). */
async function pythonCsv(file: string): Promise<string[][]> {
  const r = await execa('python3', ['-c', 'import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))))', file]);
  return JSON.parse(r.stdout) as string[][];
}

describe('batch export', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ({ ws } = await outboxWorkspace(['acme']));
  });
  afterAll(() => ws?.cleanup());

  test('formula-like values get a leading quote; CR, LF, quotes stay inside their field; Python reads the right records; --raw writes them as they are', async () => {
    const notes = ["=cmd|' /C calc'!A0", '+1', '-1', '@SUM(1)', '\tlead tab', 'bare\rcr', 'two\nlines', 'say "hi", ok'];
    const quote = (v: string) => (/[",\r\n\t]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
    const csv = ws.file('notes.csv', ['email,name,note', ...notes.map((n, i) => `r${i}@example.com,R${i},${quote(n)}`)].join('\n') + '\n');
    const tpl = ws.file('t.txt', 'Hi {{name}}\n');
    const { summary } = parseBatchOutput(expectExit(await ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'S', '--json']), 0, 'send batch'));
    const out = path.join(ws.dir, 'export.csv');
    expectExit(await ws.run(['batch', 'export', summary.batchId, '--out', out]), 0, 'batch export');
    const rows = await pythonCsv(out);
    expect(rows).toHaveLength(1 + notes.length);
    expect(rows[0]).toEqual(['email', 'name', 'note', 'state', 'provider', 'message_id', 'error']);
    expect(rows.slice(1).map((r) => r[2])).toEqual(["'=cmd|' /C calc'!A0", "'+1", "'-1", "'@SUM(1)", "'\tlead tab", 'bare\rcr', 'two\nlines', 'say "hi", ok']);
    expect(rows.slice(1).every((r) => r[3] === 'sent' && r[4] === 'system/email/outbox')).toBe(true);
    // The bare CR is inside a quoted field in the file itself.
    expect(fs.readFileSync(out, 'utf8')).toContain('"bare\rcr"');

    const raw = path.join(ws.dir, 'export-raw.csv');
    expectExit(await ws.run(['batch', 'export', summary.batchId, '--out', raw, '--raw']), 0, 'batch export --raw');
    const rawRows = await pythonCsv(raw);
    expect(rawRows).toHaveLength(1 + notes.length);
    expect(rawRows.slice(1).map((r) => r[2])).toEqual(notes);
    // --out - writes the same bytes to stdout.
    expect(expectExit(await ws.run(['batch', 'export', summary.batchId, '--out', '-']), 0, 'export to stdout').stdout).toBe(fs.readFileSync(out, 'utf8'));
  });
});

describe('input encodings, any header, escaped control characters', () => {
  let ws: Workspace;
  let srv: TestSmtpServer;
  beforeAll(async () => {
    ws = makeWorkspace();
    srv = await startSmtpServer({ users: { mailer: 'enc-pass' } });
    await addTenant(ws, 'acme');
    await addSmtpProvider(ws, srv, { tenant: 'acme', user: 'mailer', password: 'enc-pass' });
  });
  afterAll(async () => {
    await srv?.close();
    ws?.cleanup();
  });

  const batch = (csv: string, tpl: string, extra: string[] = []) =>
    ws.run(['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hello {{name}}', ...extra]);

  test('a Latin-1 file: exit 2 naming line and column, nothing stored or sent; with --encoding latin1 the message says Café', async () => {
    const csv = ws.file('latin1.csv', Buffer.concat([Buffer.from('email,name\nann@example.com,Ann\npat@example.com,Caf'), Buffer.from([0xe9]), Buffer.from('\n')]));
    const tpl = ws.file('bonjour.txt', 'Bonjour {{name}}\n');
    const dump = dumpStore(ws.store);
    const r = await batch(csv, tpl);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toContain(`--csv ${csv} line 3 column 20: byte 0xE9 is not valid UTF-8`);
    expect(r.stderr).toMatch(/--encoding/);
    expect(dumpStore(ws.store)).toBe(dump);
    expect(srv.messages).toHaveLength(0);

    expectExit(await batch(csv, tpl, ['--encoding', 'latin1']), 0, 'send batch --encoding latin1');
    const pat = srv.messages.find((m) => m.to.includes('pat@example.com'));
    expect(pat?.text.trim()).toBe('Bonjour Café');
    expect(pat?.subject).toBe('Hello Café');
  });

  test('UTF-16LE with a BOM via --encoding utf-16le; a Windows-1252 template via --template-encoding; __proto__, constructor, toString are ordinary columns', async () => {
    const text = 'email,name,__proto__,constructor,toString\r\nzoe@example.com,Zoë,proto-value,ctor-value,tostring-value\r\n';
    const csv = ws.file('utf16.csv', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
    const tpl = ws.file('gruss.txt', Buffer.from('Grüße {{name}}: {{__proto__}} {{constructor}} {{toString}}\n', 'latin1'));
    const badTemplate = await batch(csv, tpl);
    expect(badTemplate.exitCode, show(badTemplate)).toBe(2);
    expect(badTemplate.stderr).toContain(`--template-file ${tpl} line 1 column 3: byte 0xFC is not valid UTF-8`);
    expect(badTemplate.stderr).toMatch(/--template-encoding/);
    const badCsv = await batch(csv, tpl, ['--template-encoding', 'windows-1252']);
    expect(badCsv.exitCode, show(badCsv)).toBe(2);
    expect(badCsv.stderr).toMatch(/line 1 column 1: byte 0xFF is not valid UTF-8; it starts with a UTF-16LE byte order mark: give --encoding utf-16le/);
    const r = expectExit(await batch(csv, tpl, ['--encoding', 'utf-16le', '--template-encoding', 'windows-1252']), 0, 'send batch utf-16le');
    expect(r.stderr).not.toMatch(/Handlebars|denied/);
    const zoe = srv.messages.find((m) => m.to.includes('zoe@example.com'));
    expect(zoe?.text.trim()).toBe('Grüße Zoë: proto-value ctor-value tostring-value');
    expect(zoe?.subject).toBe('Hello Zoë');
  });

  test('control characters from CSV data are shown escaped on stderr, never sent to the terminal', async () => {
    const csv = ws.file('esc.csv', 'email,name\n"evil\x1b]0;pwned\x07\x1b[2J@example.com",X\nok@example.com,"R\rL"\n');
    const r = await batch(csv, ws.file('plain.txt', 'Hi {{name}}\n'));
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toContain('evil\\x1b]0;pwned\\x07\\x1b[2J@example.com');
    // eslint-disable-next-line no-control-regex -- looking for raw control characters is the point
    expect(r.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  });

  test('control characters from data (a tenant name, a CSV value in a dry-run preview, a bounce reason from a remote server) are escaped on stdout too; --json keeps the value', async () => {
    const evil = 'Evil\x1b[2J\x1b]0;pwned\x07Name';
    const added = expectExit(await ws.run(['tenant', 'add', 'esc', '--name', evil]), 0, 'tenant add').stdout;
    const preview = expectExit(await batch(ws.file('esc-data.csv', `email,name\npat@example.com,"A\x1b]0;pwned\x07B"\n`), ws.file('hi.txt', 'Hi {{name}}\n'), ['--dry-run']), 0, 'dry run').stdout;
    expect(preview).toContain('Hi A\\x1b]0;pwned\\x07B');
    expect(added).toContain('Evil\\x1b[2J');
    expectExit(await ws.run(['provider', 'add', '--tenant', 'esc', '--channel', 'email', '--kind', 'sendgrid', '--set', 'from=noreply@esc.test', '--secret-env', 'apiKey=K'], { env: { K: 'SG.escape-test-key-0000000000' } }), 0, 'provider add');
    const events = ws.file('bounce.json', JSON.stringify([{ email: 'pat@example.com', event: 'bounce', type: 'bounce', reason: '550 \x1b[2Jgone\r', timestamp: 1796600000, sg_event_id: 'esc-1', sg_message_id: 'm1.x' }]));
    expectExit(await ws.run(['events', 'import', '--provider', 'esc/email/sendgrid', events]), 0, 'events import');
    const outputs = [
      added,
      preview,
      expectExit(await ws.run(['tenant', 'list']), 0, 'tenant list').stdout,
      expectExit(await ws.run(['tenant', 'show', 'esc']), 0, 'tenant show').stdout,
      expectExit(await ws.run(['events', 'list', '--tenant', 'esc']), 0, 'events list').stdout,
      expectExit(await ws.run(['suppress', 'list', '--tenant', 'esc']), 0, 'suppress list').stdout,
    ];
    for (const out of outputs) expect(out).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/); // eslint-disable-line no-control-regex -- raw control characters are what must not appear
    expect(outputs[2]).toContain('Evil\\x1b[2J\\x1b]0;pwned\\x07Name');
    expect(outputs[3]).toContain('Evil\\x1b[2J\\x1b]0;pwned\\x07Name');
    expect(outputs[4]).toContain('550 \\x1b[2Jgone');
    expect(outputs[5]).toContain('\\x1b[2Jgone');
    const json = JSON.parse(expectExit(await ws.run(['tenant', 'show', 'esc', '--json']), 0, 'tenant show --json').stdout) as { name: string };
    expect(json.name).toBe(evil);
  });

  test('an unknown encoding label is a usage error naming the flag', async () => {
    const r = await ws.run(['suppress', 'import', '--tenant', 'acme', '--csv', ws.file('a.csv', 'email\na@example.com\n'), '--encoding', 'klingon']);
    expect(r.exitCode, show(r)).toBe(2);
    expect(r.stderr).toMatch(/--encoding klingon: not an encoding label/);
  });
});
