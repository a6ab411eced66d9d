/**
 * `switchboard store backup|vacuum|copy`: care of the store itself, and moving it to another store (issue 14).
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { CliContext, Io } from './context.js';
import { action, examples, required } from './command.js';
import { locateStore } from '../store/db.js';
import { openStoreHandle } from '../store/open.js';
import type { CopyEnd } from '../store/copy.js';
import { OperationFailed, UsageError } from '../errors.js';

/** Registers the `store` commands. */
export function registerStore(program: Command, io: Io): void {
  const store = program.command('store').description('back up and compact the store file, copy a store into another');
  examples(store, [
    'switchboard store backup --out /var/backups/switchboard-$(date +%F).db',
    'switchboard store vacuum',
    'switchboard store copy --to postgres://switchboard@db.internal/switchboard',
  ]);

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
          const r = await sqliteOp(ctx.store.backup, 'store backup')(out, opts.force === true);
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
          const r = await sqliteOp(ctx.store.vacuum, 'store vacuum')();
          cli.out.result({ storePath: cli.storePath, beforeByteCount: r.bytesBefore, afterByteCount: r.bytesAfter }, () => `Vacuumed ${cli.storePath}: ${r.bytesBefore} → ${r.bytesAfter} bytes`);
        }),
      ),
    ['switchboard store vacuum'],
  );

  examples(
    store
      .command('copy')
      .description(
        'copy everything in the store (tenants, providers with their sealed secrets as they are, keys, batches, logs, audit) into a new, empty store: a SQLite file path or a postgres:// URL; checks row counts and every provider config MAC in the target',
      )
      .option('--to <store>', 'the empty store to copy into (a file path, created if missing, or a postgres:// URL without a password)')
      .action(
        action<{ to?: string }>(io, async (cli, _args, opts) => {
          const to = required(opts.to, '--to', 'the empty store to copy into (a file path or a postgres:// URL)');
          const ctx = await cli.core();
          const source = await cli.handle();
          const target = await openCopyTarget(cli, to);
          let summary;
          try {
            summary = await (await import('../core/store-copy.js')).copyWholeStore(ctx, source, target.handle);
          } catch (err) {
            await target.discard();
            throw err;
          }
          await target.handle.close();
          const data = {
            source: summary.source,
            target: summary.target,
            storeId: summary.storeId,
            tables: summary.tables.map((t) => ({ table: t.table, rowCount: t.rows })),
            rowCount: summary.totalRows,
            verifiedConfigCount: summary.verifiedConfigs,
            completedAt: ctx.clock.now().toISOString(),
          };
          cli.out.result(data, () =>
            [
              `Copied ${summary.source} to ${summary.target} (store id ${summary.storeId} kept: the same master key opens it).`,
              cli.out.table(['TABLE', 'ROWS'], summary.tables.map((t) => [t.table, t.rows])),
              `${summary.totalRows} rows; counts match in the target; ${summary.verifiedConfigs} provider config${summary.verifiedConfigs === 1 ? '' : 's'} verified there (MAC and sealed secrets).`,
            ].join('\n'),
          );
        }),
      ),
    [
      'switchboard store copy --to /srv/switchboard/copy.db',
      'PGPASSWORD=… switchboard store copy --to postgres://switchboard@db.internal:5432/switchboard --json',
      'SWITCHBOARD_STORE=postgres://switchboard@db.internal/switchboard switchboard store copy --to ~/switchboard-local.db',
    ],
  );
}

/** A SQLite-only store operation (called after `cli.sqliteOnly`, so it is there). @throws OperationFailed if not. */
function sqliteOp<F>(op: F | undefined, what: string): F {
  if (op === undefined) throw new OperationFailed(`${what}: this store has no such operation`);
  return op;
}

/** The target of `store copy`, opened, and how to undo its creation when the copy fails. */
interface CopyTarget {
  handle: CopyEnd & { close(): Promise<void> };
  /** Closes the target; removes it when `store copy` created it (a SQLite file that did not exist). */
  discard(): Promise<void>;
}

/**
 * Opens `--to`: a path is a SQLite store (created, mode 0600, when missing); a `postgres://` URL is a PostgreSQL
 * database (migrated to this build's schema; the password from PGPASSWORD or ~/.pgpass: one inside the URL on
 * the command line is refused before connecting, argv being visible to every user of the host).
 * @throws UsageError (exit 2) for a password in the URL, another scheme, or the current store given as the target;
 * what opening the store throws (login refused, unreachable, …).
 */
async function openCopyTarget(cli: CliContext, to: string): Promise<CopyTarget> {
  const loc = locateStore(to, '--to');
  if (loc.backend === 'postgres') {
    if (loc.display === cli.storePath) throw new UsageError(`--to ${loc.display} is the current store; give a new, empty store`);
    const handle = await openStoreHandle(loc, { create: true });
    return { handle, discard: () => handle.close() };
  }
  const file = loc.path;
  const same = (a: string, b: string) => a === b || (fs.existsSync(a) && fs.existsSync(b) && fs.realpathSync(a) === fs.realpathSync(b));
  if (cli.storeLocation.backend === 'sqlite' && same(file, cli.storeLocation.path)) throw new UsageError(`--to ${file} is the current store; give a new, empty store`);
  const existed = fs.existsSync(file);
  const handle = await openStoreHandle(loc, { create: true });
  return {
    handle,
    discard: async () => {
      await handle.close();
      if (!existed) for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
    },
  };
}
