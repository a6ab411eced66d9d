/**
 * The `report` command's counts of the message log (`messages`): attempts per group and provider. Dialect-neutral
 * SQL (SQLite and PostgreSQL).
 */
import { byteOrder, type Sql } from '../sql.js';

/** What a report groups by: the `messages` column. */
export type ReportColumn = 'tenant_id' | 'provider' | 'channel';

/** Attempts of one group and provider: accepted (`sent`), refused (`failed`), and sent through a fallback. */
export interface ReportCountRow {
  key: string;
  provider: string;
  sent: number;
  failed: number;
  fallback: number;
}

/**
 * Counts attempts since `since` (ISO 8601), optionally of one tenant, grouped by `column` and provider,
 * ordered by both. @throws Error for a column other than {@link ReportColumn} (it is part of the SQL text).
 */
export async function selectReportCounts(sql: Sql, since: string, column: ReportColumn, tenantId?: string): Promise<ReportCountRow[]> {
  if (column !== 'tenant_id' && column !== 'provider' && column !== 'channel') throw new Error(`report column ${String(column)}`);
  const rows = await sql.all<ReportCountRow>(
    `SELECT ${column} AS key, provider,
       sum(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS sent,
       sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
       sum(CASE WHEN status = 'sent' AND fallback = 1 THEN 1 ELSE 0 END) AS fallback
     FROM messages WHERE created_at >= ? AND (CAST(? AS TEXT) IS NULL OR tenant_id = ?) GROUP BY ${column}, provider ORDER BY ${byteOrder(sql, column)}, ${byteOrder(sql, 'provider')}`,
    since,
    tenantId ?? null,
    tenantId ?? null,
  );
  // PostgreSQL's sum() is numeric (a string through pg): counts are numbers on both.
  return rows.map((r) => ({ key: r.key, provider: r.provider, sent: Number(r.sent), failed: Number(r.failed), fallback: Number(r.fallback) }));
}
