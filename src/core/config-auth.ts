/**
 * Provider config rows authenticated as a whole (DESIGN §4, issue 11): each row's MAC (../crypto/config-mac.ts)
 * is checked before the row is used to connect anywhere, and re-computed by every change switchboard makes to
 * the row (`provider add|update`, `key rotate`, `key reset`).
 *
 * Upgrade of stores from before MACs: on the first open with the key (core/vault.ts `requireKey`), every row gets
 * its MAC, v1 sealed blobs are re-sealed as v2, each row is audited (`provider.authenticate`) and
 * `meta.config_macs` is set; from then on a row without a valid MAC is refused. The upgrade trusts the rows as they
 * are at that moment (nothing older exists to check them against). Someone without the key who deletes the
 * marker to trigger a second "upgrade" is caught by the v2 blobs: a store holding one was upgraded already, so
 * the marker is put back (audited as `store.config-macs-restored`) and rows without a valid MAC stay refused.
 * (Only a store with no sealed secrets at all could be rolled back that way; the upgrade is audited either way.)
 */
import type { CoreContext } from './context.js';
import { recordAudit } from './audit.js';
import type { Sql } from '../store/sql.js';
import { insertMetaIfAbsent, selectMetaValue } from '../store/repos/keys.js';
import { selectProviderConfigsById, updateProviderConfigSeal, type ProviderConfigRow } from '../store/repos/providers.js';
import { KeyError } from '../errors.js';
import { configMac, configMacValid, type ConfigMacFields } from '../crypto/config-mac.js';
import { seal, sealVersion, unseal, SEAL_VERSION } from '../crypto/seal.js';

/**
 * The columns of a `provider_configs` row that its MAC covers (see the repository's row type for what each
 * holds), and the MAC. `enabled` may also be a boolean (a row being built).
 */
export type AuthRow = Pick<
  ProviderConfigRow,
  'id' | 'tenant_id' | 'channel' | 'kind' | 'name' | 'priority' | 'settings' | 'sealed_secrets' | 'secret_hints' | 'key_id' | 'mac'
> & { enabled: number | boolean };

/** A key to check and make MACs with: the master key and its version id in this store. */
export interface MacKey {
  key: Buffer;
  keyId: number;
}

/** `meta` key recording that every provider config row carries a MAC. */
const MARKER = 'config_macs';

/** The provider ref of a row: `<tenant|system>/<channel>/<name>`. */
export function rowRef(r: Pick<AuthRow, 'tenant_id' | 'channel' | 'name'>): string {
  return `${r.tenant_id ?? 'system'}/${r.channel}/${r.name}`;
}

/** What the MAC of `r` covers, as values (see ../crypto/config-mac.ts). */
export function rowMacFields(r: AuthRow): ConfigMacFields {
  return {
    ref: rowRef(r),
    kind: r.kind,
    settings: JSON.parse(r.settings) as ConfigMacFields['settings'],
    priority: r.priority,
    enabled: r.enabled === true || r.enabled === 1,
    keyId: r.key_id,
    sealedSecrets: r.sealed_secrets,
    secretNames: Object.keys(JSON.parse(r.secret_hints) as Record<string, string>),
  };
}

/** The MAC `r` should carry under `key`. */
export function rowMac(key: Buffer, r: AuthRow): string {
  return configMac(key, rowMacFields(r));
}

/** True when `r.mac` is the row's MAC under `key`. */
export function rowAuthentic(key: Buffer, r: AuthRow): boolean {
  return configMacValid(key, rowMacFields(r), r.mac);
}

/**
 * The exit-5 error for a row that does not match its MAC: names the config and how to re-confirm it. When its
 * sealed secrets do not open either (a flipped byte, a blob copied from another row), says so.
 */
export function tamperedError(key: MacKey, r: AuthRow): KeyError {
  const ref = rowRef(r);
  if (secretsBroken(key, r)) {
    return new KeyError(
      `secrets of provider ${ref} failed their integrity check (altered in the store, or copied from another provider); it is not used until they are re-entered: \`switchboard provider update ${ref} --confirm --secret-env <name>=ENV_VAR\` (or --secrets-stdin)`,
    );
  }
  return new KeyError(
    `provider ${ref} was changed outside switchboard (its settings, route or secrets no longer match its MAC), so it is not used; check it with \`switchboard provider show ${ref}\`, then re-confirm it with \`switchboard provider update ${ref} --confirm\` (add --set/--secret-env to correct it)`,
  );
}

/** True when the row holds sealed secrets that do not open with `key` (altered, moved, or another key). */
export function secretsBroken(key: MacKey, r: AuthRow): boolean {
  return r.sealed_secrets !== null && !opens(key, r);
}

function opens(key: MacKey, r: AuthRow): boolean {
  if (r.sealed_secrets === null || r.key_id !== key.keyId) return false;
  try {
    unseal(key.key, { tenant: r.tenant_id, channel: r.channel, name: r.name, keyId: r.key_id }, r.sealed_secrets);
    return true;
  } catch {
    return false;
  }
}

/** @throws KeyError ({@link tamperedError}) unless the row matches its MAC under `key`. */
export function assertRowAuthentic(key: MacKey, r: AuthRow): void {
  if (!rowAuthentic(key.key, r)) throw tamperedError(key, r);
}

/** Sets the marker (idempotent). Run it on the handle of the write transaction that re-MACs the rows. */
export async function markConfigMacs(sql: Sql): Promise<void> {
  await insertMetaIfAbsent(sql, MARKER, 'v1');
}

/**
 * Gives every provider config row its MAC if the store predates them (see the module comment). A no-op (one
 * indexed read) once done. Runs in one transaction; audited per row.
 * @returns how many rows were upgraded (0 when there was nothing to do).
 */
export async function ensureConfigMacs(ctx: CoreContext, key: MacKey): Promise<number> {
  if ((await selectMetaValue(ctx.sql, MARKER)) !== undefined) return 0;
  return ctx.sql.tx(async (t) => {
    if ((await selectMetaValue(t, MARKER)) !== undefined) return 0;
    let upgraded = 0;
    const rows = await selectProviderConfigsById(t);
    if (rows.some((r) => r.sealed_secrets !== null && sealVersion(r.sealed_secrets) >= SEAL_VERSION)) {
      await recordAudit(ctx, t, 'store.config-macs-restored', `meta.${MARKER}`, null, [MARKER]);
    } else {
      for (const r of rows) {
        const fields = ['mac'];
        let sealed = r.sealed_secrets;
        if (sealed !== null && r.key_id === key.keyId && opens(key, r)) {
          const where = { tenant: r.tenant_id, channel: r.channel, name: r.name, keyId: r.key_id };
          sealed = seal(key.key, where, unseal(key.key, where, sealed));
          fields.push('sealed_secrets');
        }
        await updateProviderConfigSeal(t, r.id, sealed, r.key_id, rowMac(key.key, { ...r, sealed_secrets: sealed }));
        await recordAudit(ctx, t, 'provider.authenticate', rowRef(r), r.tenant_id, fields);
        upgraded++;
      }
    }
    await markConfigMacs(t);
    return upgraded;
  });
}
