/**
 * The SQL of delivery status (issue 13), in one place behind {@link EventRepo}: provider events, each message's
 * delivery status, soft-bounce counts, automatic suppressions (with an expiry), the settlement of a ledger row
 * left `unknown` by a crash, the public URL setting, and the read queries of `events list`, `message show`,
 * `batch show` and `report`. Core code (`src/core/events.ts`) decides; this module only reads and writes.
 * Statements are prepared once per store handle ({@link prepared}). Callers own the transactions.
 */
import type { Db } from './db.js';
import { prepared, whereAll } from './db.js';

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

/** A delivery status update for one message (provider message id + recipient). */
export interface DeliveryUpsert {
  messageId: string;
  recipient: string;
  tenantId: string | null;
  channel: string;
  provider: string;
  batchId: string | null;
  rowNo: number | null;
  status: string;
  rank: number;
  statusAt: string | null;
  delivered: boolean;
  bounced: boolean;
  complained: boolean;
  at: string;
}

/** A message's delivery status as stored. */
export interface DeliveryRow {
  messageId: string;
  recipient: string;
  tenantId: string | null;
  channel: string;
  provider: string;
  batchId: string | null;
  rowNo: number | null;
  status: string;
  statusAt: string | null;
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

/** Filters of {@link EventRepo.list}; all optional. */
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

const EVENT_COLUMNS = `id, event_key AS key, received_at AS receivedAt, occurred_at AS occurredAt, tenant_id AS tenantId, channel, provider,
  provider_kind AS providerKind, type, provider_type AS providerType, recipient, message_id AS messageId, batch_id AS batchId,
  row_no AS rowNo, detail, payload`;

const DELIVERY_COLUMNS = `message_id AS messageId, recipient, tenant_id AS tenantId, channel, provider, batch_id AS batchId, row_no AS rowNo,
  status, status_at AS statusAt, events, first_at AS firstAt, updated_at AS updatedAt`;

const writers = new WeakMap<Db, ReturnType<Db['transaction']>>();

/** Repository over the delivery-status tables of one store handle. */
export class EventRepo {
  constructor(private readonly db: Db) {}

  /**
   * Runs `fn` in one IMMEDIATE transaction (the transaction wrapper is made once per store handle: a receiver
   * runs one per request). @throws what `fn` or the store throws; nothing is kept then.
   */
  write<T>(fn: () => T): T {
    let tx = writers.get(this.db);
    if (!tx) writers.set(this.db, (tx = this.db.transaction((f: () => unknown) => f())));
    return tx.immediate(fn) as T;
  }

  /** Inserts an event. @returns its id, or undefined when an event with the same key is stored already. */
  insertEvent(e: EventInsert): number | undefined {
    const r = prepared(
      this.db,
      `INSERT INTO events (event_key, received_at, occurred_at, tenant_id, channel, provider, provider_kind, type, provider_type,
         recipient, message_id, batch_id, row_no, detail, payload)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING`,
    ).run(e.key, e.receivedAt, e.occurredAt, e.tenantId, e.channel, e.provider, e.providerKind, e.type, e.providerType, e.recipient, e.messageId, e.batchId, e.rowNo, e.detail, e.payload);
    return r.changes > 0 ? Number(r.lastInsertRowid) : undefined;
  }

  /**
   * Records an event against a message's delivery status: the status moves to the event's when its rank is at
   * least the current one (a late `deferred` never overwrites `delivered`); flags only ever turn on.
   */
  upsertDelivery(d: DeliveryUpsert): void {
    prepared(
      this.db,
      `INSERT INTO deliveries (message_id, recipient, tenant_id, channel, provider, batch_id, row_no, status, rank, status_at,
         delivered, bounced, complained, events, first_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
       ON CONFLICT (message_id, recipient) DO UPDATE SET
         status = CASE WHEN excluded.rank >= deliveries.rank THEN excluded.status ELSE deliveries.status END,
         status_at = CASE WHEN excluded.rank >= deliveries.rank THEN excluded.status_at ELSE deliveries.status_at END,
         rank = max(deliveries.rank, excluded.rank),
         delivered = max(deliveries.delivered, excluded.delivered),
         bounced = max(deliveries.bounced, excluded.bounced),
         complained = max(deliveries.complained, excluded.complained),
         tenant_id = coalesce(deliveries.tenant_id, excluded.tenant_id),
         batch_id = coalesce(deliveries.batch_id, excluded.batch_id),
         row_no = coalesce(deliveries.row_no, excluded.row_no),
         events = deliveries.events + 1,
         updated_at = excluded.updated_at`,
    ).run(d.messageId, d.recipient, d.tenantId, d.channel, d.provider, d.batchId, d.rowNo, d.status, d.rank, d.statusAt, d.delivered ? 1 : 0, d.bounced ? 1 : 0, d.complained ? 1 : 0, d.at, d.at);
  }

  /** A batch's tenant and channel, or undefined when there is no such batch. */
  batch(batchId: string): { tenantId: string; channel: string } | undefined {
    return prepared(this.db, 'SELECT tenant_id AS tenantId, channel FROM batches WHERE id = ?').get(batchId) as { tenantId: string; channel: string } | undefined;
  }

  /** Whether a tenant exists. */
  tenantExists(tenantId: string): boolean {
    return prepared(this.db, 'SELECT 1 FROM tenants WHERE id = ?').get(tenantId) !== undefined;
  }

  /** The sent message with this provider id and recipient (case-insensitive), if switchboard recorded one. */
  sentMessage(messageId: string, recipient: string): { tenantId: string; batchId: string | null; rowNo: number | null } | undefined {
    return prepared(
      this.db,
      `SELECT tenant_id AS tenantId, batch_id AS batchId, row_no AS rowNo FROM messages
       WHERE message_id = ? AND status = 'sent' AND lower(recipient) = ? ORDER BY id DESC LIMIT 1`,
    ).get(messageId, recipient.toLowerCase()) as { tenantId: string; batchId: string | null; rowNo: number | null } | undefined;
  }

  /** A ledger row that an event might settle. `now` decides whether the batch's lease is still live. */
  settleCandidate(batchId: string, rowNo: number, now: string): SettleCandidate | undefined {
    const r = prepared(
      this.db,
      `SELECT i.state, i.recipient, i.attempts, (b.lease_owner IS NOT NULL AND b.lease_expires_at > ?) AS leaseLive
       FROM batch_items i JOIN batches b ON b.id = i.batch_id WHERE i.batch_id = ? AND i.row_no = ?`,
    ).get(now, batchId, rowNo) as { state: string; recipient: string; attempts: number; leaseLive: number } | undefined;
    return r && { state: r.state, recipient: r.recipient, attempts: r.attempts, leaseLive: r.leaseLive === 1 };
  }

  /**
   * Marks a ledger row `sent` with the message id an event proved, records the send in `messages` (so the report
   * and `message show` see it), and drops the batch's kept counts so they are read from its rows again.
   * @returns false when the row was no longer in `from` (someone else changed it).
   */
  settleRow(s: { batchId: string; rowNo: number; from: string; tenantId: string; channel: string; provider: string; providerKind: string; recipient: string; messageId: string | null; attempt: number; at: string }): boolean {
    const changed = prepared(
      this.db,
      `UPDATE batch_items SET state = 'sent', provider = ?, message_id = ?, error = NULL, updated_at = ? WHERE batch_id = ? AND row_no = ? AND state = ?`,
    ).run(s.provider, s.messageId, s.at, s.batchId, s.rowNo, s.from).changes;
    if (changed === 0) return false;
    prepared(
      this.db,
      `INSERT INTO messages (created_at, tenant_id, channel, provider, provider_kind, recipient, status, message_id, fallback, attempt, batch_id, row_no)
       VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, 0, ?, ?, ?)`,
    ).run(s.at, s.tenantId, s.channel, s.provider, s.providerKind, s.recipient, s.messageId, s.attempt, s.batchId, s.rowNo);
    prepared(this.db, 'UPDATE batches SET stats = NULL WHERE id = ?').run(s.batchId);
    return true;
  }

  /**
   * Adds an automatic suppression. A permanent one (`expiresAt` null) replaces a temporary one; a temporary one
   * extends another temporary one; an active permanent suppression is kept as it is (a manual reason is never
   * overwritten). An expired suppression counts as none.
   */
  suppress(s: { tenantId: string; channel: string; address: string; reason: string; source: string; at: string; expiresAt: string | null }): SuppressOutcome {
    const current = prepared(this.db, 'SELECT expires_at AS expiresAt FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ?').get(s.tenantId, s.channel, s.address) as
      | { expiresAt: string | null }
      | undefined;
    const active = current !== undefined && (current.expiresAt === null || current.expiresAt > s.at);
    if (active && current.expiresAt === null) return 'kept';
    if (active && s.expiresAt !== null && current.expiresAt !== null && current.expiresAt >= s.expiresAt) return 'kept';
    prepared(
      this.db,
      `INSERT INTO suppressions (tenant_id, channel, address, reason, source, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source,
         created_at = excluded.created_at, expires_at = excluded.expires_at`,
    ).run(s.tenantId, s.channel, s.address, s.reason, s.source, s.at, s.expiresAt);
    return current === undefined ? 'added' : 'updated';
  }

  /** Removes the recipient's opt-out suppression (reason starting `opt-out`). @returns whether one was removed. */
  liftOptOut(tenantId: string, channel: string, address: string): boolean {
    return prepared(this.db, "DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ? AND reason LIKE 'opt-out%'").run(tenantId, channel, address).changes > 0;
  }

  /** A delivery succeeded: forgets the address's soft bounces and lifts a suppression that has an expiry. @returns whether one was lifted. */
  clearSoftBounces(tenantId: string, channel: string, address: string): boolean {
    prepared(this.db, 'DELETE FROM soft_bounces WHERE tenant_id = ? AND channel = ? AND address = ?').run(tenantId, channel, address);
    return prepared(this.db, 'DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address = ? AND expires_at IS NOT NULL').run(tenantId, channel, address).changes > 0;
  }

  /** Records a soft bounce and forgets older ones. @returns how many the address has at or after `windowStart`. */
  countSoftBounce(s: { tenantId: string; channel: string; address: string; eventId: number; at: string; windowStart: string }): number {
    prepared(this.db, 'INSERT OR IGNORE INTO soft_bounces (tenant_id, channel, address, event_id, at) VALUES (?, ?, ?, ?, ?)').run(s.tenantId, s.channel, s.address, s.eventId, s.at);
    prepared(this.db, 'DELETE FROM soft_bounces WHERE tenant_id = ? AND channel = ? AND address = ? AND at < ?').run(s.tenantId, s.channel, s.address, s.windowStart);
    return (prepared(this.db, 'SELECT count(*) AS n FROM soft_bounces WHERE tenant_id = ? AND channel = ? AND address = ?').get(s.tenantId, s.channel, s.address) as { n: number }).n;
  }

  /** Events matching the filter, newest first. */
  list(f: EventFilter): EventRow[] {
    const { where, args } = whereAll([
      ['tenant_id = ?', f.tenantId],
      ['batch_id = ?', f.batchId],
      ['type = ?', f.type],
      ['received_at >= ?', f.since],
      ['provider = ?', f.provider],
    ]);
    return this.db.prepare(`SELECT ${EVENT_COLUMNS} FROM events ${where} ORDER BY id DESC LIMIT ?`).all(...args, f.limit) as EventRow[];
  }

  /** A message's events (by provider message id and recipient, and by its batch row), oldest first. */
  eventsOf(m: { messageId: string | null; recipient: string; batchId: string | null; rowNo: number | null }): EventRow[] {
    return prepared(
      this.db,
      `SELECT ${EVENT_COLUMNS} FROM events WHERE (message_id = ? AND recipient = ?) OR (batch_id = ? AND row_no = ?)
       ORDER BY coalesce(occurred_at, received_at), id`,
    ).all(m.messageId, m.recipient.toLowerCase(), m.batchId, m.rowNo) as EventRow[];
  }

  /** Events of a provider message id (all recipients), oldest first. */
  eventsByMessageId(messageId: string): EventRow[] {
    return prepared(this.db, `SELECT ${EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY coalesce(occurred_at, received_at), id`).all(messageId) as EventRow[];
  }

  /** A message's delivery status, if any event came for it. */
  delivery(messageId: string, recipient: string): DeliveryRow | undefined {
    return prepared(this.db, `SELECT ${DELIVERY_COLUMNS} FROM deliveries WHERE message_id = ? AND recipient = ?`).get(messageId, recipient.toLowerCase()) as DeliveryRow | undefined;
  }

  /** A batch's messages by delivery status. */
  deliveryCounts(batchId: string): Record<string, number> {
    const rows = prepared(this.db, 'SELECT status, count(*) AS n FROM deliveries WHERE batch_id = ? GROUP BY status').all(batchId) as Array<{ status: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /** Delivery counts since `since` grouped by `tenant_id`, `provider` or `channel`, optionally for one tenant. */
  deliveryReport(since: string, column: 'tenant_id' | 'provider' | 'channel', tenantId?: string): DeliveryGroup[] {
    return this.db
      .prepare(
        `SELECT ifnull(${column}, '') AS key, count(*) AS tracked, sum(delivered) AS delivered, sum(bounced) AS bounced, sum(complained) AS complained
         FROM deliveries WHERE first_at >= ? AND (? IS NULL OR tenant_id = ?) GROUP BY 1 ORDER BY 1`,
      )
      .all(since, tenantId ?? null, tenantId ?? null) as DeliveryGroup[];
  }

  /** A value of the store's `meta` table (e.g. `public_url`). */
  setting(key: string): string | undefined {
    return (prepared(this.db, 'SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  /** Sets (or with `value` undefined, removes) a value of the store's `meta` table. */
  setSetting(key: string, value: string | undefined): void {
    if (value === undefined) prepared(this.db, 'DELETE FROM meta WHERE key = ?').run(key);
    else prepared(this.db, 'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** Sent messages (attempts that a provider accepted) with this provider message id, newest first. */
  messagesByProviderId(messageId: string): MessageRow[] {
    return prepared(this.db, `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE message_id = ? AND status = 'sent' ORDER BY id DESC`).all(messageId) as MessageRow[];
  }

  /** One send attempt by its own id. */
  messageById(id: number): MessageRow | undefined {
    return prepared(this.db, `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`).get(id) as MessageRow | undefined;
  }

  /** Every attempt of the same message: its batch row's attempts, or (outside a batch) just this one. */
  attemptsOf(m: MessageRow): MessageRow[] {
    if (m.batchId === null || m.rowNo === null) return [m];
    return prepared(this.db, `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE batch_id = ? AND row_no = ? ORDER BY id`).all(m.batchId, m.rowNo) as MessageRow[];
  }
}

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

const MESSAGE_COLUMNS = `id, created_at AS createdAt, tenant_id AS tenantId, channel, provider, provider_kind AS providerKind, recipient, status,
  message_id AS messageId, error_kind AS errorKind, error, error_code AS errorCode, fallback, attempt, batch_id AS batchId, row_no AS rowNo`;
