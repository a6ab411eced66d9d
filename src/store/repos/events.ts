/**
 * The SQL of delivery status (issue 13): provider events, each message's delivery status, soft-bounce counts,
 * automatic suppressions (with an expiry), the settlement of a ledger row left `unknown` by a crash, the public
 * URL setting, the unsubscribe token's row, and the read queries of `events list`, `message show`, `batch show`
 * and `report`. Core code (`src/core/events.ts`, `src/core/webhooks.ts`) decides; this module only reads and
 * writes, on either dialect. Callers own the transactions (pass the transaction's handle).
 */
import type { Dialect, Sql } from '../sql.js';
import { whereAll } from '../db.js';

/** An event row to insert. Times are ISO 8601 UTC. */
export interface EventInsert {
  key: string;
  receivedAt: string;
  occurredAt: string | null;
  tenantId: string | null;
  channel: string;
  provider: string;
  providerKind: string;
  type: string;
  providerType: string;
  recipient: string | null;
  messageId: string | null;
  batchId: string | null;
  rowNo: number | null;
  detail: string | null;
  payload: string;
}

/** A stored event as read back. */
export interface EventRow extends Omit<EventInsert, 'key'> {
  id: number;
  key: string;
}

/** What a message's delivery status row names: the message (provider message id + recipient), where it belongs, its status. */
interface DeliveryFields {
  messageId: string;
  recipient: string;
  tenantId: string | null;
  channel: string;
  provider: string;
  batchId: string | null;
  rowNo: number | null;
  status: string;
  statusAt: string | null;
}

/** A delivery status update for one message. `at` is ISO 8601. */
export interface DeliveryUpsert extends DeliveryFields {
  rank: number;
  delivered: boolean;
  bounced: boolean;
  complained: boolean;
  at: string;
}

/** A message's delivery status as stored. */
export interface DeliveryRow extends DeliveryFields {
  events: number;
  firstAt: string;
  updatedAt: string;
}

/** A ledger row as the settlement needs it. `leaseLive` is whether its batch's lease is still held (not expired). */
export interface SettleCandidate {
  state: string;
  recipient: string;
  attempts: number;
  leaseLive: boolean;
}

/** Filters of {@link selectEvents}; all optional but `limit`. `since` is ISO 8601. */
export interface EventFilter {
  tenantId?: string;
  batchId?: string;
  type?: string;
  since?: string;
  provider?: string;
  limit: number;
}

/** Delivery counts of one report group. */
export interface DeliveryGroup {
  key: string;
  tracked: number;
  delivered: number;
  bounced: number;
  complained: number;
}

/** The outcome of an automatic suppression write. */
export type SuppressOutcome = 'added' | 'updated' | 'kept';

/** A `messages` row (one send attempt) as the timeline reads it. */
export interface MessageRow {
  id: number;
  createdAt: string;
  tenantId: string;
  channel: string;
  provider: string;
  providerKind: string;
  recipient: string;
  status: 'sent' | 'failed';
  messageId: string | null;
  errorKind: string | null;
  error: string | null;
  errorCode: string | null;
  fallback: number;
  attempt: number;
  batchId: string | null;
  rowNo: number | null;
}

// Columns are read under their own (snake_case) names: PostgreSQL folds unquoted aliases to lower case.
const EVENT_COLUMNS = `id, event_key, received_at, occurred_at, tenant_id, channel, provider, provider_kind, type, provider_type,
  recipient, message_id, batch_id, row_no, detail, payload`;

interface EventDbRow {
  id: number;
  event_key: string;
  received_at: string;
  occurred_at: string | null;
  tenant_id: string | null;
  channel: string;
  provider: string;
  provider_kind: string;
  type: string;
  provider_type: string;
  recipient: string | null;
  message_id: string | null;
  batch_id: string | null;
  row_no: number | null;
  detail: string | null;
  payload: string;
}

const toEventRow = (r: EventDbRow): EventRow => ({
  id: r.id,
  key: r.event_key,
  receivedAt: r.received_at,
  occurredAt: r.occurred_at,
  tenantId: r.tenant_id,
  channel: r.channel,
  provider: r.provider,
  providerKind: r.provider_kind,
  type: r.type,
  providerType: r.provider_type,
  recipient: r.recipient,
  messageId: r.message_id,
  batchId: r.batch_id,
  rowNo: r.row_no,
  detail: r.detail,
  payload: r.payload,
});

const MESSAGE_COLUMNS = `id, created_at, tenant_id, channel, provider, provider_kind, recipient, status, message_id, error_kind, error,
  error_code, fallback, attempt, batch_id, row_no`;

interface MessageDbRow {
  id: number;
  created_at: string;
  tenant_id: string;
  channel: string;
  provider: string;
  provider_kind: string;
  recipient: string;
  status: 'sent' | 'failed';
  message_id: string | null;
  error_kind: string | null;
  error: string | null;
  error_code: string | null;
  fallback: number;
  attempt: number;
  batch_id: string | null;
  row_no: number | null;
}

const toMessageRow = (r: MessageDbRow): MessageRow => ({
  id: r.id,
  createdAt: r.created_at,
  tenantId: r.tenant_id,
  channel: r.channel,
  provider: r.provider,
  providerKind: r.provider_kind,
  recipient: r.recipient,
  status: r.status,
  messageId: r.message_id,
  errorKind: r.error_kind,
  error: r.error,
  errorCode: r.error_code,
  fallback: Number(r.fallback),
  attempt: r.attempt,
  batchId: r.batch_id,
  rowNo: r.row_no,
});

/**
 * Serialises the ingestion transactions of one provider config (`ref`) on PostgreSQL: one webhook request's events
 * and the same events again (a provider's retry, `events import`) in another order would otherwise lock their rows
 * (event keys, deliveries, batch rows, suppressions) in opposite orders and deadlock, again on every retry
 * (measured: 100 events in opposite orders deadlocked ten attempts in a row). A transaction-scoped advisory lock,
 * released at commit. On SQLite a transaction already has the store to itself: nothing to do.
 */
export async function lockEventSource(sql: Sql, ref: string): Promise<void> {
  if (sql.dialect === 'postgres') await sql.get('SELECT pg_advisory_xact_lock(hashtextextended(?, 7)) AS locked', `events|${ref}`);
}

/** Inserts an event. @returns its id, or undefined when an event with the same key is stored already. */
export async function insertEvent(sql: Sql, e: EventInsert): Promise<number | undefined> {
  const r = await sql.get<{ id: number }>(
    `INSERT INTO events (event_key, received_at, occurred_at, tenant_id, channel, provider, provider_kind, type, provider_type,
       recipient, message_id, batch_id, row_no, detail, payload)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING RETURNING id`,
    e.key, e.receivedAt, e.occurredAt, e.tenantId, e.channel, e.provider, e.providerKind, e.type, e.providerType, e.recipient, e.messageId, e.batchId, e.rowNo, e.detail, e.payload,
  );
  return r === undefined ? undefined : Number(r.id);
}

/**
 * The upsert of a delivery status, per dialect (made once: a receiver runs it for every event). The larger of two
 * values is SQLite's two-argument max(), PostgreSQL's GREATEST.
 */
const UPSERT_DELIVERY = Object.fromEntries(
  (['sqlite', 'postgres'] as const).map((dialect) => {
    const max = dialect === 'postgres' ? 'GREATEST' : 'max';
    return [
      dialect,
      `INSERT INTO deliveries (message_id, recipient, tenant_id, channel, provider, batch_id, row_no, status, rank, status_at,
         delivered, bounced, complained, events, first_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
       ON CONFLICT (message_id, recipient) DO UPDATE SET
         status = CASE WHEN excluded.rank >= deliveries.rank THEN excluded.status ELSE deliveries.status END,
         status_at = CASE WHEN excluded.rank >= deliveries.rank THEN excluded.status_at ELSE deliveries.status_at END,
         rank = ${max}(deliveries.rank, excluded.rank),
         delivered = ${max}(deliveries.delivered, excluded.delivered),
         bounced = ${max}(deliveries.bounced, excluded.bounced),
         complained = ${max}(deliveries.complained, excluded.complained),
         tenant_id = COALESCE(deliveries.tenant_id, excluded.tenant_id),
         batch_id = COALESCE(deliveries.batch_id, excluded.batch_id),
         row_no = COALESCE(deliveries.row_no, excluded.row_no),
         events = deliveries.events + 1,
         updated_at = excluded.updated_at`,
    ];
  }),
) as Record<Dialect, string>;

/**
 * Records an event against a message's delivery status: the status moves to the event's when its rank is at
 * least the current one (a late `deferred` never overwrites `delivered`); flags only ever turn on.
 */
export async function upsertDelivery(sql: Sql, d: DeliveryUpsert): Promise<void> {
  await sql.run(
    UPSERT_DELIVERY[sql.dialect],
    d.messageId, d.recipient, d.tenantId, d.channel, d.provider, d.batchId, d.rowNo, d.status, d.rank, d.statusAt, d.delivered ? 1 : 0, d.bounced ? 1 : 0, d.complained ? 1 : 0, d.at, d.at,
  );
}

/** A batch's tenant and channel, or undefined when there is no such batch. */
export async function selectEventBatch(sql: Sql, batchId: string): Promise<{ tenantId: string; channel: string } | undefined> {
  const r = await sql.get<{ tenant_id: string; channel: string }>('SELECT tenant_id, channel FROM batches WHERE id = ?', batchId);
  return r && { tenantId: r.tenant_id, channel: r.channel };
}

/** Whether a tenant exists. */
export async function selectEventTenantExists(sql: Sql, tenantId: string): Promise<boolean> {
  return (await sql.get('SELECT 1 AS one FROM tenants WHERE id = ?', tenantId)) !== undefined;
}

/** The sent message with this provider id and recipient (case-insensitive), if switchboard recorded one. */
export async function selectSentMessage(
  sql: Sql,
  messageId: string,
  recipient: string,
): Promise<{ tenantId: string; batchId: string | null; rowNo: number | null } | undefined> {
  const r = await sql.get<{ tenant_id: string; batch_id: string | null; row_no: number | null }>(
    `SELECT tenant_id, batch_id, row_no FROM messages
     WHERE message_id = ? AND status = 'sent' AND lower(recipient) = ? ORDER BY id DESC LIMIT 1`,
    messageId,
    recipient.toLowerCase(),
  );
  return r && { tenantId: r.tenant_id, batchId: r.batch_id, rowNo: r.row_no };
}

/** A ledger row that an event might settle. `now` (ISO 8601) decides whether the batch's lease is still live. */
export async function selectSettleCandidate(sql: Sql, batchId: string, rowNo: number, now: string): Promise<SettleCandidate | undefined> {
  const r = await sql.get<{ state: string; recipient: string; attempts: number; lease_live: number }>(
    `SELECT i.state, i.recipient, i.attempts, CASE WHEN b.lease_owner IS NOT NULL AND b.lease_expires_at > ? THEN 1 ELSE 0 END AS lease_live
     FROM batch_items i JOIN batches b ON b.id = i.batch_id WHERE i.batch_id = ? AND i.row_no = ?`,
    now,
    batchId,
    rowNo,
  );
  return r && { state: r.state, recipient: r.recipient, attempts: r.attempts, leaseLive: Number(r.lease_live) === 1 };
}

/**
 * Marks a ledger row `sent` with the message id an event proved, records the send in `messages` (so the report
 * and `message show` see it), and drops the batch's kept counts so they are read from its rows again.
 * @returns false when the row was no longer in `from` (someone else changed it).
 */
export async function settleEventRow(
  sql: Sql,
  s: { batchId: string; rowNo: number; from: string; tenantId: string; channel: string; provider: string; providerKind: string; recipient: string; messageId: string | null; attempt: number; at: string },
): Promise<boolean> {
  const { changes } = await sql.run(
    `UPDATE batch_items SET state = 'sent', provider = ?, message_id = ?, error = NULL, updated_at = ? WHERE batch_id = ? AND row_no = ? AND state = ?`,
    s.provider, s.messageId, s.at, s.batchId, s.rowNo, s.from,
  );
  if (changes === 0) return false;
  await sql.run(
    `INSERT INTO messages (created_at, tenant_id, channel, provider, provider_kind, recipient, status, message_id, fallback, attempt, batch_id, row_no)
     VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, 0, ?, ?, ?)`,
    s.at, s.tenantId, s.channel, s.provider, s.providerKind, s.recipient, s.messageId, s.attempt, s.batchId, s.rowNo,
  );
  await sql.run('UPDATE batches SET stats = NULL WHERE id = ?', s.batchId);
  return true;
}

/**
 * Adds an automatic suppression. A permanent one (`expiresAt` null) replaces a temporary one; a temporary one
 * extends another temporary one; an active permanent suppression is kept as it is (a manual reason is never
 * overwritten). An expired suppression counts as none.
 */
export async function suppressFromEvent(
  sql: Sql,
  s: { tenantId: string; channel: string; address: string; reason: string; source: string; at: string; expiresAt: string | null },
): Promise<SuppressOutcome> {
  const current = await sql.get<{ expires_at: string | null }>(
    'SELECT expires_at FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ?',
    s.tenantId,
    s.channel,
    s.address,
  );
  const active = current !== undefined && (current.expires_at === null || current.expires_at > s.at);
  if (active && current.expires_at === null) return 'kept';
  if (active && s.expiresAt !== null && current.expires_at !== null && current.expires_at >= s.expiresAt) return 'kept';
  await sql.run(
    `INSERT INTO suppressions (tenant_id, channel, address, reason, source, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (tenant_id, channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source,
       created_at = excluded.created_at, expires_at = excluded.expires_at`,
    s.tenantId, s.channel, s.address, s.reason, s.source, s.at, s.expiresAt,
  );
  return current === undefined ? 'added' : 'updated';
}

/**
 * Removes the recipient's opt-out suppression (reason starting `opt-out`, in any case: SQLite's LIKE ignores ASCII
 * case, PostgreSQL's does not, so the reason is lower-cased for both). @returns whether one was removed.
 */
export async function deleteOptOutSuppression(sql: Sql, tenantId: string, channel: string, address: string): Promise<boolean> {
  const r = await sql.run("DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ? AND lower(reason) LIKE 'opt-out%'", tenantId, channel, address);
  return r.changes > 0;
}

/** A delivery succeeded: forgets the address's soft bounces and lifts a suppression that has an expiry. @returns whether one was lifted. */
export async function clearSoftBounces(sql: Sql, tenantId: string, channel: string, address: string): Promise<boolean> {
  await sql.run('DELETE FROM soft_bounces WHERE tenant_id = ? AND channel = ? AND address = ?', tenantId, channel, address);
  const r = await sql.run('DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ? AND expires_at IS NOT NULL', tenantId, channel, address);
  return r.changes > 0;
}

/** Records a soft bounce and forgets older ones. @returns how many the address has at or after `windowStart` (ISO 8601). */
export async function countSoftBounce(
  sql: Sql,
  s: { tenantId: string; channel: string; address: string; eventId: number; at: string; windowStart: string },
): Promise<number> {
  await sql.run('INSERT INTO soft_bounces (tenant_id, channel, address, event_id, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING', s.tenantId, s.channel, s.address, s.eventId, s.at);
  await sql.run('DELETE FROM soft_bounces WHERE tenant_id = ? AND channel = ? AND address = ? AND at < ?', s.tenantId, s.channel, s.address, s.windowStart);
  const r = await sql.get<{ n: number }>('SELECT count(*) AS n FROM soft_bounces WHERE tenant_id = ? AND channel = ? AND address = ?', s.tenantId, s.channel, s.address);
  return Number(r?.n ?? 0);
}

/** Events matching the filter, newest first. */
export async function selectEvents(sql: Sql, f: EventFilter): Promise<EventRow[]> {
  const { where, args } = whereAll([
    ['tenant_id = ?', f.tenantId],
    ['batch_id = ?', f.batchId],
    ['type = ?', f.type],
    ['received_at >= ?', f.since],
    ['provider = ?', f.provider],
  ]);
  const rows = await sql.all<EventDbRow>(`SELECT ${EVENT_COLUMNS} FROM events ${where} ORDER BY id DESC LIMIT ?`, ...args, f.limit);
  return rows.map(toEventRow);
}

/** A message's events (by provider message id and recipient, and by its batch row), oldest first. */
export async function selectEventsOfMessage(sql: Sql, m: { messageId: string | null; recipient: string; batchId: string | null; rowNo: number | null }): Promise<EventRow[]> {
  const rows = await sql.all<EventDbRow>(
    `SELECT ${EVENT_COLUMNS} FROM events WHERE (message_id = ? AND recipient = ?) OR (batch_id = ? AND row_no = ?)
     ORDER BY COALESCE(occurred_at, received_at), id`,
    m.messageId,
    m.recipient.toLowerCase(),
    m.batchId,
    m.rowNo,
  );
  return rows.map(toEventRow);
}

/** Events of a provider message id (all recipients), oldest first. */
export async function selectEventsByMessageId(sql: Sql, messageId: string): Promise<EventRow[]> {
  const rows = await sql.all<EventDbRow>(`SELECT ${EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY COALESCE(occurred_at, received_at), id`, messageId);
  return rows.map(toEventRow);
}

/** A message's delivery status, if any event came for it. */
export async function selectDelivery(sql: Sql, messageId: string, recipient: string): Promise<DeliveryRow | undefined> {
  const r = await sql.get<{
    message_id: string;
    recipient: string;
    tenant_id: string | null;
    channel: string;
    provider: string;
    batch_id: string | null;
    row_no: number | null;
    status: string;
    status_at: string | null;
    events: number;
    first_at: string;
    updated_at: string;
  }>(
    `SELECT message_id, recipient, tenant_id, channel, provider, batch_id, row_no, status, status_at, events, first_at, updated_at
     FROM deliveries WHERE message_id = ? AND recipient = ?`,
    messageId,
    recipient.toLowerCase(),
  );
  return (
    r && {
      messageId: r.message_id,
      recipient: r.recipient,
      tenantId: r.tenant_id,
      channel: r.channel,
      provider: r.provider,
      batchId: r.batch_id,
      rowNo: r.row_no,
      status: r.status,
      statusAt: r.status_at,
      events: Number(r.events),
      firstAt: r.first_at,
      updatedAt: r.updated_at,
    }
  );
}

/** A batch's messages by delivery status: status → count (statuses with none are absent). */
export async function selectDeliveryCounts(sql: Sql, batchId: string): Promise<Record<string, number>> {
  const rows = await sql.all<{ status: string; n: number }>('SELECT status, count(*) AS n FROM deliveries WHERE batch_id = ? GROUP BY status', batchId);
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

/** Delivery counts of messages first seen at or after `since` (ISO 8601), grouped by `column`, optionally for one tenant; by group key. */
export async function selectDeliveryReport(sql: Sql, since: string, column: 'tenant_id' | 'provider' | 'channel', tenantId?: string): Promise<DeliveryGroup[]> {
  const rows = await sql.all<{ key: string; tracked: number; delivered: number | null; bounced: number | null; complained: number | null }>(
    `SELECT COALESCE(${column}, '') AS key, count(*) AS tracked, sum(delivered) AS delivered, sum(bounced) AS bounced, sum(complained) AS complained
     FROM deliveries WHERE first_at >= ?${tenantId === undefined ? '' : ' AND tenant_id = ?'} GROUP BY 1 ORDER BY 1`,
    since,
    ...(tenantId === undefined ? [] : [tenantId]),
  );
  return rows.map((r) => ({ key: r.key, tracked: Number(r.tracked), delivered: Number(r.delivered), bounced: Number(r.bounced), complained: Number(r.complained) }));
}

/** Sets (or with `value` undefined, removes) a value of the store's `meta` table. */
export async function upsertMetaSetting(sql: Sql, key: string, value: string | undefined): Promise<void> {
  if (value === undefined) await sql.run('DELETE FROM meta WHERE key = ?', key);
  else await sql.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value);
}

/** Sent messages (attempts that a provider accepted) with this provider message id, newest first. */
export async function selectMessagesByProviderId(sql: Sql, messageId: string): Promise<MessageRow[]> {
  const rows = await sql.all<MessageDbRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE message_id = ? AND status = 'sent' ORDER BY id DESC`, messageId);
  return rows.map(toMessageRow);
}

/** One send attempt by its own id. */
export async function selectMessageById(sql: Sql, id: number): Promise<MessageRow | undefined> {
  const r = await sql.get<MessageDbRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`, id);
  return r && toMessageRow(r);
}

/** Every attempt of the same message: its batch row's attempts, or (outside a batch) just this one. */
export async function selectAttemptsOf(sql: Sql, m: MessageRow): Promise<MessageRow[]> {
  if (m.batchId === null || m.rowNo === null) return [m];
  const rows = await sql.all<MessageDbRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE batch_id = ? AND row_no = ? ORDER BY id`, m.batchId, m.rowNo);
  return rows.map(toMessageRow);
}

/** The tenant, channel and recipient of a ledger row (what an unsubscribe token names), or undefined. */
export async function selectUnsubscribeRow(sql: Sql, batchId: string, rowNo: number): Promise<{ tenantId: string; channel: string; recipient: string; messageId: string | null } | undefined> {
  const r = await sql.get<{ tenant_id: string; channel: string; recipient: string; message_id: string | null }>(
    'SELECT b.tenant_id, b.channel, i.recipient, i.message_id FROM batch_items i JOIN batches b ON b.id = i.batch_id WHERE i.batch_id = ? AND i.row_no = ?',
    batchId,
    rowNo,
  );
  return r && { tenantId: r.tenant_id, channel: r.channel, recipient: r.recipient, messageId: r.message_id };
}

/**
 * A fingerprint of the provider configs (count, last change, highest id): the webhook receiver reloads its
 * configs when it changes.
 */
export async function selectProviderConfigsVersion(sql: Sql): Promise<string> {
  const v = await sql.get<{ n: number; u: string | null; i: number | null }>('SELECT count(*) AS n, max(updated_at) AS u, max(id) AS i FROM provider_configs');
  return `${Number(v?.n ?? 0)}|${v?.u ?? null}|${v?.i ?? null}`;
}
