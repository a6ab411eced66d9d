/**
 * `switchboard key init|status`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples } from './command.js';
import { encodeKey, findMasterKey, fingerprint, generateKey, HOW_TO_PROVIDE_KEY, writeKeyFile } from '../crypto/keys.js';
import { bindNewKey, describeSource, keyVersions } from '../core/vault.js';
import { KeyError } from '../core/errors.js';
import { storeId } from '../store/db.js';

/** Registers the `key` commands. */
export function registerKey(program: Command, io: Io): void {
  const key = program.command('key').description('create and inspect the master key that seals provider secrets');

  examples(
    key
      .command('init')
      .description('create a new master key for this store: write it to a file (0600) or print an export line')
      .option('--file <path>', 'write the key to this file (mode 0600) instead of printing it')
      .option('--force', 'overwrite an existing key file')
      .action(
        action<{ file?: string; force?: boolean }>(io, (cli, _args, opts) => {
          const ctx = cli.core();
          const current = keyVersions(ctx).find((k) => k.retiredAt === null);
          if (current) {
            throw new KeyError(`this store already has key #${current.id} (fingerprint ${current.fingerprint}); refusing to create another`);
          }
          const k = generateKey();
          const fp = fingerprint(k);
          if (opts.file) {
            const file = path.resolve(opts.file);
            writeKeyFile(file, k, opts.force === true);
            let keyId: number;
            try {
              keyId = bindNewKey(ctx, fp);
            } catch (err) {
              fs.rmSync(file, { force: true });
              throw err;
            }
            cli.out.result({ keyId, fingerprint: fp, file, store: cli.storePath }, () =>
              [`Created key #${keyId} (fingerprint ${fp}) in ${file} (mode 0600).`, `Use it with:  export SWITCHBOARD_KEY_FILE=${file}`].join('\n'),
            );
            return;
          }
          const keyId = bindNewKey(ctx, fp);
          const line = `export SWITCHBOARD_MASTER_KEY=${encodeKey(k)}`;
          cli.out.info(`Created key #${keyId} (fingerprint ${fp}). Keep it safe: without it this store's secrets cannot be opened.`);
          cli.out.result({ keyId, fingerprint: fp, export: line, store: cli.storePath }, () => line);
        }),
      ),
    ['switchboard key init --file ~/.config/switchboard/master.key', 'eval "$(switchboard key init)"'],
  );

  examples(
    key
      .command('status')
      .description('say where the master key comes from and whether it matches the store (exit 5 if not)')
      .action(
        action(io, (cli) => {
          const ctx = cli.core();
          const master = findMasterKey(cli.io.env);
          const versions = keyVersions(ctx);
          const current = versions.find((v) => v.retiredAt === null) ?? null;
          const fp = master ? fingerprint(master.key) : null;
          const match = fp ? versions.find((v) => v.fingerprint === fp) : undefined;
          const matches = Boolean(master && (current === null || current.fingerprint === fp));
          const status = {
            store: cli.storePath,
            storeId: storeId(ctx.db),
            source: master?.source ?? null,
            location: master?.location ?? null,
            fingerprint: fp,
            keyId: match?.id ?? null,
            storeKeyId: current?.id ?? null,
            matches,
            versions,
          };
          cli.out.result(status, () =>
            [
              cli.out.fields([
                ['store', `${status.store} (id ${status.storeId})`],
                ['key source', master ? describeSource(master) : 'none'],
                ['fingerprint', fp ?? '-'],
                ['store key', current ? `#${current.id} (fingerprint ${current.fingerprint})` : 'none yet (the first key used will be bound)'],
                ['matches', matches ? 'yes' : 'no'],
              ]),
              '',
              versions.length
                ? cli.out.table(
                    ['KEY', 'FINGERPRINT', 'CREATED', 'RETIRED', 'SECRETS SEALED'],
                    versions.map((v) => [`#${v.id}`, v.fingerprint, v.createdAt, v.retiredAt, v.sealedSecrets]),
                  )
                : '',
            ].join('\n'),
          );
          if (!master) throw new KeyError(`no master key: ${HOW_TO_PROVIDE_KEY}`);
          if (!matches) throw new KeyError(`the key from ${describeSource(master)} does not match this store's key #${current?.id}`);
        }),
      ),
    ['switchboard key status', 'switchboard key status --json'],
  );
}
