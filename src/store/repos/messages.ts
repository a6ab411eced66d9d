/**
 * The message log's table (`messages`): one row per send attempt (a retry or a fallback is a further row),
 * written by the dispatcher, read by `log list`. Dialect-neutral SQL (SQLite and PostgreSQL).
 */
import { whereAll } from '../db.js';
import type { Sql } from '../sql.js';

/** One attempt to append. `at` is ISO 8601 UTC; an error's `kind`/`message`/`code` only on a failed attempt. */
export interface MessageAttempt {
  at: string;
  tenantId: string;
  channel: string;
  /** Provider ref (`acme/email/main`) and kind (`smtp`, `sendgrid`, …). */
  provider: string;
  providerKind: string;
  recipient: string;
  /** 1-based attempt number at this provider. */
  attempt: number;
  fallback: boolean;
  messageId: string | null;
  error: { kind: string; message: string; code?: string } | null;
  batchId: string | null;
  rowNo: number | null;
}

/**
 * The INSERT of one attempt (15 `?` in the order of {@link messageAttemptArgs}); shared with the SQLite run
 * ledger, which prepares it once and runs it inside its group commit.
 */
export const MESSAGE_INSERT_SQL = `INSERT INTO messages (created_at, tenant_id, channel, provider, provider_kind, recipient, status, message_id,
   error_kind, error_code, error, fallback, attempt, batch_id, row_no)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** The arguments of {@link MESSAGE_INSERT_SQL} for one attempt. */
export function messageAttemptArgs(a: MessageAttempt): unknown[] {
  const e = a.error;
  return [a.at, a.tenantId, a.channel, a.provider, a.providerKind, a.recipient, e ? 'failed' : 'sent', a.messageId,
    e?.kind ?? null, e?.code ?? null, e?.message ?? null, a.fallback ? 1 : 0, a.attempt, a.batchId, a.rowNo];
}

/** Where the dispatcher's attempt records go when a run journals them (see the run ledger), instead of {@link insertMessageAttempts}. */
export interface AttemptJournal {
  /**
   * Queues attempt records; they commit with the run's next ledger write (no await: a failure surfaces on the
   * run's next awaited write or flush).
   */
  logAttempts(rows: readonly MessageAttempt[]): void;
}

/** Appends attempts in one transaction. */
export async function insertMessageAttempts(sql: Sql, rows: readonly MessageAttempt[]): Promise<void> {
  if (rows.length === 0) return;
  await sql.tx(async (t) => {
    for (const r of rows) await t.run(MESSAGE_INSERT_SQL, ...messageAttemptArgs(r));
  });
}

/** One `messages` row as stored. */
export interface MessageRow {
  id: number;
  created_at: string;
  tenant_id: string;
  channel: string;
  provider: string;
  recipient: string;
  status: 'sent' | 'failed';
  message_id: string | null;
  error_kind: string | null;
  error_code: string | null;
  error: string | null;
  fallback: number;
  attempt: number;
  batch_id: string | null;
  row_no: number | null;
}

/** Filters of the message log; each optional. `since` is ISO 8601. */
export interface MessageLogFilter {
  tenantId?: string;
  channel?: string;
  provider?: string;
  status?: 'sent' | 'failed';
  since?: string;
  batchId?: string;
  limit: number;
}

/** The newest `limit` attempts matching the filter, newest first. */
export async function selectMessageLog(sql: Sql, f: MessageLogFilter): Promise<MessageRow[]> {
  const { where, args } = whereAll([
    ['tenant_id = ?', f.tenantId],
    ['channel = ?', f.channel],
    ['provider = ?', f.provider],
    ['status = ?', f.status],
    ['created_at >= ?', f.since],
    ['batch_id = ?', f.batchId],
  ]);
  return sql.all<MessageRow>(
    `SELECT id, created_at, tenant_id, channel, provider, recipient, status, message_id, error_kind, error_code, error, fallback, attempt, batch_id, row_no
     FROM messages ${where} ORDER BY id DESC LIMIT ?`,
    ...args,
    f.limit,
  );
}
