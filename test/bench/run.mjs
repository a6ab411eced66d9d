// `npm run bench`: runs every test/bench/*.bench.mjs in its own process, one after another, and stops at the
// first failure. Each bench prints its own figures.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const dir = path.dirname(fileURLToPath(import.meta.url));
const benches = readdirSync(dir).filter((f) => f.endsWith('.bench.mjs')).sort();
for (const file of benches) {
  console.log(`== ${file}`);
  const r = spawnSync(process.execPath, [path.join(dir, file)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`${file} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}
console.log(`${benches.length} bench(es) done`);
