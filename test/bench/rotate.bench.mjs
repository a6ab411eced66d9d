// Key rotation on a store with 1,000 sealed secrets: seeds the store in-process, then times
// `switchboard key rotate` (key file source) as a user runs it, and checks every secret opens with the new key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { seedStore } from '../helpers/seed.mjs';

const SECRETS = Number(process.env.BENCH_SECRETS ?? 1000);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-rotate-'));
try {
  const store = path.join(dir, 'sb.db');
  const keyFile = path.join(dir, 'master.key');
  fs.writeFileSync(keyFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
  const env = { PATH: process.env.PATH, HOME: dir, SWITCHBOARD_STORE: store, SWITCHBOARD_KEY_FILE: keyFile, NO_COLOR: '1' };
  let t = performance.now();
  await seedStore(store, env, { tenants: SECRETS / 4, perTenant: 4 });
  console.log(`seeded ${SECRETS} provider configs with sealed secrets in ${Math.round(performance.now() - t)} ms`);

  t = performance.now();
  const out = execFileSync(process.execPath, [path.join(root, 'bin', 'switchboard'), 'key', 'rotate', '--json'], { env, encoding: 'utf8' });
  const wall = Math.round(performance.now() - t);
  const r = JSON.parse(out);
  if (r.resealed !== SECRETS) throw new Error(`re-sealed ${r.resealed}, expected ${SECRETS}`);
  console.log(`key rotate: re-sealed ${r.resealed} secrets, key #${r.oldKeyId} → #${r.newKeyId}; ${r.elapsedMs} ms inside the command, ${wall} ms wall clock for the whole process`);

  const doctor = JSON.parse(
    execFileSync(process.execPath, [path.join(root, 'bin', 'switchboard'), 'doctor', '--json'], { env, encoding: 'utf8', maxBuffer: 64 << 20 }).toString(),
  );
  const open = doctor.checks.filter((c) => c.check.endsWith(' secrets') && c.status === 'pass').length;
  if (open !== SECRETS) throw new Error(`only ${open} of ${SECRETS} secrets open after rotation`);
  console.log(`doctor: all ${open} secrets open with the new key`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
