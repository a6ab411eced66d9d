/**
 * Provider configs: per tenant or system-wide (`tenant_id` NULL), per channel, ordered by priority
 * (lower number is tried first; ties by creation order). Secrets are sealed with the master key.
 * Refs are `<tenant|system>/<channel>/<name>`, e.g. `acme-dental/email/primary`.
 */
import path from 'node:path';
import { isEmailAddress } from './email-address.js';
import type { CoreContext, Channel } from './context.js';
import { asChannel } from './context.js';
import { recordAudit } from './audit.js';
import type { Sql } from '../store/sql.js';
import {
  deleteProviderConfig,
  insertProviderConfig,
  selectProviderConfigById,
  selectProviderConfigByRef,
  selectProviderConfigs,
  updateProviderConfig,
  updateProviderConfigHealth,
  updateProviderConfigVerification,
  type ProviderConfigRow,
} from '../store/repos/providers.js';
import { LockedError, NotFoundError, UsageError } from '../errors.js';
import { checkTenantId, getTenant, SYSTEM } from './tenants.js';
import { assertCurrentKey, openSecrets, requireKey, sealSecrets, type ActiveKey } from './vault.js';
import { assertRowAuthentic, rowAuthentic, rowMac, rowMacFields, secretsBroken, tamperedError, type AuthRow } from './config-auth.js';
import { canonicalConfig } from '../crypto/config-mac.js';
import { KINDS, PLANNED_KINDS, settingSpecs, type KindSpec, type SettingSpec } from '../providers/registry.js';
import type { SettingValue } from '../providers/types.js';

/** A provider name: lower-case letters, digits, hyphens and underscores, 1–40 characters. */
const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,39}$/;

/** Default priority of a new config. */
export const DEFAULT_PRIORITY = 100;

/** A provider config as shown to users: settings in clear, secrets only as masked hints. */
export interface ProviderConfig {
  id: number;
  ref: string;
  tenantId: string | null;
  channel: Channel;
  kind: string;
  name: string;
  priority: number;
  enabled: boolean;
  settings: Record<string, SettingValue>;
  /** Secret name → masked hint (e.g. `SG.****wxyz`, or `****`). */
  secrets: Record<string, string>;
  /**
   * Secrets the kind needs that the config does not hold (e.g. dropped by `key reset`): sends through it fail
   * until they are entered with `provider update <ref> --secret-env <name>=ENV_VAR`. Empty when complete.
   */
  missingSecrets: string[];
  keyId: number | null;
  /** `unknown` until used or verified; `healthy`; `unhealthy` after an auth/config failure. */
  health: 'unknown' | 'healthy' | 'unhealthy';
  healthDetail: string | null;
  lastVerifiedAt: string | null;
  lastVerifyResult: string | null;
  createdAt: string;
  updatedAt: string;
}

/** A parsed provider ref. `tenantId` is null for system defaults. */
export interface ProviderRef {
  tenantId: string | null;
  channel: Channel;
  name: string;
}

/** Formats a ref: `<tenant|system>/<channel>/<name>`. */
export function formatRef(r: ProviderRef): string {
  return `${r.tenantId ?? SYSTEM}/${r.channel}/${r.name}`;
}

/** @throws UsageError if `ref` is not `<tenant|system>/<channel>/<name>`. */
export function parseRef(ref: string): ProviderRef {
  const parts = ref.split('/');
  const channel = asChannel(parts[1] ?? '');
  if (parts.length !== 3 || !channel || !parts[0] || !parts[2]) {
    throw new UsageError(`provider ref "${ref}" is not <tenant|system>/<channel>/<name> (e.g. acme-dental/email/primary)`);
  }
  return { tenantId: parts[0] === SYSTEM ? null : parts[0], channel, name: parts[2] };
}

/** Masks a secret for display: keeps a short key-style prefix (`SG.`, `AC`) and the last 4 characters of long values. */
export function maskSecret(value: string): string {
  if (value.length < 16) return '****';
  const prefix = /^([A-Za-z]{2,3}[._-])/.exec(value)?.[1] ?? '';
  return `${prefix}****${value.slice(-4)}`;
}

/**
 * Secrets `kind` needs with these settings that are not among `have` (the `required` ones, and those its
 * settings call for, e.g. smtp's `password` when a `user` is set). An unknown kind needs none.
 */
export function missingSecrets(kind: string, settings: Readonly<Record<string, SettingValue>>, have: Iterable<string>): string[] {
  const spec = KINDS.get(kind);
  if (!spec) return [];
  const got = new Set(have);
  const needed = new Set([...Object.entries(spec.secrets).filter(([, s]) => s.required).map(([k]) => k), ...(spec.neededSecrets?.(settings) ?? [])]);
  return [...needed].filter((k) => !got.has(k)).sort();
}

function toConfig(row: ProviderConfigRow): ProviderConfig {
  const settings = JSON.parse(row.settings) as Record<string, SettingValue>;
  const secrets = JSON.parse(row.secret_hints) as Record<string, string>;
  return {
    id: row.id,
    ref: formatRef({ tenantId: row.tenant_id, channel: row.channel as Channel, name: row.name }),
    tenantId: row.tenant_id,
    channel: row.channel as Channel,
    kind: row.kind,
    name: row.name,
    priority: row.priority,
    enabled: row.enabled === 1,
    settings,
    secrets,
    missingSecrets: row.sealed_secrets === null ? missingSecrets(row.kind, settings, []) : missingSecrets(row.kind, settings, Object.keys(secrets)),
    keyId: row.key_id,
    health: row.health,
    healthDetail: row.health_detail,
    lastVerifiedAt: row.last_verified_at,
    lastVerifyResult: row.last_verify_result,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** @throws UsageError naming the kind when it is unknown or not built yet, or does not serve `channel`. */
export function kindSpec(kind: string, channel?: Channel): KindSpec {
  const spec = KINDS.get(kind);
  if (!spec) {
    if (PLANNED_KINDS.includes(kind)) {
      throw new UsageError(`--kind ${kind}: this provider kind is not built yet (available: ${[...KINDS.keys()].join(', ')})`);
    }
    throw new UsageError(`--kind ${kind} is not a provider kind (available: ${[...KINDS.keys()].join(', ')})`);
  }
  if (channel && !spec.channels.includes(channel)) {
    throw new UsageError(`--kind ${kind} does not serve channel ${channel} (it serves: ${spec.channels.join(', ')})`);
  }
  return spec;
}

/**
 * Parses and checks one setting value given as text (from `--set key=value`).
 * @throws UsageError naming the setting.
 */
export function parseSetting(spec: KindSpec, key: string, raw: string): SettingValue {
  if (key in spec.secrets) {
    throw new UsageError(
      `--set ${key}: "${key}" is a secret and is never accepted on the command line; use --secret-env ${key}=ENV_VAR, --secrets-stdin, or the prompt`,
    );
  }
  const s: SettingSpec | undefined = settingSpecs(spec)[key];
  if (!s) {
    throw new UsageError(`--set ${key}: kind ${spec.kind} has no setting "${key}" (settings: ${Object.keys(settingSpecs(spec)).join(', ')})`);
  }
  switch (s.type) {
    case 'int': {
      const n = Number(raw);
      if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`--set ${key}: "${raw}" is not a whole number`);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
        throw new UsageError(`--set ${key}: ${n} is out of range ${s.min ?? '-∞'}..${s.max ?? '∞'}`);
      }
      return n;
    }
    case 'decimal': {
      const n = Number(raw);
      if (!/^-?(\d+(\.\d*)?|\.\d+)$/.test(raw.trim()) || !Number.isFinite(n)) throw new UsageError(`--set ${key}: "${raw}" is not a number (e.g. 0.0079)`);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
        throw new UsageError(`--set ${key}: ${n} is out of range ${s.min ?? '-∞'}..${s.max ?? '∞'}`);
      }
      return n;
    }
    case 'currency':
      if (!/^[A-Za-z]{3}$/.test(raw.trim())) throw new UsageError(`--set ${key}: "${raw}" is not an ISO 4217 currency code (e.g. USD, EUR)`);
      return raw.trim().toUpperCase();
    case 'bool':
      if (/^(true|yes|on|1)$/i.test(raw)) return true;
      if (/^(false|no|off|0)$/i.test(raw)) return false;
      throw new UsageError(`--set ${key}: "${raw}" is not true or false`);
    case 'enum':
      if (!s.values?.includes(raw)) throw new UsageError(`--set ${key}: "${raw}" is not one of ${s.values?.join(', ')}`);
      return raw;
    case 'email':
      if (!isEmailAddress(raw)) throw new UsageError(`--set ${key}: "${raw}" is not an e-mail address`);
      return raw;
    case 'path':
      if (!raw) throw new UsageError(`--set ${key}: a path is required`);
      return path.resolve(raw);
    default:
      return raw;
  }
}

function applyDefaults(spec: KindSpec, settings: Record<string, SettingValue>): Record<string, SettingValue> {
  const out: Record<string, SettingValue> = {};
  for (const [k, s] of Object.entries(settingSpecs(spec))) {
    const v = settings[k] ?? s.default;
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function checkComplete(spec: KindSpec, settings: Record<string, SettingValue>, secretNames: Iterable<string>): void {
  for (const [k, s] of Object.entries(spec.settings)) {
    if (s.required && settings[k] === undefined) throw new UsageError(`--set ${k}=… is required for kind ${spec.kind} (${s.doc})`);
  }
  const problem = spec.check?.(settings);
  if (problem) throw new UsageError(problem);
  const have = new Set(secretNames);
  for (const [k, s] of Object.entries(spec.secrets)) {
    if (s.required && !have.has(k)) throw new UsageError(`secret "${k}" is required for kind ${spec.kind}: use --secret-env ${k}=ENV_VAR or --secrets-stdin`);
  }
}

function checkSecretNames(spec: KindSpec, secrets: Record<string, string>): void {
  for (const [k, v] of Object.entries(secrets)) {
    if (!(k in spec.secrets)) {
      const known = Object.keys(spec.secrets);
      throw new UsageError(`secret "${k}": kind ${spec.kind} has ${known.length ? `secrets ${known.join(', ')}` : 'no secrets'}`);
    }
    if (typeof v !== 'string' || v === '') throw new UsageError(`secret "${k}" is empty`);
  }
}

/** What `provider add` takes. `settings` values are raw text from `--set`. */
export interface NewProvider {
  tenantId: string | null;
  channel: Channel;
  kind: string;
  name?: string;
  priority?: number;
  settings: Record<string, string>;
  secrets: Record<string, string>;
}

/**
 * Adds a provider config, sealing its secrets with the master key.
 * @throws UsageError (bad kind, setting, name, duplicate ref), NotFoundError (tenant), KeyError (no/wrong key).
 */
export async function addProvider(ctx: CoreContext, input: NewProvider): Promise<ProviderConfig> {
  const spec = kindSpec(input.kind, input.channel);
  const name = input.name ?? input.kind;
  if (!NAME_PATTERN.test(name)) throw new UsageError(`--name "${name}" must be 1-40 lower-case letters, digits, - or _`);
  if (input.tenantId !== null) {
    checkTenantId(input.tenantId, '--tenant');
    await getTenant(ctx, input.tenantId);
  }
  const parsed: Record<string, SettingValue> = {};
  for (const [k, v] of Object.entries(input.settings)) parsed[k] = parseSetting(spec, k, v);
  checkSecretNames(spec, input.secrets);
  const settings = applyDefaults(spec, parsed);
  checkComplete(spec, settings, Object.keys(input.secrets));
  const ref = formatRef({ tenantId: input.tenantId, channel: input.channel, name });
  const key = await requireKey(ctx);
  const hasSecrets = Object.keys(input.secrets).length > 0;
  const now = ctx.clock.now().toISOString();
  const id = await ctx.sql.tx(async (t) => {
    await assertCurrentKey(t, key);
    const taken = () => new UsageError(`provider ${ref} already exists (use \`provider update ${ref}\`, or --name for another one)`);
    if (await selectProviderConfigByRef(t, input.tenantId, input.channel, name)) throw taken();
    const row: AuthRow = {
      id: 0,
      tenant_id: input.tenantId,
      channel: input.channel,
      kind: input.kind,
      name,
      priority: input.priority ?? DEFAULT_PRIORITY,
      enabled: 1,
      settings: JSON.stringify(settings),
      sealed_secrets: hasSecrets ? sealSecrets(key, { tenant: input.tenantId, channel: input.channel, name }, input.secrets) : null,
      secret_hints: JSON.stringify(hints(input.secrets)),
      key_id: hasSecrets ? key.keyId : null,
      mac: null,
    };
    // The insert refuses a taken ref too: on PostgreSQL another process may add it after the check.
    const newId = await insertProviderConfig(t, { ...row, enabled: 1, mac: rowMac(key.key, row) }, now);
    if (newId === undefined) throw taken();
    await recordAudit(ctx, t, 'provider.add', ref, input.tenantId, ['kind', 'priority', ...Object.keys(settings), ...Object.keys(input.secrets).map((k) => `secret.${k}`)]);
    return newId;
  });
  return getProviderById(ctx, id);
}

function hints(secrets: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, maskSecret(v)]));
}

async function getProviderById(ctx: CoreContext, id: number): Promise<ProviderConfig> {
  return toConfig((await selectProviderConfigById(ctx.sql, id))!);
}

/**
 * The config of a ref. Pass `sql` (a transaction's handle) to read inside that transaction.
 * @throws NotFoundError if no config has this ref; UsageError if the ref is malformed.
 */
export async function getProvider(ctx: CoreContext, ref: string, sql: Sql = ctx.sql): Promise<ProviderConfig> {
  const r = parseRef(ref);
  const row = await selectProviderConfigByRef(sql, r.tenantId, r.channel, r.name);
  if (!row) throw new NotFoundError(`no provider ${ref} in store ${ctx.storePath} (see \`switchboard provider list\`)`);
  return toConfig(row);
}

/** Filter for {@link listProviders}: `tenantId` null means system defaults only; undefined means all. */
export interface ProviderFilter {
  tenantId?: string | null;
  channel?: Channel;
}

/** Provider configs ordered by tenant (system first), channel, priority. */
export async function listProviders(ctx: CoreContext, filter: ProviderFilter = {}): Promise<ProviderConfig[]> {
  return (await selectProviderConfigs(ctx.sql, filter)).map(toConfig);
}

/** Changes for {@link updateProvider}. Secrets given replace those of the same name; others are kept. */
export interface ProviderUpdate {
  settings?: Record<string, string>;
  unset?: string[];
  secrets?: Record<string, string>;
  priority?: number;
  enabled?: boolean;
  /**
   * Accept a config that was changed outside switchboard (its MAC does not match) as it now stands, with the
   * other changes given, and give it a new MAC (`provider update <ref> --confirm`). Secrets that no longer open
   * are dropped: give them again in `secrets`.
   */
  confirm?: boolean;
}

/**
 * Updates settings, secrets (one at a time without retyping the others), priority or the enabled flag, and
 * gives the row a new MAC (so the key is always needed). A config changed outside switchboard is refused unless
 * `change.confirm` re-confirms it.
 * The read-modify-write happens inside one IMMEDIATE transaction, so concurrent updates of the same config
 * (from other processes) apply one after the other and none is lost.
 * @throws UsageError, NotFoundError, KeyError (key missing or wrong; the config fails its MAC and `confirm` is not set).
 */
export async function updateProvider(ctx: CoreContext, ref: string, change: ProviderUpdate): Promise<ProviderConfig> {
  const newSecrets = change.secrets ?? {};
  const fields = [
    ...Object.keys(change.settings ?? {}),
    ...(change.unset ?? []),
    ...(change.priority !== undefined ? ['priority'] : []),
    ...(change.enabled !== undefined ? ['enabled'] : []),
    ...Object.keys(newSecrets).map((k) => `secret.${k}`),
  ];
  if (fields.length === 0 && !change.confirm) {
    throw new UsageError('nothing to update: give --set, --unset, --secret-env, --secrets-stdin, --priority, --enable, --disable or --confirm');
  }
  // The key lookup may ask the keychain (a child process): done before taking the write lock.
  const key = await requireKey(ctx);
  const id = await ctx.sql.tx(async (t) => {
    await assertCurrentKey(t, key);
    const current = await getProvider(ctx, ref, t);
    const raw = (await selectProviderConfigById(t, current.id))!;
    const authentic = rowAuthentic(key.key, raw);
    if (!authentic && !change.confirm) assertRowAuthentic(key, raw);
    const spec = kindSpec(current.kind);
    const settings: Record<string, SettingValue> = { ...current.settings };
    for (const [k, v] of Object.entries(change.settings ?? {})) settings[k] = parseSetting(spec, k, v);
    for (const k of change.unset ?? []) {
      if (!(k in settingSpecs(spec))) throw new UsageError(`--unset ${k}: kind ${spec.kind} has no setting "${k}"`);
      delete settings[k];
    }
    checkSecretNames(spec, newSecrets);
    const full = applyDefaults(spec, settings);
    const where = { tenant: current.tenantId, channel: current.channel, name: current.name };
    let old: Record<string, string> = {};
    let oldHints = current.secrets;
    if (raw.sealed_secrets && current.keyId !== null) {
      try {
        old = openSecrets(key, { ...where, keyId: current.keyId }, raw.sealed_secrets, ref);
      } catch (err) {
        // Re-confirming a row whose secrets no longer open: they are dropped, and must be given again.
        if (!change.confirm) throw err;
        oldHints = {};
      }
    }
    const merged = { ...old, ...newSecrets };
    const names = Object.keys(merged).sort();
    const hasSecrets = names.length > 0;
    const next: AuthRow = {
      ...raw,
      settings: JSON.stringify(full),
      priority: change.priority ?? current.priority,
      enabled: (change.enabled ?? current.enabled) ? 1 : 0,
      sealed_secrets: hasSecrets ? sealSecrets(key, where, merged) : null,
      secret_hints: JSON.stringify({ ...oldHints, ...hints(newSecrets) }),
      key_id: hasSecrets ? key.keyId : null,
    };
    checkComplete(spec, full, names);
    await updateProviderConfig(t, current.id, { ...next, enabled: Number(next.enabled), mac: rowMac(key.key, next) }, ctx.clock.now().toISOString());
    // Every update re-computes the MAC; a re-confirmation (the row had been changed outside switchboard) says so.
    await recordAudit(ctx, t, authentic ? 'provider.update' : 'provider.confirm', ref, current.tenantId, authentic ? fields : [...fields, 'mac']);
    return current.id;
  });
  return getProviderById(ctx, id);
}

/** Removes a provider config and its sealed secrets. @throws NotFoundError. */
export async function removeProvider(ctx: CoreContext, ref: string): Promise<void> {
  const current = await getProvider(ctx, ref);
  await ctx.sql.tx(async (t) => {
    // Removed meanwhile by another process: its removal was audited there, not again here.
    if (!(await deleteProviderConfig(t, current.id))) throw new NotFoundError(`no provider ${ref} in store ${ctx.storePath} (removed meanwhile; see \`switchboard provider list\`)`);
    await recordAudit(ctx, t, 'provider.remove', ref, current.tenantId, []);
  });
}

/** One step of a route. `source` says whether it is the tenant's own config or a system default. */
export interface RouteEntry {
  config: ProviderConfig;
  source: 'tenant' | 'system';
}

/** The effective chain for a tenant and channel. */
export interface Route {
  tenantId: string;
  channel: Channel;
  /** Whether the tenant lets the system defaults follow its own providers on this channel. */
  fallback: boolean;
  entries: RouteEntry[];
}

/**
 * Resolves the route (DESIGN §5): the tenant's enabled configs by priority, then the system defaults by
 * priority if the tenant has none or its fallback switch for the channel is on.
 * With `key` (for sending), every config that could take part (the tenant's and the system's on this channel,
 * enabled or not) must match its MAC first, so a priority or enabled flag changed outside switchboard cannot
 * reorder the route or drop a config from it.
 * @throws NotFoundError if the tenant does not exist; KeyError naming a config that fails its MAC.
 */
export async function resolveRoute(ctx: CoreContext, tenantId: string, channel: Channel, key?: ActiveKey): Promise<Route> {
  const tenant = await getTenant(ctx, tenantId);
  const ownRows = await selectProviderConfigs(ctx.sql, { tenantId, channel });
  const systemRows = await selectProviderConfigs(ctx.sql, { tenantId: null, channel });
  if (key) for (const r of [...ownRows, ...systemRows]) assertRowAuthentic(key, r);
  const own = ownRows.map(toConfig).filter((c) => c.enabled);
  const fallback = tenant.fallback[channel];
  const system = own.length === 0 || fallback ? systemRows.map(toConfig).filter((c) => c.enabled) : [];
  return {
    tenantId,
    channel,
    fallback,
    entries: [...own.map((config) => ({ config, source: 'tenant' as const })), ...system.map((config) => ({ config, source: 'system' as const }))],
  };
}

/**
 * Opens a config for use: checks that its row matches its MAC and that `config` (what the caller connects
 * with) is that row, then decrypts its secrets with the active key. Every path that connects to a provider
 * (sends, `provider verify`, domain authentication) comes through here first.
 * @throws KeyError naming the provider when the row fails its MAC or its secrets their integrity check;
 * LockedError when another process changed or removed the config since `config` was read (run again).
 */
export async function configSecrets(ctx: CoreContext, key: ActiveKey, config: ProviderConfig): Promise<Record<string, string>> {
  const row = await selectProviderConfigById(ctx.sql, config.id);
  if (!row) throw new LockedError(`provider ${config.ref} was removed by another process meanwhile; run the command again`);
  assertRowAuthentic(key, row);
  const read: AuthRow = { ...row, kind: config.kind, settings: JSON.stringify(config.settings), priority: config.priority, enabled: config.enabled ? 1 : 0, tenant_id: config.tenantId, channel: config.channel, name: config.name };
  if (!canonicalConfig(rowMacFields(read)).equals(canonicalConfig(rowMacFields(row)))) {
    throw new LockedError(`provider ${config.ref} was changed by another process meanwhile; run the command again`);
  }
  if (!row.sealed_secrets || row.key_id === null) return {};
  return openSecrets(key, { tenant: row.tenant_id, channel: row.channel, name: row.name, keyId: row.key_id }, row.sealed_secrets, config.ref);
}

/**
 * Checks a config row against its MAC (for `doctor`).
 * @returns null when it matches; else the reason and what to do ({@link tamperedError}'s message), and whether
 * its sealed secrets fail to open too.
 */
export async function configAuthProblem(
  ctx: CoreContext,
  key: ActiveKey,
  config: ProviderConfig,
): Promise<{ message: string; secretsBroken: boolean } | null> {
  const row = await selectProviderConfigById(ctx.sql, config.id);
  if (!row || rowAuthentic(key.key, row)) return null;
  return { message: tamperedError(key, row).message, secretsBroken: secretsBroken(key, row) };
}

/** Records a config's health after a send or verify. `detail` must hold no secret values. */
export async function setHealth(ctx: CoreContext, id: number, health: ProviderConfig['health'], detail: string | null): Promise<void> {
  await updateProviderConfigHealth(ctx.sql, id, health, detail);
}

/** Records the outcome of `provider verify` (audited as `provider.verify`, field names only). */
export async function recordVerification(ctx: CoreContext, config: ProviderConfig, ok: boolean, detail: string): Promise<void> {
  await ctx.sql.tx(async (t) => {
    await updateProviderConfigVerification(t, config.id, {
      at: ctx.clock.now().toISOString(),
      result: `${ok ? 'ok' : 'failed'}: ${detail}`,
      health: ok ? 'healthy' : 'unhealthy',
      detail: ok ? null : detail,
    });
    await recordAudit(ctx, t, 'provider.verify', config.ref, config.tenantId, ['last_verified_at', 'last_verify_result', 'health']);
  });
}

/**
 * Checks a config's credentials without sending (`provider verify`): connects and authenticates.
 * Records the result and time on the config.
 * @throws NotFoundError, KeyError.
 */
export async function verifyProvider(ctx: CoreContext, ref: string): Promise<{ ref: string; ok: boolean; detail: string; verifiedAt: string }> {
  const config = await getProvider(ctx, ref);
  const spec = kindSpec(config.kind);
  const secrets = await configSecrets(ctx, await requireKey(ctx), config);
  const adapter = await spec.create({ ref, settings: config.settings, secrets, maxConcurrency: 1, channel: config.channel });
  let result: { ok: boolean; detail: string };
  try {
    result = await adapter.verify();
  } finally {
    await adapter.close();
  }
  await recordVerification(ctx, config, result.ok, result.detail);
  return { ref, ...result, verifiedAt: (await getProvider(ctx, ref)).lastVerifiedAt ?? '' };
}
