/**
 * One-click unsubscribe tokens (RFC 8058, https://www.rfc-editor.org/rfc/rfc8058; DESIGN §4): a bulk e-mail's
 * `List-Unsubscribe` URL ends in `<batch id>.<row>.<mac>`, where the MAC is HMAC-SHA256 (first 16 bytes,
 * base64url) under a key derived from the master key over the tenant, channel, recipient, batch and row. The
 * token names a ledger row and nothing else (no address in the URL); it cannot be forged or enumerated without
 * the key, and a token altered anywhere fails. `key rotate` changes the key: links in mail sent before a
 * rotation stop working (answered 403).
 */
import { nodeCrypto } from '../lazy-node.js';
import type { CoreContext, Channel } from './context.js';
import { deriveKey, PURPOSE_UNSUBSCRIBE } from '../crypto/derive.js';
import { selectUnsubscribeRow } from '../store/repos/events.js';

/** What a token is about. */
export interface UnsubscribeTarget {
  tenantId: string;
  channel: Channel;
  recipient: string;
  batchId: string;
  rowNo: number;
}

/** The HMAC key for unsubscribe tokens, derived from the 32-byte master key. */
export function unsubscribeKey(masterKey: Buffer): Buffer {
  return deriveKey(masterKey, PURPOSE_UNSUBSCRIBE);
}

function mac(key: Buffer, t: UnsubscribeTarget): Buffer {
  return nodeCrypto().createHmac('sha256', key)
    .update(['v1', t.tenantId, t.channel, t.recipient.toLowerCase(), t.batchId, String(t.rowNo)].join('\n'))
    .digest()
    .subarray(0, 16);
}

/** The token of one recipient's row: `<batch id>.<row>.<mac>` (URL-safe). */
export function unsubscribeToken(key: Buffer, t: UnsubscribeTarget): string {
  return `${t.batchId}.${t.rowNo}.${mac(key, t).toString('base64url')}`;
}

/**
 * Verifies a token against the ledger row it names. @returns the target with the row's provider message id
 * (null when it has none), or null when the token is malformed,
 * names no row, or its MAC does not match (the caller answers 403 to all three alike).
 */
export async function verifyUnsubscribeToken(ctx: CoreContext, key: Buffer, token: string): Promise<(UnsubscribeTarget & { messageId: string | null }) | null> {
  const m = /^([A-Za-z0-9][A-Za-z0-9_+-]{0,99})\.([1-9]\d{0,9})\.([A-Za-z0-9_-]{22})$/.exec(token);
  if (!m) return null;
  const row = await selectUnsubscribeRow(ctx.sql, m[1]!, Number(m[2]));
  if (!row) return null;
  const target: UnsubscribeTarget = { tenantId: row.tenantId, channel: row.channel as Channel, recipient: row.recipient, batchId: m[1]!, rowNo: Number(m[2]) };
  // Compared as text: base64 has several spellings of the same bytes (the last character's spare bits), and a
  // token altered anywhere must fail.
  const given = Buffer.from(m[3]!, 'ascii');
  const want = Buffer.from(mac(key, target).toString('base64url'), 'ascii');
  return given.length === want.length && nodeCrypto().timingSafeEqual(given, want) ? { ...target, messageId: row.messageId } : null;
}
