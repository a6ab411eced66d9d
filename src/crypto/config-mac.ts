/**
 * Authentication of provider config rows (DESIGN §4): every row carries an HMAC-SHA-256 under a key derived
 * from the master key ({@link deriveKey} with purpose `provider-config-mac/v1`), computed over a canonical
 * serialisation of what decides where messages go and with which credentials: the ref, the kind, the settings,
 * the priority, the enabled flag, the key version, the sealed secrets and the secret names. A row changed by
 * anyone without the key (e.g. `host` pointed at another server with SQL) no longer matches its MAC and is
 * refused before any connection.
 *
 * Why an HMAC over the whole row rather than the settings in the AES-GCM additional data: configs without
 * secrets (outbox, an SMTP relay without AUTH) have no sealed blob to carry AAD, yet their `dir`/`host` and
 * their place in the route (priority, enabled) matter just as much; changing priority or enabled must not
 * need the secrets decrypted; and checking a row needs no decryption at all, so `doctor` checks every row.
 *
 * The canonical form is defined on values, not on stored bytes, so the same row gives the same MAC whatever
 * store holds it (SQLite now, PostgreSQL later: `store copy` carries MACs across unchanged): the JSON text of
 *   ["switchboard/provider-config/v1", ref, kind, [[name, value], …sorted by name], priority, enabled,
 *    keyId|null, base64(sealed secrets)|null, [secret names, sorted]]
 * where settings values are JSON strings, numbers or booleans and `enabled` is a JSON boolean. The MAC is
 * stored as 64 lower-case hex digits.
 */
import { nodeCrypto } from '../lazy-node.js';
import { deriveKey, PURPOSE_CONFIG_MAC } from './derive.js';

/** What a provider config's MAC covers. */
export interface ConfigMacFields {
  /** `<tenant|system>/<channel>/<name>`. */
  ref: string;
  kind: string;
  /** Setting name → value (string, number or boolean). */
  settings: Readonly<Record<string, string | number | boolean>>;
  priority: number;
  enabled: boolean;
  /** Key version the secrets are sealed with; null without secrets. */
  keyId: number | null;
  /** The sealed secrets blob as stored; null without secrets. */
  sealedSecrets: Uint8Array | null;
  /** Names of the secrets the row holds (order does not matter). */
  secretNames: readonly string[];
}

const LABEL = 'switchboard/provider-config/v1';

/** The canonical serialisation (UTF-8 bytes of the JSON text described in the module comment). */
export function canonicalConfig(f: ConfigMacFields): Buffer {
  const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const settings = Object.keys(f.settings)
    .sort(byName)
    .map((k) => [k, f.settings[k]]);
  return Buffer.from(
    JSON.stringify([
      LABEL,
      f.ref,
      f.kind,
      settings,
      f.priority,
      f.enabled,
      f.keyId,
      f.sealedSecrets ? Buffer.from(f.sealedSecrets).toString('base64') : null,
      [...f.secretNames].sort(byName),
    ]),
    'utf8',
  );
}

/** The MAC of a config row (64 hex digits) under the key derived from `masterKey`. */
export function configMac(masterKey: Buffer, f: ConfigMacFields): string {
  return nodeCrypto().createHmac('sha256', deriveKey(masterKey, PURPOSE_CONFIG_MAC)).update(canonicalConfig(f)).digest('hex');
}

/** True when `mac` (as stored; null when missing) is the MAC of `f` under `masterKey`. Compared in constant time. */
export function configMacValid(masterKey: Buffer, f: ConfigMacFields, mac: string | null): boolean {
  if (mac === null || !/^[0-9a-f]{64}$/.test(mac)) return false;
  return nodeCrypto().timingSafeEqual(Buffer.from(configMac(masterKey, f), 'hex'), Buffer.from(mac, 'hex'));
}
