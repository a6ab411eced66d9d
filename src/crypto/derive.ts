/**
 * Keys derived from the master key for one purpose each (DESIGN §4), so that a key used for one job (e.g. the
 * HMAC of one-click unsubscribe tokens) is never the key that seals secrets. HKDF-SHA256 (RFC 5869,
 * https://www.rfc-editor.org/rfc/rfc5869) with node:crypto, no salt, the purpose as `info`.
 */
import { hkdfSync } from 'node:crypto';

/** Purposes in use; a new purpose string gives an unrelated key. */
export type KeyPurpose = 'switchboard/unsubscribe-token/v1';

/**
 * Derives a 32-byte key for `purpose` from the 32-byte master key. Deterministic: the same master key and
 * purpose give the same key, so anything keyed by it stops verifying after `key rotate`.
 */
export function deriveKey(masterKey: Buffer, purpose: KeyPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), purpose, 32));
}
