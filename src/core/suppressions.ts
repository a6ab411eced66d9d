/**
 * Suppressions: per tenant and channel, addresses that must not be sent to (opt-outs such as an SMS STOP,
 * hard bounces, manual blocks). Bulk sends skip them (row state `skipped`); provider errors that mean the
 * recipient opted out add them automatically (source = the provider ref).
 */
import type { CoreContext, Channel } from './context.js';
import { recordAudit } from './audit.js';
import { normaliseRecipient } from './address.js';
import { UsageError } from '../errors.js';
import { deleteSuppression, iterateSuppressions, selectSuppressionReasons, selectSuppressions, upsertSuppression, type SuppressionRow } from '../store/repos/suppressions.js';

/** A suppression entry. `address` is normalised: lower-case e-mail, or E.164 phone number. */
export interface Suppression {
  tenantId: string;
  channel: Channel;
  address: string;
  reason: string;
  /** Who added it: `manual`, `import`, the provider ref that reported the opt-out or whose event suppressed it, or `unsubscribe-link`. */
  source: string;
  createdAt: string;
  /** When it stops applying (soft bounces); null for a suppression without end. */
  expiresAt: string | null;
}

/** Normalises an address for the suppression list. @throws UsageError if it is not a valid address for the channel. */
export function suppressionKey(channel: Channel, address: string, defaultRegion?: string): string {
  const r = normaliseRecipient(channel, address, defaultRegion);
  if ('error' in r) throw new UsageError(`address ${r.error}`);
  return channel === 'email' ? r.to.toLowerCase() : r.to;
}

/**
 * Adds (or refreshes the reason of) a suppression. Audited.
 * @returns true if the address was not suppressed before.
 */
export async function addSuppression(ctx: CoreContext, s: Omit<Suppression, 'createdAt' | 'expiresAt'>): Promise<boolean> {
  const address = suppressionKey(s.channel, s.address);
  return ctx.sql.tx(async (t) => {
    const added = await upsertSuppression(t, { tenantId: s.tenantId, channel: s.channel, address, reason: s.reason, source: s.source, createdAt: ctx.clock.now().toISOString() });
    await recordAudit(ctx, t, added ? 'suppression.add' : 'suppression.update', `${s.tenantId}/${s.channel}/${address}`, s.tenantId, ['reason', 'source']);
    return added;
  });
}

/**
 * The suppression reason of each address for a tenant and channel (null where none, or where it expired), in the order given.
 * Addresses must be normalised (as stored in a batch). One query for all of them: a bulk send asks once per page
 * of rows, and again for the rows not yet taken up by a request when that answer is older than a second, so a
 * suppression added by another process during the run still stops them (rows already taken up by a request, at
 * most `--concurrency` of them, may be waiting for their rate slot and still go).
 */
export async function suppressionReasons(ctx: CoreContext, tenantId: string, channel: Channel, addresses: readonly string[]): Promise<Array<string | null>> {
  const keys = channel === 'email' ? addresses.map((a) => a.toLowerCase()) : addresses;
  if (keys.length === 0) return [];
  const rows = await selectSuppressionReasons(ctx.sql, tenantId, channel, keys, ctx.clock.now().toISOString());
  if (rows.length === 0) return keys.map(() => null);
  const byAddress = new Map(rows.map((r) => [r.address, r.reason]));
  return keys.map((k) => byAddress.get(k) ?? null);
}

/**
 * Suppressions of a tenant (optionally one channel; optionally one address, normalised as {@link suppressionKey}
 * makes it), by channel and address; expired ones too (their `expiresAt` is past).
 */
export async function listSuppressions(ctx: CoreContext, tenantId: string, channel?: Channel, address?: string): Promise<Suppression[]> {
  return (await selectSuppressions(ctx.sql, tenantId, channel, address)).map(toSuppression);
}

/**
 * A tenant's suppressions (optionally of one channel) in the order of {@link listSuppressions}, read lazily as
 * they are iterated, so memory stays flat whatever their number (`suppress list`; on SQLite the read holds the
 * store's connection until it ends: run no other statement inside the loop).
 */
export async function* iterateTenantSuppressions(ctx: CoreContext, tenantId: string, channel?: Channel): AsyncIterable<Suppression> {
  for await (const r of iterateSuppressions(ctx.sql, tenantId, channel)) yield toSuppression(r);
}

function toSuppression(r: SuppressionRow): Suppression {
  return { tenantId: r.tenant_id, channel: r.channel as Channel, address: r.address, reason: r.reason, source: r.source, createdAt: r.created_at, expiresAt: r.expires_at };
}

/** Removes a suppression. Audited. @returns false if there was none. */
export async function removeSuppression(ctx: CoreContext, tenantId: string, channel: Channel, address: string): Promise<boolean> {
  const key = suppressionKey(channel, address);
  return ctx.sql.tx(async (t) => {
    const removed = await deleteSuppression(t, tenantId, channel, key);
    if (removed) await recordAudit(ctx, t, 'suppression.remove', `${tenantId}/${channel}/${key}`, tenantId, []);
    return removed;
  });
}

/** Rows written per transaction by {@link importSuppressions}. */
const IMPORT_CHUNK = 1000;

/** What `suppress import` did. */
export interface ImportResult {
  rows: number;
  /** Addresses not suppressed before. */
  added: number;
  /** Addresses already suppressed (reason and source refreshed). */
  updated: number;
}

/**
 * Imports suppressions from a CSV with a header row: the address is in `column` (default `email` for e-mail,
 * `phone` otherwise); an optional `reason` column overrides `reason` per row. The file is streamed twice:
 * first every address is checked (nothing is written if any is bad), then rows are written in chunked
 * transactions of 1000. Audited once, with the count. `encoding`: the CSV's encoding (a WHATWG label; default UTF-8).
 * @throws UsageError naming the file, line and column of every bad address (up to 20 listed).
 */
export async function importSuppressions(
  ctx: CoreContext,
  opts: { tenantId: string; channel: Channel; csvPath: string; column?: string; reason: string; source?: string; defaultRegion?: string; encoding?: string },
): Promise<ImportResult> {
  const want = opts.column ?? (opts.channel === 'email' ? 'email' : 'phone');
  const open = async () => {
    // The CSV parser is loaded here, not at import: the send path imports this module (opt-outs) but reads no CSV.
    const csv = await (await import('./csv.js')).openCsv(opts.csvPath, opts.encoding);
    const col = csv.columns.find((c) => c.toLowerCase() === want.toLowerCase());
    if (!col) throw new UsageError(`--csv ${opts.csvPath} line 1: no "${want}" column (columns: ${csv.columns.join(', ')}); name it with --column`);
    const reasonCol = csv.columns.find((c) => c.toLowerCase() === 'reason');
    return { csv, col, reasonCol };
  };
  const errors: string[] = [];
  let bad = 0;
  let rows = 0;
  {
    const { csv, col } = await open();
    for await (const { line, record } of csv.rows) {
      rows++;
      const r = normaliseRecipient(opts.channel, (record[col] ?? '').trim(), opts.defaultRegion);
      if ('error' in r) {
        bad++;
        if (errors.length < 20) errors.push(`line ${line}: ${col} ${r.error}`);
      }
    }
  }
  if (bad > 0) throw new UsageError(`--csv ${opts.csvPath}: ${bad} bad address${bad > 1 ? 'es' : ''} in ${rows} rows; nothing was imported`, errors);
  const { csv, col, reasonCol } = await open();
  const source = opts.source ?? 'import';
  const result: ImportResult = { rows: 0, added: 0, updated: 0 };
  const flush = async (chunk: Array<[string, string]>) => {
    // Written in address order: two imports at once then lock the rows they share in the same order and cannot
    // deadlock (on PostgreSQL, files in opposite orders deadlocked, each costing the server's 1 s deadlock_timeout).
    chunk.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
    // Counted per attempt: PostgreSQL runs the whole transaction again after a deadlock (see PgSql.tx).
    const counts = await ctx.sql.tx(async (t) => {
      const createdAt = ctx.clock.now().toISOString();
      let added = 0;
      for (const [address, reason] of chunk) {
        if (await upsertSuppression(t, { tenantId: opts.tenantId, channel: opts.channel, address, reason, source, createdAt })) added++;
      }
      return { added, updated: chunk.length - added };
    });
    result.added += counts.added;
    result.updated += counts.updated;
  };
  let chunk: Array<[string, string]> = [];
  for await (const { record } of csv.rows) {
    result.rows++;
    const address = suppressionKey(opts.channel, (record[col] ?? '').trim(), opts.defaultRegion);
    chunk.push([address, (reasonCol && record[reasonCol]?.trim()) || opts.reason]);
    if (chunk.length >= IMPORT_CHUNK) {
      await flush(chunk);
      chunk = [];
    }
  }
  await flush(chunk);
  await ctx.sql.tx((t) => recordAudit(ctx, t, 'suppression.import', `${opts.tenantId}/${opts.channel}`, opts.tenantId, ['reason', 'source', `rows=${result.rows}`]));
  return result;
}
