/**
 * `switchboard provider add|list|show|update|remove|verify|route`.
 * Secrets are never read from argv: `--secret-env key=ENV_VAR`, `--secrets-stdin` (a JSON object), or a
 * masked prompt on a terminal.
 */
import type { Command } from 'commander';
import type { CliContext, Io } from './context.js';
import { action, channelFlag, collect, examples, intFlag, keyValues, required } from './command.js';
import { askConfirm, askInput, askSecret, askSelect, confirmOrYes } from './prompt.js';
import {
  addProvider,
  formatRef,
  getProvider,
  parseSetting,
  kindSpec,
  listProviders,
  removeProvider,
  resolveRoute,
  updateProvider,
  verifyProvider,
  type ProviderConfig,
} from '../core/providers.js';
import { OperationFailed, UsageError } from '../errors.js';
import { checkTenantId, listTenants } from '../core/tenants.js';
import { unverifiedSenderDomains } from '../core/domains.js';
import { CHANNELS } from '../core/context.js';
import { KINDS, settingSpecs, type KindSpec } from '../providers/registry.js';
import { DOMAIN_AUTH_KINDS } from '../providers/domain-auth.js';
import { NotFoundError } from '../errors.js';
import { providerJson } from './json.js';

/**
 * A provider kind as `provider kinds` shows it, generated from its {@link KindSpec} (and the list of kinds that
 * authenticate domains), so it cannot drift from what `provider add` accepts.
 */
export function kindJson(spec: KindSpec) {
  return {
    kind: spec.kind,
    channels: [...spec.channels],
    summary: spec.summary,
    settings: Object.entries(settingSpecs(spec)).map(([name, s]) => ({
      name,
      type: s.type,
      required: s.required === true,
      default: s.default ?? null,
      values: s.values ? [...s.values] : null,
      min: s.min ?? null,
      max: s.max ?? null,
      advanced: s.advanced === true,
      description: s.doc,
    })),
    secrets: Object.entries(spec.secrets).map(([name, s]) => ({ name, required: s.required, advanced: s.advanced === true, description: s.doc })),
    canVerify: spec.verifies !== undefined,
    verifies: spec.verifies ?? null,
    canBatch: spec.batchSize !== undefined,
    maxBatchSize: spec.batchSize ?? null,
    canAuthenticateDomains: DOMAIN_AUTH_KINDS.includes(spec.kind),
  };
}

/** The kinds that verify, one `kind: what it checks` line each (for `provider verify --help`). */
function verifyingKinds(): string {
  return [...KINDS.values()]
    .filter((k) => k.verifies !== undefined)
    .map((k) => `  ${k.kind}: ${k.verifies}`)
    .join('\n');
}

interface SecretFlags {
  secretEnv?: string[];
  secretsStdin?: boolean;
}

/**
 * Gathers secrets from `--secret-env`, `--secrets-stdin` and, on a terminal, masked prompts for the kind's
 * secrets not given (`promptFor`).
 * @throws UsageError naming the flag or the variable.
 */
async function gatherSecrets(cli: CliContext, flags: SecretFlags, promptFor: Array<{ name: string; required: boolean }>): Promise<Record<string, string>> {
  const secrets: Record<string, string> = {};
  for (const [key, variable] of Object.entries(keyValues('--secret-env', flags.secretEnv))) {
    const value = cli.io.env[variable];
    if (value === undefined || value === '') throw new UsageError(`--secret-env ${key}=${variable}: environment variable ${variable} is not set`);
    secrets[key] = value;
  }
  if (flags.secretsStdin) {
    const text = await cli.readStdin('--secrets-stdin');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UsageError('--secrets-stdin: standard input is not JSON (expected an object such as {"password": "…"})');
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError('--secrets-stdin: expected a JSON object of secret name → string');
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v !== 'string') throw new UsageError(`--secrets-stdin: secret "${k}" must be a string`);
      if (k in secrets) throw new UsageError(`secret "${k}" is given by both --secret-env and --secrets-stdin`);
      secrets[k] = v;
    }
  }
  if (cli.interactive) {
    for (const s of promptFor) {
      if (s.name in secrets) continue;
      const value = await askSecret(s.name, s.required);
      if (value) secrets[s.name] = value;
    }
  }
  return secrets;
}

/** Flags of `provider add`. */
export interface AddFlags extends SecretFlags {
  tenant?: string;
  system?: boolean;
  channel?: string;
  kind?: string;
  name?: string;
  priority?: string;
  set?: string[];
}

function verifyText(cli: CliContext, r: { ok: boolean; ref: string; detail: string }): string {
  return `${r.ok ? cli.out.c.green('ok') : cli.out.c.red('failed')}  ${r.ref}: ${r.detail}`;
}

/**
 * `provider add`. On a terminal (see {@link CliContext.interactive}) it asks for what the flags leave out: who the
 * config is for, the channel, the kind (a list), the name, each setting without a default, the secrets (masked),
 * then confirms and offers to run `provider verify`. Without a terminal a missing value is a usage error naming
 * its flag. Also used by the interactive `tenant add`.
 * @throws UsageError, NotFoundError, KeyError.
 */
export async function providerAddFlow(cli: CliContext, opts: AddFlags): Promise<void> {
  if (opts.tenant && opts.system) throw new UsageError('give exactly one of --tenant <id> and --system');
  // A system default can be the first thing in a new store; a tenant's config needs the tenant's store.
  const ctx = await cli.core({ create: opts.system === true || (opts.tenant === undefined && cli.interactive) });
  const ask = cli.interactive;
  const settings = keyValues('--set', opts.set);
  let tenantId: string | null | undefined = opts.system ? null : opts.tenant;
  if (tenantId === undefined && ask) {
    const who = await askSelect('Provider for', [
      { value: '', name: 'system default', description: 'used by tenants without their own provider, or with fallback on' },
      ...(await listTenants(ctx)).map((t) => ({ value: t.id, name: `${t.id} (${t.name})` })),
    ]);
    tenantId = who === '' ? null : who;
  }
  if (tenantId === undefined) throw new UsageError('give exactly one of --tenant <id> and --system');
  if (tenantId !== null) checkTenantId(tenantId, '--tenant');
  const kinds = [...KINDS.values()];
  let channelText = opts.channel;
  if (channelText === undefined && ask) {
    channelText = await askSelect('Channel', CHANNELS.filter((c) => kinds.some((k) => k.channels.includes(c))).map((c) => ({ value: c, name: c })));
  }
  const channel = channelFlag(channelText);
  let kind = opts.kind;
  if (kind === undefined && ask) {
    kind = await askSelect('Provider kind', kinds.filter((k) => k.channels.includes(channel)).map((k) => ({ value: k.kind, name: k.kind, description: k.summary })));
  }
  const spec = kindSpec(required(kind, '--kind', [...KINDS.keys()].join(' or ')), channel);
  let name = opts.name;
  if (ask) {
    if (name === undefined) name = await askInput('Name', { default: spec.kind, required: true });
    for (const [k, s] of Object.entries(spec.settings)) {
      if (k in settings || s.default !== undefined || s.advanced) continue;
      const v = await askInput(`${k} (${s.doc})`, {
        required: s.required,
        validate: (text) => {
          try {
            parseSetting(spec, k, text);
            return true;
          } catch (err) {
            return (err as Error).message;
          }
        },
      });
      if (v) settings[k] = v;
    }
  }
  const secrets = await gatherSecrets(cli, opts, Object.entries(spec.secrets).filter(([, sp]) => !sp.advanced).map(([n, sp]) => ({ name: n, required: sp.required })));
  const ref = formatRef({ tenantId, channel, name: name ?? spec.kind });
  if (ask) {
    const summary = [
      ...Object.entries(settings).map(([k, v]) => `${k}=${v}`),
      ...Object.keys(secrets).map((k) => `${k}=****`),
    ].join(', ');
    if (!(await askConfirm(`Add ${ref} (${spec.kind}${summary ? `; ${summary}` : ''})?`, true))) throw new UsageError('not added');
  }
  const p = await addProvider(ctx, {
    tenantId,
    channel,
    kind: spec.kind,
    name,
    priority: intFlag(opts.priority, '--priority', 0, 1_000_000),
    settings,
    secrets,
  });
  cli.out.result(providerJson(p), () => `Added provider ${p.ref} (${p.kind}, priority ${p.priority}${Object.keys(p.secrets).length ? `, secrets ${secretsText(p)}` : ''})`);
  if (ask && (await askConfirm(`Verify ${p.ref} now (connects and authenticates; sends nothing)?`, true))) {
    const r = await verifyProvider(ctx, p.ref);
    cli.out.info(verifyText(cli, r));
  }
}

function secretsText(p: ProviderConfig): string {
  const entries = Object.entries(p.secrets);
  const held = entries.map(([k, v]) => `${k}=${v}`);
  const missing = p.missingSecrets.map((k) => `${k}=MISSING`);
  return [...held, ...missing].join(' ') || '-';
}

/** The command that enters a config's missing secrets. */
function enterMissing(p: ProviderConfig): string {
  return `switchboard provider update ${p.ref} ${p.missingSecrets.map((k) => `--secret-env ${k}=ENV_VAR`).join(' ')}`;
}

function verifiedText(cli: CliContext, p: ProviderConfig): string {
  return p.lastVerifiedAt ? `${p.lastVerifyResult?.split(':')[0]} ${cli.out.time(p.lastVerifiedAt)}` : 'never';
}

function detail(cli: CliContext, p: ProviderConfig): string {
  return cli.out.fields([
    ['ref', p.ref],
    ['kind', p.kind],
    ['channel', p.channel],
    ['priority', p.priority],
    ['enabled', p.enabled ? 'yes' : 'no'],
    ['health', p.health + (p.healthDetail ? ` (${p.healthDetail})` : '')],
    ...Object.entries(p.settings).map(([k, v]): [string, unknown] => [`setting ${k}`, v]),
    ...Object.entries(p.secrets).map(([k, v]): [string, unknown] => [`secret ${k}`, v]),
    ...p.missingSecrets.map((k): [string, unknown] => [`secret ${k}`, `MISSING: sends fail until it is entered (${enterMissing(p)})`]),
    ['last verified', p.lastVerifiedAt ? `${cli.out.time(p.lastVerifiedAt)} ${p.lastVerifyResult}` : 'never'],
    ['created', cli.out.time(p.createdAt)],
    ['updated', cli.out.time(p.updatedAt)],
  ]);
}

/** Registers the `provider` commands. */
export function registerProvider(program: Command, io: Io): void {
  const provider = program.command('provider').description('manage provider configs (per tenant or system defaults), routes and credentials');
  examples(provider, ['switchboard provider kinds', 'switchboard provider add --system --channel email --kind outbox --set dir=/var/spool/switchboard', 'switchboard provider route --tenant acme-dental --channel email']);

  examples(
    provider
      .command('add')
      .description('add a provider config for a tenant or as a system default; on a terminal, asks for what the flags leave out')
      .option('--tenant <id>', 'the tenant it belongs to')
      .option('--system', 'a system default, used by tenants without their own provider or with fallback on')
      .option('--channel <channel>', 'email, sms or whatsapp')
      .option('--kind <kind>', `provider kind: ${[...KINDS.keys()].join(', ')}`)
      .option('--name <name>', 'name within the tenant and channel (default: the kind)')
      .option('--priority <n>', 'lower is tried first (default 100)')
      .option('--set <key=value>', 'a setting, e.g. host=smtp.example.com (repeatable)', collect)
      .option('--secret-env <key=ENV_VAR>', 'read a secret from an environment variable (repeatable)', collect)
      .option('--secrets-stdin', 'read secrets as a JSON object from standard input')
      .action(action<AddFlags>(io, async (cli, _args, opts) => providerAddFlow(cli, opts))),
    [
      'SMTP_PASS=… switchboard provider add --tenant acme-dental --channel email --kind smtp --set host=smtp.example.com --set user=acme --set from=noreply@acme.example --secret-env password=SMTP_PASS',
      'switchboard provider add --system --channel email --kind outbox --set dir=/var/spool/switchboard',
      'echo \'{"authToken":"…"}\' | switchboard provider add --tenant acme-dental --channel sms --kind twilio --set accountSid=AC… --set from=+14155550100 --secrets-stdin',
    ],
  );

  examples(
    provider
      .command('list')
      .description('list provider configs (secrets masked)')
      .option('--tenant <id>', 'only this tenant\'s')
      .option('--system', 'only system defaults')
      .option('--channel <channel>', 'only this channel')
      .action(
        action<{ tenant?: string; system?: boolean; channel?: string }>(io, async (cli, _args, opts) => {
          const ctx = await cli.core();
          const list = await listProviders(ctx, {
            tenantId: opts.system ? null : opts.tenant,
            channel: opts.channel ? channelFlag(opts.channel) : undefined,
          });
          cli.out.result(list.map(providerJson), () =>
            cli.out.list(
              ['REF', 'KIND', 'PRIORITY', 'ENABLED', 'HEALTH', 'SECRETS', 'VERIFIED'],
              list.map((p) => [p.ref, p.kind, p.priority, p.enabled ? 'yes' : 'no', p.health, secretsText(p), verifiedText(cli, p)]),
              'No provider configs. Add one with: switchboard provider add --system --channel email --kind outbox --set dir=./outbox',
            ),
          );
          for (const p of list.filter((c) => c.missingSecrets.length > 0)) {
            cli.out.warn(`${p.ref} is missing secret ${p.missingSecrets.join(', ')}: sends through it fail until entered with: ${enterMissing(p)}`);
          }
          for (const w of await unverifiedSenderDomains(ctx, { refs: list.map((p) => p.ref) })) cli.out.warn(w.message);
        }),
      ),
    ['switchboard provider list', 'switchboard provider list --tenant acme-dental --json'],
  );

  examples(
    provider
      .command('show <ref>')
      .description('show one provider config (secrets masked); ref is <tenant|system>/<channel>/<name>')
      .action(
        action(io, async (cli, [ref]) => {
          const p = await getProvider(await cli.core(), ref!);
          cli.out.result(providerJson(p), () => detail(cli, p));
        }),
      ),
    ['switchboard provider show acme-dental/email/smtp'],
  );

  examples(
    provider
      .command('update <ref>')
      .description('change settings, priority or enabled state, or replace one secret without retyping the others')
      .option('--set <key=value>', 'set a setting (repeatable)', collect)
      .option('--unset <key>', 'remove a setting (repeatable)', collect)
      .option('--priority <n>', 'lower is tried first')
      .option('--enable', 'enable the config')
      .option('--disable', 'disable the config (routes skip it)')
      .option('--secret-env <key=ENV_VAR>', 'replace a secret from an environment variable (repeatable)', collect)
      .option('--secrets-stdin', 'replace secrets from a JSON object on standard input')
      .option('--confirm', 'accept a config that was changed outside switchboard (exit 5 "changed outside switchboard") as it now stands, after checking it with `provider show`; with --set/--secret-env, corrected')
      .action(
        action<SecretFlags & { set?: string[]; unset?: string[]; priority?: string; enable?: boolean; disable?: boolean; confirm?: boolean }>(io, async (cli, [ref], opts) => {
          if (opts.enable && opts.disable) throw new UsageError('give only one of --enable and --disable');
          const secrets = await gatherSecrets(cli, opts, []);
          const p = await updateProvider(await cli.core(), ref!, {
            settings: keyValues('--set', opts.set),
            unset: opts.unset,
            secrets,
            priority: intFlag(opts.priority, '--priority', 0, 1_000_000),
            enabled: opts.enable ? true : opts.disable ? false : undefined,
            confirm: opts.confirm,
          });
          cli.out.result(providerJson(p), () => `Updated provider ${p.ref}`);
          if (p.missingSecrets.length > 0) cli.out.warn(`${p.ref} is still missing secret ${p.missingSecrets.join(', ')}: ${enterMissing(p)}`);
        }),
      ),
    [
      'switchboard provider update acme-dental/email/smtp --set port=2525',
      'NEW_PASS=… switchboard provider update acme-dental/email/smtp --secret-env password=NEW_PASS',
      'switchboard provider update acme-dental/email/smtp --set host=smtp.example.com --confirm   # after exit 5 "changed outside switchboard"',
    ],
  );

  examples(
    provider
      .command('remove <ref>')
      .description('remove a provider config and its sealed secrets')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<{ yes?: boolean }>(io, async (cli, [ref], opts) => {
          const ctx = await cli.core();
          const p = await getProvider(ctx, ref!);
          await confirmOrYes(cli, opts.yes, `Remove provider ${p.ref} and its secrets?`);
          await removeProvider(ctx, p.ref);
          cli.out.result({ id: p.ref, removed: true }, () => `Removed provider ${p.ref}`);
        }),
      ),
    ['switchboard provider remove acme-dental/email/backup --yes'],
  );

  examples(
    provider
      .command('verify <ref>')
      .description('check a provider\'s credentials without sending a message; the result is recorded on the config (health, VERIFIED)')
      .addHelpText('after', () => `\nWhat each kind checks:\n${verifyingKinds()}\n`)
      .action(
        action(io, async (cli, [ref]) => {
          const r = await verifyProvider(await cli.core(), ref!);
          cli.out.result({ provider: r.ref, ok: r.ok, detail: r.detail, verifiedAt: r.verifiedAt }, () => verifyText(cli, r));
          if (!r.ok) throw new OperationFailed(`provider ${r.ref} failed verification`);
        }),
      ),
    ['switchboard provider verify acme-dental/email/smtp', 'switchboard provider verify acme-dental/email/sendgrid --json'],
  );

  examples(
    provider
      .command('route')
      .description('show the effective provider chain for a tenant and channel')
      .option('--tenant <id>', 'the tenant')
      .option('--channel <channel>', 'email, sms or whatsapp')
      .action(
        action<{ tenant?: string; channel?: string }>(io, async (cli, _args, opts) => {
          const route = await resolveRoute(await cli.core(), required(opts.tenant, '--tenant'), channelFlag(opts.channel));
          const data = {
            tenantId: route.tenantId,
            channel: route.channel,
            fallback: route.fallback,
            chain: route.entries.map((e, i) => ({
              order: i + 1,
              provider: e.config.ref,
              kind: e.config.kind,
              source: e.source,
              priority: e.config.priority,
              enabled: e.config.enabled,
              health: e.config.health,
            })),
          };
          cli.out.result(data, () => {
            // The fallback switch is a note (stderr), so a pipe reads the header and one line per provider only.
            cli.out.info(`fallback to system defaults: ${route.fallback ? 'on' : 'off'}`);
            return cli.out.list(
              ['#', 'PROVIDER', 'KIND', 'SOURCE', 'PRIORITY', 'HEALTH'],
              data.chain.map((e) => [e.order, e.provider, e.kind, e.source, e.priority, e.health]),
              `No ${route.channel} provider for ${route.tenantId}, and no system default.`,
            );
          });
        }),
      ),
    ['switchboard provider route --tenant acme-dental --channel email'],
  );

  examples(
    provider
      .command('kinds [kind]')
      .description('list the provider kinds: channels, settings (required, default, meaning), secrets, and whether each verifies, batches and authenticates domains')
      .action(
        action(io, async (cli, [name]) => {
          const specs = name === undefined ? [...KINDS.values()] : [KINDS.get(name)];
          if (specs[0] === undefined) throw new NotFoundError(`no provider kind ${name} (kinds: ${[...KINDS.keys()].join(', ')})`);
          const kinds = (specs as KindSpec[]).map(kindJson);
          const yesNo = (b: boolean) => (b ? 'yes' : 'no');
          // `advanced`: not asked for by the interactive `provider add` (delivery-event and tuning options).
          const need = (x: { required: boolean; advanced: boolean }) => (x.required ? 'yes' : x.advanced ? 'no (advanced)' : 'no');
          cli.out.result(kinds, () => {
            if (name === undefined) {
              return cli.out.table(
                ['KIND', 'CHANNELS', 'VERIFY', 'BATCH', 'DOMAINS', 'SUMMARY'],
                kinds.map((k) => [k.kind, k.channels.join(','), yesNo(k.canVerify), k.canBatch ? `up to ${k.maxBatchSize}` : 'no', yesNo(k.canAuthenticateDomains), k.summary]),
              );
            }
            const k = kinds[0]!;
            return [
              cli.out.fields([
                ['kind', k.kind],
                ['channels', k.channels.join(', ')],
                ['summary', k.summary],
                ['verify', k.verifies ?? 'no'],
                ['batch', k.canBatch ? `up to ${k.maxBatchSize} messages per request` : 'no (one request per message)'],
                ['domains', k.canAuthenticateDomains ? 'authenticates sender domains (switchboard domain add)' : 'no'],
              ]),
              '',
              cli.out.table(
                ['SETTING', 'REQUIRED', 'DEFAULT', 'MEANING'],
                k.settings.map((x) => [x.name, need(x), x.default, x.values ? `${x.description} (${x.values.join(' | ')})` : x.description]),
              ),
              '',
              cli.out.table(['SECRET', 'REQUIRED', 'MEANING'], k.secrets.map((x) => [x.name, need(x), x.description])),
            ].join('\n');
          });
        }),
      ),
    ['switchboard provider kinds', 'switchboard provider kinds twilio', 'switchboard provider kinds --json | jq -r \'.[] | select(.canVerify) | .kind\''],
  );
}
