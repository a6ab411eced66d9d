/**
 * `doctor`: checks the store, the master key, the keychain and every provider config, and says how to fix what
 * is wrong. Returns plain data; prints nothing. No check result holds a secret value (only names, refs, key
 * fingerprints and library error texts, which carry no secrets).
 */
import fs from 'node:fs';
import type { CoreContext } from './context.js';
import { KeyError, SwitchboardError } from '../errors.js';
import { configAuthProblem, configSecrets, listProviders, missingSecrets, type ProviderConfig } from './providers.js';
import { unverifiedSenderDomains } from './domains.js';
import { keyVersions, lookupMasterKey, requireKey, describeSource, storeAccount, type ActiveKey } from './vault.js';
import { fingerprint, HOW_TO_PROVIDE_KEY, keyFileModeProblem, pendingKeyFile } from '../crypto/keys.js';
import { KEYCHAIN_SERVICE, keychainProbe } from '../crypto/keychain.js';
import { checkStore, inspectStore, SCHEMA_VERSION } from '../store/db.js';
import { publicUrl } from './tracking.js';
import type { StoreDescription } from '../store/open.js';

/** Outcome of one check. */
export type CheckStatus = 'pass' | 'warn' | 'fail';

/** One row of the doctor's report. `fix` says what to do when the status is not `pass`. */
export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
  fix: string | null;
}

/** What the doctor needs: the store path (checked before anything opens it) and a way to open it. */
export interface DoctorDeps {
  storePath: string;
  /** Opens (and, if needed, migrates) the store. */
  open(): Promise<CoreContext>;
  /** Run SQLite's full `integrity_check` (also indexes) instead of `quick_check` (`doctor --deep`). */
  deep?: boolean;
  /** The environment (for the key file's mode, checked before the key is read). */
  env: NodeJS.ProcessEnv;
  /** The store's engine (default `sqlite`): a PostgreSQL store has no file to check (see {@link runPgStoreChecks}). */
  backend?: 'sqlite' | 'postgres';
  /** The engine's version, schema version and location without password (a PostgreSQL store). */
  describe?(): Promise<StoreDescription>;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs every check, in order: store (path, mode 0600, integrity: `quick_check` or with `deep` `integrity_check`,
 * schema version, WAL, writable), key (key file mode 0600/0400, source, match, staged rotation leftovers),
 * keychain (reachable or why not), then per provider config: its secrets (the ones its kind needs are there and
 * open), its MAC (changed outside switchboard?), its last verification, and (SendGrid, SES) whether its sender
 * domain is verified. Never throws for a failed check; the caller decides the exit code.
 */
export async function runDoctor(deps: DoctorDeps): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const add = (check: string, status: CheckStatus, detail: string, fix: string | null = null) => out.push({ check, status, detail, fix });
  const file = deps.storePath;
  if (deps.backend === 'postgres') return runPgStoreChecks(deps);

  // Store
  if (!fs.existsSync(file)) {
    add('store path', 'fail', `no store at ${file}`, 'create one with `switchboard tenant add <id> --name <name>`, or point --store / SWITCHBOARD_STORE at your store');
    return out;
  }
  add('store path', 'pass', file);
  const mode = fs.statSync(file).mode & 0o777;
  if (mode === 0o600) add('store mode', 'pass', '0600 (owner only)');
  else add('store mode', 'fail', `mode 0${mode.toString(8)}: others can read the sealed secrets and the audit log`, `chmod 600 ${file}`);
  const health = checkStore(file, deps.deep === true);
  if (!health.ok) {
    add(
      'store integrity',
      'fail',
      `PRAGMA ${health.pragma} found damage: ${health.problems.slice(0, 3).join('; ')}${health.problems.length > 3 ? ` (and ${health.problems.length - 3} more)` : ''}`,
      `restore your last backup (\`switchboard store backup --out FILE\` makes them), or salvage what is readable: sqlite3 ${file} .recover | sqlite3 recovered.db, then point --store at recovered.db and run \`switchboard doctor --deep\``,
    );
    return out;
  }
  add('store integrity', 'pass', `PRAGMA ${health.pragma}: ok`);
  try {
    const facts = inspectStore(file);
    if (facts.schemaVersion === SCHEMA_VERSION) add('store schema', 'pass', `version ${facts.schemaVersion}`);
    else if (facts.schemaVersion < SCHEMA_VERSION) add('store schema', 'warn', `version ${facts.schemaVersion}; this switchboard writes ${SCHEMA_VERSION}`, 'any command migrates it (back up the file first)');
    else add('store schema', 'fail', `version ${facts.schemaVersion} is newer than this switchboard (${SCHEMA_VERSION})`, 'upgrade switchboard');
    if (facts.journalMode === 'wal') add('store journal', 'pass', 'WAL');
    else add('store journal', 'warn', `journal mode ${facts.journalMode} (expected WAL)`, 'run any switchboard command on this store; it switches to WAL');
    if (facts.schemaVersion > SCHEMA_VERSION) return out;
  } catch (err) {
    add('store schema', 'fail', message(err), 'point --store at a switchboard store');
    return out;
  }
  let ctx: CoreContext;
  try {
    ctx = await deps.open();
    add('store writable', 'pass', await ctx.store.checkWritable());
  } catch (err) {
    add('store writable', 'fail', message(err), `check the permissions of ${file} and its folder, and that no process holds the store for long`);
    return out;
  }
  await runKeyAndProviderChecks(ctx, add);
  return out;
}

/**
 * The checks after the store's, the same on both engines: key (key file mode, source, match, staged rotation
 * leftovers), keychain, each provider config (secrets, MAC, last verification), sender domains, public URL.
 */
async function runKeyAndProviderChecks(ctx: CoreContext, add: (check: string, status: CheckStatus, detail: string, fix?: string | null) => void): Promise<void> {

  // Key
  let key: ActiveKey | null = null;
  const account = await storeAccount(ctx);
  const versions = await keyVersions(ctx);
  const current = versions.find((v) => v.retiredAt === null);
  let viaKeychain = false;
  /** Where the key came from when not from the keychain (`SWITCHBOARD_MASTER_KEY`, `key file …`). */
  let keyElsewhere: string | undefined;
  const keyFile = ctx.env.SWITCHBOARD_MASTER_KEY ? undefined : ctx.env.SWITCHBOARD_KEY_FILE || undefined;
  let keyFileProblem: string | null = null;
  if (keyFile) {
    try {
      keyFileProblem = keyFileModeProblem(keyFile);
      if (keyFileProblem) add('key file mode', 'fail', keyFileProblem, `chmod 600 ${keyFile}`);
      else add('key file mode', 'pass', `0${(fs.statSync(keyFile).mode & 0o777).toString(8)} (owner only)`);
    } catch {
      // Unreadable or missing: the key source check below says so.
    }
  }
  try {
    if (keyFileProblem) throw new KeyError(`key file ${keyFile} is not used while its mode lets others read it (see key file mode)`);
    const found = await lookupMasterKey(ctx);
    viaKeychain = found.keychain !== undefined;
    if (found.master && !viaKeychain) keyElsewhere = describeSource(found.master);
    if (!found.master) {
      add('key source', 'fail', `no master key: ${found.reason}`, HOW_TO_PROVIDE_KEY);
    } else {
      const fp = fingerprint(found.master.key);
      add('key source', 'pass', `${describeSource(found.master)} (fingerprint ${fp})`);
      if (!current) {
        add('key match', 'warn', 'this store has no key yet; the first command that needs one binds the key it finds', 'run `switchboard key init --file <path>` or `--keychain` to create one deliberately');
      } else {
        try {
          key = await requireKey(ctx);
          add('key match', 'pass', `key #${key.keyId} is the store's current key`);
        } catch (err) {
          if (!(err instanceof KeyError)) throw err;
          add('key match', 'fail', err.message, 'provide the key this store needs (see `switchboard key status`); if it is lost, see "I lost my key" in the README');
        }
      }
      if (found.master.source === 'file' && fs.existsSync(pendingKeyFile(found.master.location))) {
        add('key rotation', 'warn', `a staged key ${pendingKeyFile(found.master.location)} is left from an interrupted \`key rotate\` that did not switch the store`, `remove it (the store does not use it): rm ${pendingKeyFile(found.master.location)}`);
      }
    }
  } catch (err) {
    if (!(err instanceof SwitchboardError)) throw err;
    add('key source', 'fail', err.message, keyFileProblem ? `chmod 600 ${keyFile}` : HOW_TO_PROVIDE_KEY);
  }

  // Keychain
  const kc = keychainProbe(account, ctx.env);
  if (kc.status === 'unavailable' && keyElsewhere) {
    // The key comes from SWITCHBOARD_MASTER_KEY or a key file: the keychain is not consulted (as `key status`
    // says), so a host without one (CI, cron, a container) is not warned about it.
    add('keychain', 'pass', `not consulted: the key comes from ${keyElsewhere} (unavailable here: ${kc.detail})`);
  } else if (kc.status === 'unavailable') {
    add(
      'keychain',
      viaKeychain ? 'fail' : 'warn',
      `unavailable: ${kc.detail}`,
      'start a Secret Service (e.g. gnome-keyring-daemon) in this session and unlock it, or use SWITCHBOARD_KEY_FILE / SWITCHBOARD_MASTER_KEY',
    );
  } else {
    add('keychain', 'pass', `reachable; ${kc.status === 'ok' ? 'holds' : 'has no'} a key for this store (service ${KEYCHAIN_SERVICE}, account ${account})`);
  }

  // Providers
  const providers = await listProviders(ctx);
  for (const p of providers) {
    const name = `provider ${p.ref}`;
    const problem = key ? await configAuthProblem(ctx, key, p) : null;
    await checkSecrets(add, ctx, key, p, problem);
    if (!key) add(`${name} integrity`, 'warn', 'not checked: no matching master key', 'fix the key checks above');
    else if (problem) add(`${name} integrity`, 'fail', problem.message, `check it: switchboard provider show ${p.ref}; then re-confirm it: switchboard provider update ${p.ref} --confirm`);
    else add(`${name} integrity`, 'pass', 'matches its MAC');
    if (!p.lastVerifiedAt) add(`${name} verified`, 'warn', 'never verified', `switchboard provider verify ${p.ref}`);
    else if (p.lastVerifyResult?.startsWith('ok')) add(`${name} verified`, 'pass', `${p.lastVerifyResult} (${p.lastVerifiedAt})`);
    else add(`${name} verified`, 'fail', `${p.lastVerifyResult} (${p.lastVerifiedAt})`, `check its settings and credentials, then: switchboard provider verify ${p.ref}`);
  }
  // Sender domains (domain authentication) of providers that need them.
  for (const u of await unverifiedSenderDomains(ctx)) {
    add(`provider ${u.ref} sender domain`, 'warn', `${u.domain} is ${u.status === 'missing' ? 'not added' : u.status}`, u.message);
  }
  // Delivery events: configs set up for webhooks need a public URL for sends to carry callback and unsubscribe URLs.
  const hooked = providers.filter((p) => ['eventWebhookPublicKey', 'snsTopicArn', 'unsubscribeMailto'].some((k) => p.settings[k] !== undefined) || 'appSecret' in p.secrets || 'webhookVerifyToken' in p.secrets);
  if (hooked.length > 0) {
    try {
      const url = await publicUrl(ctx);
      if (url.url) add('public URL', 'pass', `${url.url}${url.source === 'env' ? ' (SWITCHBOARD_PUBLIC_URL)' : ''}`);
      else {
        add(
          'public URL',
          'warn',
          `${hooked.map((p) => p.ref).join(', ')} ${hooked.length > 1 ? 'have' : 'has'} delivery-event or unsubscribe settings, but no public URL is known: sends carry no Twilio status callback and bulk e-mails no one-click unsubscribe link`,
          'switchboard events serve --public-url https://<host reaching it>  (or: switchboard events public-url <url>)',
        );
      }
    } catch (err) {
      add('public URL', 'fail', message(err), 'set SWITCHBOARD_PUBLIC_URL to an https URL, or unset it');
    }
  }
}

/**
 * `provider <ref> secrets`: the secrets its kind needs are there (by name; with the key, by opening them),
 * and they open with the store's key.
 */
async function checkSecrets(
  add: (check: string, status: CheckStatus, detail: string, fix?: string | null) => void,
  ctx: CoreContext,
  key: ActiveKey | null,
  p: ProviderConfig,
  authProblem: { message: string; secretsBroken: boolean } | null,
): Promise<void> {
  const check = `provider ${p.ref} secrets`;
  const reenter = (names: string[], confirm = false) =>
    `enter ${names.length > 1 ? 'them' : 'it'}: switchboard provider update ${p.ref}${confirm ? ' --confirm' : ''} ${names.map((n) => `--secret-env ${n}=ENV_VAR`).join(' ')} (or --secrets-stdin)`;
  const missing = (names: string[]) =>
    add(check, 'fail', `missing ${names.join(', ')}${p.healthDetail?.includes('key reset') ? ' (dropped by `key reset`)' : ''}: sends through it fail`, reenter(names));
  if (p.missingSecrets.length > 0) return missing(p.missingSecrets);
  if (Object.keys(p.secrets).length === 0) return add(check, 'pass', 'no secrets');
  if (!key) return add(check, 'warn', 'not checked: no matching master key', 'fix the key checks above');
  if (authProblem?.secretsBroken) return add(check, 'fail', authProblem.message, reenter(Object.keys(p.secrets), true));
  if (authProblem) return add(check, 'warn', 'not opened: the config fails its integrity check (see below)', null);
  let opened: Record<string, string>;
  try {
    opened = await configSecrets(ctx, key, p);
  } catch (err) {
    return add(check, 'fail', message(err), reenter(Object.keys(p.secrets)));
  }
  const lacking = missingSecrets(p.kind, p.settings, Object.keys(opened));
  if (lacking.length > 0) return missing(lacking);
  add(check, 'pass', `open with key #${key.keyId}`);
}

/**
 * The store checks of a PostgreSQL store (issue 14): the connection (server version and the URL without its
 * password), the schema version, and a write (a transaction that takes a transaction id, which a read-only
 * standby refuses); then the key and provider checks as on SQLite. Never throws for a failed check.
 */
async function runPgStoreChecks(deps: DoctorDeps): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const add = (check: string, status: CheckStatus, detail: string, fix: string | null = null) => out.push({ check, status, detail, fix });
  let ctx: CoreContext;
  try {
    ctx = await deps.open();
  } catch (err) {
    if (/newer than this switchboard/.test(message(err))) add('store schema', 'fail', message(err), 'upgrade switchboard');
    else add('store connection', 'fail', message(err), 'check the URL (host, port, database, sslmode), PGUSER and PGPASSWORD or ~/.pgpass, and that the server accepts connections');
    return out;
  }
  const d = await deps.describe!();
  add('store connection', 'pass', `PostgreSQL ${d.serverVersion} at ${d.location}`);
  add('store schema', 'pass', `version ${d.schemaVersion}`);
  try {
    add('store writable', 'pass', await ctx.store.checkWritable());
  } catch (err) {
    add('store writable', 'fail', message(err), 'grant the role write access to the database, and point it at the primary server, not a read-only standby');
    return out;
  }
  await runKeyAndProviderChecks(ctx, add);
  return out;
}
