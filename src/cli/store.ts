/**
 * `switchboard store backup|vacuum`: care of the store file itself (issue 14 adds `store copy` here).
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples, required } from './command.js';
import { backupStore, vacuumStore } from '../store/db.js';

/** Registers the `store` commands. */
export function registerStore(program: Command, io: Io): void {
  const store = program.command('store').description('back up and compact the store file');
  examples(store, ['switchboard store backup --out /var/backups/switchboard-$(date +%F).db', 'switchboard store vacuum']);

  examples(
    store
      .command('backup')
      .description('write a consistent copy of the store (SQLite online backup: other commands keep working meanwhile) to a new file, mode 0600')
      .option('--out <file>', 'the file to write')
      .option('--force', 'overwrite the file if it exists')
      .action(
        action<{ out?: string; force?: boolean }>(io, async (cli, _args, opts) => {
          cli.sqliteOnly('store backup', 'back it up with pg_dump (e.g. pg_dump -Fc -f switchboard.dump "$URL")');
          const out = required(opts.out, '--out', 'the backup file to write');
          const ctx = await cli.core();
          const r = await backupStore(ctx.db, cli.storePath, out, opts.force === true);
          const data = { storePath: cli.storePath, file: r.file, byteCount: r.bytes, pageCount: r.pages, completedAt: ctx.clock.now().toISOString() };
          cli.out.result(data, () => `Backed up ${cli.storePath} to ${r.file} (${r.bytes} bytes, mode 0600). It needs the same master key to open its secrets.`);
        }),
      ),
    ['switchboard store backup --out /var/backups/switchboard-$(date +%F).db', 'switchboard store backup --out backup.db --force --json'],
  );

  examples(
    store
      .command('vacuum')
      .description('rebuild the store file without free pages (shrinks it after large removals); holds the write lock while it runs')
      .action(
        action(io, async (cli) => {
          cli.sqliteOnly('store vacuum', "PostgreSQL's autovacuum reclaims space; a full VACUUM is the database administrator's (VACUUM FULL, or pg_repack)");
          const ctx = await cli.core();
          const r = vacuumStore(ctx.db, cli.storePath);
          cli.out.result({ storePath: cli.storePath, beforeByteCount: r.bytesBefore, afterByteCount: r.bytesAfter }, () => `Vacuumed ${cli.storePath}: ${r.bytesBefore} → ${r.bytesAfter} bytes`);
        }),
      ),
    ['switchboard store vacuum'],
  );
}
