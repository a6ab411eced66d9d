/**
 * Keys derived from the master key (DESIGN §4): one HKDF-SHA-256 derivation per purpose, so a key used for one
 * job (authenticating provider configs, signing unsubscribe tokens, …) is never the key of another, and none of
 * them is the master key that seals secrets.
 *
 * HKDF (RFC 5869, https://www.rfc-editor.org/rfc/rfc5869) with SHA-256: IKM = the 32-byte master key,
 * salt = the fixed text `switchboard` (the master key is already uniformly random, so a fixed salt is enough,
 * RFC 5869 §3.1), info = the purpose string, output 32 bytes. A purpose names its use and a version, e.g.
 * `provider-config-mac/v1`; changing what a key protects means a new purpose string, never reusing one.
 *
 * Purposes in use (add yours here):
 * - {@link PURPOSE_CONFIG_MAC} `provider-config-mac/v1`: HMAC-SHA-256 over provider config rows (./config-mac.ts).
 * - {@link PURPOSE_UNSUBSCRIBE} `unsubscribe-token/v1`: HMAC-SHA-256 of one-click unsubscribe tokens
 *   (../core/unsubscribe.ts).
 *
 * The derived key changes with the master key, so `key rotate` and `key reset` re-compute whatever was made with
 * the old one.
 */
import { nodeCrypto } from '../lazy-node.js';

/** The HKDF salt shared by every purpose. */
const SALT = Buffer.from('switchboard', 'utf8');

/** Purpose of the key that authenticates provider config rows. */
export const PURPOSE_CONFIG_MAC = 'provider-config-mac/v1';

/** Purpose of the key that signs one-click unsubscribe tokens (RFC 8058 links in bulk e-mails). */
export const PURPOSE_UNSUBSCRIBE = 'unsubscribe-token/v1';

/**
 * A 32-byte key for `purpose`, derived from the master key with HKDF-SHA-256 (see the module comment).
 * Deterministic: the same master key and purpose always give the same key.
 * @param masterKey the 32-byte master key.
 * @param purpose a short text naming the use and its version, e.g. `provider-config-mac/v1`.
 * @throws Error if `purpose` is empty.
 */
export function deriveKey(masterKey: Buffer, purpose: string): Buffer {
  if (!purpose) throw new Error('deriveKey: a purpose is required');
  return Buffer.from(nodeCrypto().hkdfSync('sha256', masterKey, SALT, Buffer.from(purpose, 'utf8'), 32));
}
