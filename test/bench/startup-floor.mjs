// The floor for the start-up bench (startup.bench.mjs): the least any ES-module Node program that lists 1,000
// tenants from the store with better-sqlite3 must do: load the driver and its native addon, open the file, run
// one SELECT and print tab-separated lines. With `commander`, it also loads commander and parses
// `tenant list` with it, as the CLI does. No switchboard code runs: the difference between this and
// `switchboard tenant list` is what switchboard itself costs.
// Usage: SWITCHBOARD_STORE=<store> node test/bench/startup-floor.mjs [commander]
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';

const list = () => {
  const nativeBinding = createRequire(import.meta.url).resolve('better-sqlite3/build/Release/better_sqlite3.node');
  const db = new Database(process.env.SWITCHBOARD_STORE, { readonly: true, fileMustExist: true, nativeBinding });
  const rows = db.prepare('SELECT id, name, created_at FROM tenants ORDER BY id').all();
  process.stdout.write(['ID\tNAME\tCREATED', ...rows.map((r) => `${r.id}\t${r.name}\t${r.created_at}`)].join('\n') + '\n');
  db.close();
};

if (process.argv[2] === 'commander') {
  const { Command } = await import('commander');
  const program = new Command('switchboard');
  program.command('tenant').command('list').action(list);
  await program.parseAsync(['tenant', 'list'], { from: 'user' });
} else {
  list();
}
