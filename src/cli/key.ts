/**
 * `switchboard key init|status|rotate`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { CliContext, Io } from './context.js';
import type { CoreContext } from '../core/context.js';
import { confirmOrYes } from './prompt.js';
import { action, examples } from './command.js';
import { encodeKey, findMasterKey, fingerprint, generateKey, writeKeyFile } from '../crypto/keys.js';
import { KEYCHAIN_SERVICE, keychainDelete, keychainGet, keychainProbe, keychainSet } from '../crypto/keychain.js';
import { assertKeyLost, bindNewKey, describeSource, keyVersions, lookupMasterKey, noKeyError, requireKey, resetLostKey, rotateKey, storeAccount } from '../core/vault.js';
import { KeyError, UsageError } from '../errors.js';
import { listProviders } from '../core/providers.js';

interface NewKeyFlags {
  file?: string;
  keychain?: boolean;
  force?: boolean;
}

/** The `--json` of `key init` and `key reset`: where the new key went; fields that do not apply are null. */
function newKeyJson(cli: CliContext, r: { keyId: number } & Record<string, unknown>, fp: string, where: { source: 'file' | 'keychain' | 'env'; file?: string; account?: string; exportLine?: string }) {
  return {
    ...r,
    fingerprint: fp,
    source: where.source,
    file: where.file ?? null,
    keychainService: where.account ? KEYCHAIN_SERVICE : null,
    keychainAccount: where.account ?? null,
    export: where.exportLine ?? null,
    storePath: cli.storePath,
  };
}

/**
 * Makes a new key, stores it (key file, keychain, or an export line on stdout) and records it with `bind`,
 * removing the stored key again if `bind` fails. Prints the result, with what `bind` returned in it.
 */
async function storeNewKey(
  cli: CliContext,
  ctx: CoreContext,
  opts: NewKeyFlags,
  bind: (fp: string, key: Buffer) => Promise<{ keyId: number } & Record<string, unknown>>,
): Promise<void> {
  if (opts.file && opts.keychain) throw new UsageError('give only one of --file and --keychain');
  const k = generateKey();
  const fp = fingerprint(k);
  const bindOrUndo = async (undo: () => void) => {
    try {
      return await bind(fp, k);
    } catch (err) {
      undo();
      throw err;
    }
  };
  if (opts.file) {
    const file = path.resolve(opts.file);
    writeKeyFile(file, k, opts.force === true);
    const r = await bindOrUndo(() => fs.rmSync(file, { force: true }));
    cli.out.result(newKeyJson(cli, r, fp, { source: 'file', file }), () =>
      [`Created key #${r.keyId} (fingerprint ${fp}) in ${file} (mode 0600).`, `Use it with:  export SWITCHBOARD_KEY_FILE=${file}`].join('\n'),
    );
    return;
  }
  if (opts.keychain) {
    const account = await storeAccount(ctx);
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
    const r = await bindOrUndo(() => keychainDelete(account, ctx.env));
    cli.out.result(newKeyJson(cli, r, fp, { source: 'keychain', account }), () =>
      `Created key #${r.keyId} (fingerprint ${fp}) in the OS keychain (service ${KEYCHAIN_SERVICE}, account ${account}).\n` +
      'It is used whenever SWITCHBOARD_MASTER_KEY and SWITCHBOARD_KEY_FILE are not set.',
    );
    return;
  }
  const r = await bind(fp, k);
  const line = `export SWITCHBOARD_MASTER_KEY=${encodeKey(k)}`;
  cli.out.info(`Created key #${r.keyId} (fingerprint ${fp}). Keep it safe: without it this store's secrets cannot be opened.`);
  cli.out.result(newKeyJson(cli, r, fp, { source: 'env', exportLine: line }), () => line);
}

/** Registers the `key` commands. */
export function registerKey(program: Command, io: Io): void {
  const key = program.command('key').description('create, inspect and rotate the master key that seals provider secrets');
  examples(key, ['switchboard key init --file ~/.config/switchboard/master.key', 'switchboard key status', 'switchboard key rotate']);

  examples(
    key
      .command('init')
      .description('create a new master key for this store: in a key file (0600), in the OS keychain, or printed as an export line; with SWITCHBOARD_MASTER_KEY or SWITCHBOARD_KEY_FILE set, bind the store to their key (a SWITCHBOARD_KEY_FILE not made yet gets the new key)')
      .option('--file <path>', 'write the key to this file (mode 0600)')
      .option('--keychain', `store the key in the OS keychain (Secret Service; service "${KEYCHAIN_SERVICE}", account = the store id)`)
      .option('--force', 'overwrite an existing key file or keychain item')
      .action(
        action<NewKeyFlags>(io, async (cli, _args, opts) => {
          const ctx = await cli.core({ create: true });
          const current = (await keyVersions(ctx)).find((k) => k.retiredAt === null);
          if (current) {
            throw new KeyError(`this store already has key #${current.id} (fingerprint ${current.fingerprint}); refusing to create another (use \`key rotate\` to replace it)`);
          }
          // The key the environment names (SWITCHBOARD_MASTER_KEY, SWITCHBOARD_KEY_FILE) is the one every later
          // command uses: a new key anywhere else would leave the store bound to a key those commands never see (each
          // would exit 5). So: a key the environment gives binds the store; SWITCHBOARD_KEY_FILE naming a file not
          // made yet is where the new key goes; a new key elsewhere is refused.
          const inline = ctx.env.SWITCHBOARD_MASTER_KEY ? 'SWITCHBOARD_MASTER_KEY' : undefined;
          const envFile = !inline && ctx.env.SWITCHBOARD_KEY_FILE ? path.resolve(ctx.env.SWITCHBOARD_KEY_FILE) : undefined;
          const target = opts.file ? path.resolve(opts.file) : undefined;
          const shadowing = inline ?? (envFile && (opts.keychain || (target && target !== envFile)) ? 'SWITCHBOARD_KEY_FILE' : undefined);
          if (shadowing && (opts.file || opts.keychain)) {
            const other = opts.file ? `the key file ${opts.file}` : 'the OS keychain';
            throw new UsageError(
              `${shadowing} is set, and commands use its key before ${other}: unset it to create a new key there, or run \`switchboard key init\` without ${opts.file ? '--file' : '--keychain'} to bind this store to the key it names`,
            );
          }
          if (inline || (envFile && !target && fs.existsSync(envFile))) {
            const given = findMasterKey(ctx.env)!;
            const fp = fingerprint(given.key);
            const keyId = await bindNewKey(ctx, fp);
            const where = given.source === 'file' ? ({ source: 'file', file: given.location } as const) : ({ source: 'env' } as const);
            cli.out.result(newKeyJson(cli, { keyId }, fp, where), () => `Bound this store to key #${keyId} (fingerprint ${fp}) from ${describeSource(given)}; no new key was made.`);
            return;
          }
          // SWITCHBOARD_KEY_FILE names a file not made yet (or --file names the same one): the new key goes there.
          if (envFile && !target) opts = { ...opts, file: envFile };
          await storeNewKey(cli, ctx, opts, async (fp) => ({ keyId: await bindNewKey(ctx, fp) }));
        }),
      ),
    ['switchboard key init --file ~/.config/switchboard/master.key', 'switchboard key init --keychain', 'eval "$(switchboard key init)"'],
  );

  examples(
    key
      .command('status')
      .description('say where the master key comes from, whether it matches the store (exit 5 if not), and list key versions')
      .action(
        action(io, async (cli) => {
          const ctx = await cli.core();
          let found = await lookupMasterKey(ctx);
          let current = (await keyVersions(ctx)).find((v) => v.retiredAt === null) ?? null;
          let problem: KeyError | null = null;
          if (found.master && current && fingerprint(found.master.key) !== current.fingerprint) {
            // A retired key may mean an interrupted rotation, which requireKey completes; otherwise it says what the store needs.
            try {
              await requireKey(ctx);
              found = await lookupMasterKey(ctx);
              current = (await keyVersions(ctx)).find((v) => v.retiredAt === null) ?? null;
            } catch (err) {
              if (!(err instanceof KeyError)) throw err;
              problem = err;
            }
          }
          const versions = await keyVersions(ctx);
          const master = found.master;
          const fp = master ? fingerprint(master.key) : null;
          const match = fp ? versions.find((v) => v.fingerprint === fp) : undefined;
          const matches = Boolean(master && (current === null || current.fingerprint === fp));
          const store = await cli.describeStore();
          const status = {
            storePath: cli.storePath,
            storeId: await storeAccount(ctx),
            store,
            source: master?.source ?? null,
            location: master?.location ?? null,
            fingerprint: fp,
            keyId: match?.id ?? null,
            storeKeyId: current?.id ?? null,
            matches,
            keychain: found.keychain ? (found.keychain.status === 'unavailable' ? `unavailable: ${found.keychain.detail}` : found.keychain.status === 'ok' ? 'has the key' : 'no key for this store') : 'not consulted (env or key file set)',
            versions: versions.map((v) => ({ id: v.id, fingerprint: v.fingerprint, createdAt: v.createdAt, retiredAt: v.retiredAt, sealedSecretCount: v.sealedSecrets })),
          };
          cli.out.result(status, () =>
            [
              cli.out.fields([
                ['store', `${status.storePath} (id ${status.storeId})`],
                ['backend', `${store.backend === 'postgres' ? 'PostgreSQL' : 'SQLite'} ${store.serverVersion}, schema version ${store.schemaVersion}`],
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
                    versions.map((v) => [`#${v.id}`, v.fingerprint, cli.out.time(v.createdAt), cli.out.time(v.retiredAt), v.sealedSecrets]),
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
        action<{ printNewKey?: boolean }>(io, async (cli, _args, opts) => {
          const ctx = await cli.core();
          const started = performance.now();
          const r = await rotateKey(ctx, {
            // Printed before the store switches keys, so a crash cannot leave a store whose key was never shown.
            publishEnvKey: opts.printNewKey
              ? (line, fp) => {
                  if (cli.out.opts.json) cli.out.result({ export: line, fingerprint: fp, storePath: cli.storePath }, () => '');
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
          cli.out.result(
            {
              oldKeyId: r.oldKeyId,
              newKeyId: r.newKeyId,
              oldFingerprint: r.oldFingerprint,
              fingerprint: r.fingerprint,
              resealedCount: r.resealed,
              source: r.source,
              location: r.location,
              storedIn: r.storedIn,
              promoteFailed: r.promoteFailed ?? null,
              elapsedMs,
            },
            () => summary,
          );
        }),
      ),
    ['SWITCHBOARD_KEY_FILE=~/.config/switchboard/master.key switchboard key rotate', 'switchboard key rotate --print-new-key   # key from SWITCHBOARD_MASTER_KEY'],
  );

  examples(
    key
      .command('reset')
      .description('for a LOST key: drop every sealed secret (they cannot be opened without it), retire the lost key, and create a new one like `key init`; then enter the secrets again with `provider update`')
      .option('--file <path>', 'write the new key to this file (mode 0600)')
      .option('--keychain', 'store the new key in the OS keychain')
      .option('--force', 'overwrite an existing key file or keychain item')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<NewKeyFlags & { yes?: boolean }>(io, async (cli, _args, opts) => {
          const ctx = await cli.core();
          const refs = (await listProviders(ctx)).filter((p) => p.keyId !== null).map((p) => p.ref);
          await assertKeyLost(ctx); // before asking: with a working key there is nothing to confirm
          await confirmOrYes(cli, opts.yes, `Drop the sealed secrets of ${refs.length} provider config(s) and start a new key?`);
          await storeNewKey(cli, ctx, opts, async (_fp, newKey) => {
            const r = await resetLostKey(ctx, newKey);
            return { keyId: r.newKeyId, lostKeyId: r.lostKeyId, droppedProviders: r.dropped };
          });
          if (refs.length > 0) {
            cli.out.info(`Dropped the secrets of: ${refs.join(', ')}.\nEnter them again with: switchboard provider update <ref> --secret-env <name>=ENV_VAR (or --secrets-stdin)`);
          }
        }),
      ),
    ['switchboard key reset --file ~/.config/switchboard/master.key --yes', 'switchboard key reset --keychain'],
  );
}
