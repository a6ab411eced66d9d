/**
 * What sends carry for delivery events (DESIGN §6b): the public URL under which `events serve` is reached
 * (stored in the store, `SWITCHBOARD_PUBLIC_URL` overriding it for one command), and the {@link Tracking} of
 * each outbound message — tenant, batch row, and for bulk e-mails the one-click unsubscribe URL.
 */
import type { CoreContext, Channel } from './context.js';
import { recordAudit } from './audit.js';
import { UsageError } from '../errors.js';
import { upsertMetaSetting } from '../store/repos/events.js';
import { selectMetaValue } from '../store/repos/keys.js';
import { requireKey } from './vault.js';
import { unsubscribeKey, unsubscribeToken } from './unsubscribe.js';
import type { Tracking } from '../providers/types.js';

/** The `meta` key of the stored public URL. */
const PUBLIC_URL_KEY = 'public_url';

/**
 * Checks and normalises a public URL: absolute http(s), no query or fragment, no trailing slash.
 * @throws UsageError naming `flag`.
 */
export function checkPublicUrl(raw: string, flag: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`${flag} ${raw}: not a URL (expected e.g. https://hooks.example.com)`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash || url.username || url.password) {
    throw new UsageError(`${flag} ${raw}: expected an http(s) URL without query, fragment or credentials`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Where the effective public URL comes from. */
export interface PublicUrl {
  url: string | null;
  source: 'env' | 'store' | null;
}

/**
 * The public URL sends and `events serve` use: `SWITCHBOARD_PUBLIC_URL` when set (for this command only), else
 * the stored one, else none.
 * @throws UsageError when `SWITCHBOARD_PUBLIC_URL` is not an http(s) URL.
 */
export async function publicUrl(ctx: CoreContext): Promise<PublicUrl> {
  const env = ctx.env.SWITCHBOARD_PUBLIC_URL;
  if (env) return { url: checkPublicUrl(env, 'SWITCHBOARD_PUBLIC_URL'), source: 'env' };
  const stored = await selectMetaValue(ctx.sql, PUBLIC_URL_KEY);
  return stored ? { url: stored, source: 'store' } : { url: null, source: null };
}

/** Stores (or with null, removes) the public URL. Audited as `settings.public_url`. */
export async function setPublicUrl(ctx: CoreContext, url: string | null): Promise<void> {
  await ctx.sql.tx(async (t) => {
    if (((await selectMetaValue(t, PUBLIC_URL_KEY)) ?? null) === url) return;
    await upsertMetaSetting(t, PUBLIC_URL_KEY, url ?? undefined);
    await recordAudit(ctx, t, 'settings.public_url', PUBLIC_URL_KEY, null, ['public_url']);
  });
}

/** The tracking of a single send (`send test`): its tenant, and the public URL for Twilio status callbacks. */
export async function sendTracking(ctx: CoreContext, tenantId: string): Promise<Tracking> {
  const url = (await publicUrl(ctx)).url;
  return { tenantId, ...(url ? { publicUrl: url } : {}) };
}

/** Builds the {@link Tracking} of each row of one bulk send. */
export interface BatchTracker {
  track(batchId: string, rowNo: number, recipient: string): Tracking;
}

/**
 * A tracker for a bulk send of a tenant on a channel. E-mail rows get a one-click unsubscribe URL when a public
 * URL is known (the token's key is derived from the master key, which is looked up once here).
 * @throws KeyError when a public URL is known for e-mail and the master key is missing or wrong.
 */
export async function batchTracker(ctx: CoreContext, tenantId: string, channel: Channel): Promise<BatchTracker> {
  const url = (await publicUrl(ctx)).url;
  const key = url && channel === 'email' ? unsubscribeKey((await requireKey(ctx)).key) : undefined;
  return {
    track(batchId, rowNo, recipient) {
      return {
        tenantId,
        batchId,
        rowNo,
        ...(url ? { publicUrl: url } : {}),
        ...(url && key ? { unsubscribeUrl: `${url}/unsubscribe/${unsubscribeToken(key, { tenantId, channel, recipient, batchId, rowNo })}` } : {}),
      };
    },
  };
}
