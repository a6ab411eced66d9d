/**
 * AES-256-GCM sealing of provider secrets (DESIGN §4), with node:crypto.
 *
 * Blob layout (bytes): [0] format version (1) | [1..12] IV (12 random bytes, fresh per seal)
 * | [13..28] GCM auth tag (16) | [29..] ciphertext of the UTF-8 JSON object of secrets.
 * The additional authenticated data binds a blob to its row: `tenant|channel|provider-name|key-id`
 * (tenant = `system` for system defaults), so a blob copied to another row fails to open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 1;
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

/** The AAD string for a context: `tenant|channel|provider-name|key-id`. */
export function aadFor(ctx: SealContext): Buffer {
  return Buffer.from(`${ctx.tenant ?? 'system'}|${ctx.channel}|${ctx.name}|${ctx.keyId}`, 'utf8');
}

/** Seals a map of secret name → value with `key` (32 bytes). Returns the blob described above. */
export function seal(key: Buffer, ctx: SealContext, secrets: Record<string, string>): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aadFor(ctx));
  const body = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]);
}

/**
 * Opens a blob made by {@link seal}.
 * @throws Error('integrity') when the key is wrong, the blob was altered, or it belongs to another row (AAD).
 */
export function unseal(key: Buffer, ctx: SealContext, blob: Buffer): Record<string, string> {
  if (blob.length < 1 + IV_BYTES + TAG_BYTES || blob[0] !== VERSION) throw new Error('integrity');
  const iv = blob.subarray(1, 1 + IV_BYTES);
  const tag = blob.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(aadFor(ctx));
  decipher.setAuthTag(tag);
  try {
    const plain = Buffer.concat([decipher.update(blob.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
    return JSON.parse(plain.toString('utf8')) as Record<string, string>;
  } catch {
    throw new Error('integrity');
  }
}
