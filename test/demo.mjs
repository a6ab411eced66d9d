#!/usr/bin/env node
// The README's main job on the embedded defaults: a fresh store in a temporary folder, a generated master
// key, one tenant, the outbox provider as system default, and a bulk send of test/fixtures/sample.csv.
// Each step runs the built CLI exactly as a user would type it, and is printed before it runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'switchboard');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-demo-'));
const env = {
  ...process.env,
  SWITCHBOARD_STORE: path.join(dir, 'switchboard.db'),
  SWITCHBOARD_KEY_FILE: path.join(dir, 'master.key'),
};
delete env.SWITCHBOARD_MASTER_KEY;
const outbox = path.join(dir, 'outbox');
const fixtures = path.relative(process.cwd(), path.join(root, 'test', 'fixtures')) || '.';

function sb(...args) {
  const shown = args.map((a) => (/[\s{}"]/.test(a) ? `'${a}'` : a)).join(' ');
  process.stdout.write(`\n$ switchboard ${shown}\n`);
  try {
    execFileSync(process.execPath, [bin, ...args], { env, stdio: 'inherit' });
  } catch (err) {
    process.stderr.write(`demo: step failed with exit code ${err.status}\n`);
    process.exit(err.status ?? 1);
  }
}

process.stdout.write(`Demo store: ${env.SWITCHBOARD_STORE}\nKey file:   ${env.SWITCHBOARD_KEY_FILE}\n`);
sb('key', 'init', '--file', env.SWITCHBOARD_KEY_FILE);
sb('tenant', 'add', 'acme-dental', '--name', 'Acme Dental');
sb('provider', 'add', '--system', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${outbox}`, '--set', 'from=reminders@switchboard.example', '--set', 'fromName=Switchboard Demo');
sb('provider', 'route', '--tenant', 'acme-dental', '--channel', 'email');
sb(
  'send', 'batch', '--tenant', 'acme-dental', '--channel', 'email',
  '--csv', path.join(fixtures, 'sample.csv'),
  '--template-file', path.join(fixtures, 'welcome.html'),
  '--subject', 'Your appointment at {{clinic}}, {{first_name}}',
);
sb('batch', 'list');

const files = fs.readdirSync(outbox).filter((f) => f.endsWith('.eml')).sort();
process.stdout.write(`\nThe messages were written to ${outbox} (${files.length} .eml files):\n`);
for (const f of files) process.stdout.write(`  ${f}\n`);
process.stdout.write(`\nOpen one with:  cat ${path.join(outbox, files[0] ?? '')}\nTry more with:  export SWITCHBOARD_STORE=${env.SWITCHBOARD_STORE} SWITCHBOARD_KEY_FILE=${env.SWITCHBOARD_KEY_FILE}\n`);
