/**
 * Reports and the message log, read from the `messages` table (one row per send attempt: a retry or a
 * fallback is a further row). `report` counts attempts that were accepted (`sent`) or refused (`failed`);
 * a message retried twice then sent counts 2 failed + 1 sent, which is what the providers saw.
 * Delivery figures come from provider events (`deliveries`, see src/core/events.ts): of the messages sent since
 * then, how many were delivered, bounced (bounced, dropped, undelivered or failed) or complained about.
 */
import type { CoreContext, Channel } from './context.js';
import { UsageError } from '../errors.js';
import { selectDeliveryReport } from '../store/repos/events.js';
import { selectReportCounts, type ReportColumn } from '../store/repos/reports.js';
import { selectMessageLog } from '../store/repos/messages.js';

/** What `report` groups by. */
export type ReportBy = 'tenant' | 'provider' | 'channel';

/** One group of a report. `fallbackRate` = sent through a fallback provider / sent (0 when nothing was sent). */
export interface ReportRow {
  key: string;
  sent: number;
  failed: number;
  fallback: number;
  fallbackRate: number;
  /** Sent and failed attempts per provider ref. */
  byProvider: Record<string, { sent: number; failed: number }>;
  /** Messages with at least one delivery event; of them, delivered (or opened/clicked/read), bounced, complained. */
  tracked: number;
  delivered: number;
  bounced: number;
  complained: number;
  /** delivered / bounced / complained per sent message; null when no event came for the group (e.g. SMTP). */
  deliveredRate: number | null;
  bounceRate: number | null;
  complaintRate: number | null;
}

/** A report over a time range. */
export interface Report {
  since: string;
  by: ReportBy;
  rows: ReportRow[];
  total: Omit<ReportRow, 'key'>;
}

const GROUP_COLUMN: Record<ReportBy, ReportColumn> = { tenant: 'tenant_id', provider: 'provider', channel: 'channel' };

/**
 * Counts send attempts since `since`, grouped by tenant, provider or channel, with a per-provider breakdown.
 * @throws UsageError for an unknown `by`.
 */
export async function buildReport(ctx: CoreContext, opts: { since: Date; by: ReportBy; tenantId?: string }): Promise<Report> {
  const col = GROUP_COLUMN[opts.by];
  if (!col) throw new UsageError(`--by ${String(opts.by)}: expected tenant, provider or channel`);
  const rows = await selectReportCounts(ctx.sql, opts.since.toISOString(), col, opts.tenantId);
  const groups = new Map<string, ReportRow>();
  const empty = (): Omit<ReportRow, 'key'> => ({
    sent: 0, failed: 0, fallback: 0, fallbackRate: 0, byProvider: {}, tracked: 0, delivered: 0, bounced: 0, complained: 0, deliveredRate: null, bounceRate: null, complaintRate: null,
  });
  const total = empty();
  for (const r of rows) {
    const g = groups.get(r.key) ?? { key: r.key, ...empty() };
    groups.set(r.key, g);
    for (const acc of [g, total]) {
      acc.sent += r.sent;
      acc.failed += r.failed;
      acc.fallback += r.fallback;
      const p = (acc.byProvider[r.provider] ??= { sent: 0, failed: 0 });
      p.sent += r.sent;
      p.failed += r.failed;
    }
  }
  for (const d of await selectDeliveryReport(ctx.sql, opts.since.toISOString(), col, opts.tenantId)) {
    if (!d.key) continue; // events that could not be tied to a tenant
    const g = groups.get(d.key) ?? { key: d.key, ...empty() };
    groups.set(d.key, g);
    for (const acc of [g, total]) {
      acc.tracked += d.tracked;
      acc.delivered += d.delivered;
      acc.bounced += d.bounced;
      acc.complained += d.complained;
    }
  }
  const share = (n: number, of: number) => (of === 0 ? 0 : Math.round((n / of) * 10_000) / 10_000);
  const rates = (x: Omit<ReportRow, 'key'>) => {
    x.fallbackRate = share(x.fallback, x.sent);
    const of = Math.max(x.sent, x.tracked);
    x.deliveredRate = x.tracked === 0 ? null : share(x.delivered, of);
    x.bounceRate = x.tracked === 0 ? null : share(x.bounced, of);
    x.complaintRate = x.tracked === 0 ? null : share(x.complained, of);
  };
  for (const g of groups.values()) rates(g);
  rates(total);
  return { since: opts.since.toISOString(), by: opts.by, rows: [...groups.values()], total };
}

/** One send attempt as listed by `log list`. */
export interface LogEntry {
  id: number;
  at: string;
  tenantId: string;
  channel: Channel;
  provider: string;
  recipient: string;
  status: 'sent' | 'failed';
  messageId: string | null;
  errorKind: string | null;
  errorCode: string | null;
  error: string | null;
  fallback: boolean;
  attempt: number;
  batchId: string | null;
  row: number | null;
}

/** Filters of `log list`; all optional. `limit` defaults to 100 (the newest). */
export interface LogFilter {
  tenantId?: string;
  channel?: Channel;
  provider?: string;
  status?: 'sent' | 'failed';
  since?: Date;
  batchId?: string;
  limit?: number;
}

/** Send attempts matching the filter, newest first. */
export async function listLog(ctx: CoreContext, f: LogFilter = {}): Promise<LogEntry[]> {
  const rows = await selectMessageLog(ctx.sql, {
    tenantId: f.tenantId,
    channel: f.channel,
    provider: f.provider,
    status: f.status,
    since: f.since?.toISOString(),
    batchId: f.batchId,
    limit: f.limit ?? 100,
  });
  return rows.map((r) => ({
    id: r.id,
    at: r.created_at,
    tenantId: r.tenant_id,
    channel: r.channel as Channel,
    provider: r.provider,
    recipient: r.recipient,
    status: r.status,
    messageId: r.message_id,
    errorKind: r.error_kind,
    errorCode: r.error_code,
    error: r.error,
    fallback: r.fallback === 1,
    attempt: r.attempt,
    batchId: r.batch_id,
    row: r.row_no,
  }));
}
