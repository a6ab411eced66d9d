/**
 * AES-256-GCM sealing of provider secrets (DESIGN §4), with node:crypto.
 *
 * Blob layout (bytes): [0] format version (2; 1 is still read) | [1..12] IV (12 random bytes, fresh per seal)
 * | [13..28] GCM auth tag (16) | [29..] ciphertext of the UTF-8 JSON object of secrets.
 * The additional authenticated data binds a blob to its row: `tenant|channel|provider-name|key-id`
 * (tenant = `system` for system defaults), so a blob copied to another row fails to open. Version 2 blobs
 * prefix that AAD with `v2|`: they are written only by switchboard versions that authenticate whole provider
 * config rows (../crypto/config-mac.ts), and since the version byte is bound through the AAD, a v2 blob cannot
 * be passed off as a v1 blob. A store holding one therefore cannot be rolled back, without the key, to rows
 * from before row authentication (see core/config-auth.ts).
 */
import { nodeCrypto } from '../lazy-node.js';

/** Format version written by {@link seal}. */
export const SEAL_VERSION = 2;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Length of a master key in bytes. */
export const KEY_BYTES = 32;

/** Where a sealed blob belongs; becomes the AAD. */
export interface SealContext {
  tenant: string | null;
  channel: string;
  name: string;
  keyId: number;
}

/** The AAD for a context: `tenant|channel|provider-name|key-id`, prefixed with `v2|` for format version 2. */
export function aadFor(ctx: SealContext, version = SEAL_VERSION): Buffer {
  return Buffer.from(`${version >= 2 ? 'v2|' : ''}${ctx.tenant ?? 'system'}|${ctx.channel}|${ctx.name}|${ctx.keyId}`, 'utf8');
}

/** The format version of a sealed blob (its first byte): 1 or 2 for blobs made by switchboard. */
export function sealVersion(blob: Uint8Array): number {
  return blob[0] ?? 0;
}

/** Seals a map of secret name → value with `key` (32 bytes). Returns the blob described above. */
export function seal(key: Buffer, ctx: SealContext, secrets: Record<string, string>): Buffer {
  const { randomBytes, createCipheriv } = nodeCrypto();
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aadFor(ctx, SEAL_VERSION));
  const body = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([SEAL_VERSION]), iv, cipher.getAuthTag(), body]);
}

/**
 * Opens a blob made by {@link seal} (format version 2, or 1 from earlier versions).
 * @throws Error('integrity') when the key is wrong, the blob was altered, or it belongs to another row (AAD).
 */
export function unseal(key: Buffer, ctx: SealContext, blob: Buffer): Record<string, string> {
  const version = sealVersion(blob);
  if (blob.length < 1 + IV_BYTES + TAG_BYTES || (version !== 1 && version !== 2)) throw new Error('integrity');
  const iv = blob.subarray(1, 1 + IV_BYTES);
  const tag = blob.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
  const decipher = nodeCrypto().createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(aadFor(ctx, version));
  decipher.setAuthTag(tag);
  try {
    const plain = Buffer.concat([decipher.update(blob.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
    return JSON.parse(plain.toString('utf8')) as Record<string, string>;
  } catch {
    throw new Error('integrity');
  }
}
