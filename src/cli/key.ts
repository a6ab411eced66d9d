/**
 * `switchboard key init|status|rotate`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples } from './command.js';
import { encodeKey, fingerprint, generateKey, writeKeyFile } from '../crypto/keys.js';
import { KEYCHAIN_SERVICE, keychainDelete, keychainGet, keychainProbe, keychainSet } from '../crypto/keychain.js';
import { bindNewKey, describeSource, keyVersions, lookupMasterKey, noKeyError, requireKey, rotateKey } from '../core/vault.js';
import { KeyError, UsageError } from '../core/errors.js';
import { storeId } from '../store/db.js';

/** Registers the `key` commands. */
export function registerKey(program: Command, io: Io): void {
  const key = program.command('key').description('create, inspect and rotate the master key that seals provider secrets');

  examples(
    key
      .command('init')
      .description('create a new master key for this store: in a key file (0600), in the OS keychain, or printed as an export line')
      .option('--file <path>', 'write the key to this file (mode 0600)')
      .option('--keychain', `store the key in the OS keychain (Secret Service; service "${KEYCHAIN_SERVICE}", account = the store id)`)
      .option('--force', 'overwrite an existing key file or keychain item')
      .action(
        action<{ file?: string; keychain?: boolean; force?: boolean }>(io, (cli, _args, opts) => {
          if (opts.file && opts.keychain) throw new UsageError('give only one of --file and --keychain');
          const ctx = cli.core();
          const current = keyVersions(ctx).find((k) => k.retiredAt === null);
          if (current) {
            throw new KeyError(`this store already has key #${current.id} (fingerprint ${current.fingerprint}); refusing to create another (use \`key rotate\` to replace it)`);
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
            cli.out.result({ keyId, fingerprint: fp, source: 'file', file, store: cli.storePath }, () =>
              [`Created key #${keyId} (fingerprint ${fp}) in ${file} (mode 0600).`, `Use it with:  export SWITCHBOARD_KEY_FILE=${file}`].join('\n'),
            );
            return;
          }
          if (opts.keychain) {
            const account = storeId(ctx.db);
            const probe = keychainProbe(account, ctx.env);
            if (probe.status === 'unavailable') throw new KeyError(`cannot use the OS keychain: ${probe.detail}`);
            if (probe.status === 'ok' && !opts.force) {
              throw new UsageError(`--keychain: the keychain already holds a key for store ${account}; refusing to overwrite it (use --force)`);
            }
            const set = keychainSet(account, encodeKey(k), ctx.env);
            if (set.status === 'unavailable') throw new KeyError(`cannot store the key in the OS keychain: ${set.detail}`);
            const back = keychainGet(account, ctx.env);
            if (back.status !== 'ok' || back.value !== encodeKey(k)) {
              keychainDelete(account, ctx.env);
              throw new KeyError('the OS keychain did not give the key back after storing it; nothing was changed');
            }
            let keyId: number;
            try {
              keyId = bindNewKey(ctx, fp);
            } catch (err) {
              keychainDelete(account, ctx.env);
              throw err;
            }
            cli.out.result({ keyId, fingerprint: fp, source: 'keychain', service: KEYCHAIN_SERVICE, account, store: cli.storePath }, () =>
              `Created key #${keyId} (fingerprint ${fp}) in the OS keychain (service ${KEYCHAIN_SERVICE}, account ${account}).\n` +
              'It is used whenever SWITCHBOARD_MASTER_KEY and SWITCHBOARD_KEY_FILE are not set.',
            );
            return;
          }
          const keyId = bindNewKey(ctx, fp);
          const line = `export SWITCHBOARD_MASTER_KEY=${encodeKey(k)}`;
          cli.out.info(`Created key #${keyId} (fingerprint ${fp}). Keep it safe: without it this store's secrets cannot be opened.`);
          cli.out.result({ keyId, fingerprint: fp, source: 'env', export: line, store: cli.storePath }, () => line);
        }),
      ),
    ['switchboard key init --file ~/.config/switchboard/master.key', 'switchboard key init --keychain', 'eval "$(switchboard key init)"'],
  );

  examples(
    key
      .command('status')
      .description('say where the master key comes from, whether it matches the store (exit 5 if not), and list key versions')
      .action(
        action(io, (cli) => {
          const ctx = cli.core();
          let found = lookupMasterKey(ctx);
          let current = keyVersions(ctx).find((v) => v.retiredAt === null) ?? null;
          let problem: KeyError | null = null;
          if (found.master && current && fingerprint(found.master.key) !== current.fingerprint) {
            // A retired key may mean an interrupted rotation, which requireKey completes; otherwise it says what the store needs.
            try {
              requireKey(ctx);
              found = lookupMasterKey(ctx);
              current = keyVersions(ctx).find((v) => v.retiredAt === null) ?? null;
            } catch (err) {
              if (!(err instanceof KeyError)) throw err;
              problem = err;
            }
          }
          const versions = keyVersions(ctx);
          const master = found.master;
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
            keychain: found.keychain ? (found.keychain.status === 'unavailable' ? `unavailable: ${found.keychain.detail}` : found.keychain.status === 'ok' ? 'has the key' : 'no key for this store') : 'not consulted (env or key file set)',
            versions,
          };
          cli.out.result(status, () =>
            [
              cli.out.fields([
                ['store', `${status.store} (id ${status.storeId})`],
                ['key source', master ? describeSource(master) : 'none'],
                ['key', master ? `${match ? `#${match.id}` : 'unknown to this store'} (fingerprint ${fp})` : '-'],
                ['store key', current ? `#${current.id} (fingerprint ${current.fingerprint})` : 'none yet (the first key used will be bound)'],
                ['matches', matches ? 'yes' : 'no'],
                ['keychain', status.keychain],
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
          if (!master) throw noKeyError(found);
          if (problem) throw problem;
          if (!matches) throw new KeyError(`the key from ${describeSource(master)} does not match this store's key #${current?.id}`);
        }),
      ),
    ['switchboard key status', 'switchboard key status --json'],
  );

  examples(
    key
      .command('rotate')
      .description('make a new key version, re-seal every secret with it in one transaction, and store it where the old key came from')
      .option('--print-new-key', 'for a key from SWITCHBOARD_MASTER_KEY: print the new export line (required, as switchboard cannot update your environment)')
      .action(
        action<{ printNewKey?: boolean }>(io, (cli, _args, opts) => {
          const ctx = cli.core();
          const started = performance.now();
          const r = rotateKey(ctx, {
            // Printed before the store switches keys, so a crash cannot leave a store whose key was never shown.
            publishEnvKey: opts.printNewKey
              ? (line, fp) => {
                  if (cli.out.opts.json) cli.out.result({ export: line, fingerprint: fp, store: cli.storePath }, () => '');
                  else cli.out.stdout.write(line + '\n');
                }
              : undefined,
            onCommitStart: (n) => cli.out.info(`re-sealing the secrets of ${n} provider config(s)…`),
          });
          const elapsedMs = Math.round(performance.now() - started);
          if (r.promoteFailed) {
            cli.out.warn(`the store now uses key #${r.newKeyId}, but the new key could not be moved into place (${r.promoteFailed}); the next command that finds the key finishes the move`);
          }
          const summary = `Rotated to key #${r.newKeyId} (fingerprint ${r.fingerprint}): re-sealed ${r.resealed} provider config(s) in ${elapsedMs} ms; key #${r.oldKeyId} retired. The new key is in ${r.storedIn}.`;
          if (r.source === 'env') {
            // The export line (or its JSON) is already on stdout.
            cli.out.info(summary);
            cli.out.info('Set SWITCHBOARD_MASTER_KEY to the printed value wherever it is defined; the old key no longer opens this store.');
            return;
          }
          cli.out.result({ ...r, elapsedMs }, () => summary);
        }),
      ),
    ['SWITCHBOARD_KEY_FILE=~/.config/switchboard/master.key switchboard key rotate', 'switchboard key rotate --print-new-key   # key from SWITCHBOARD_MASTER_KEY'],
  );
}
