/**
 * Delivery status (DESIGN §6b): storing and applying provider events, and reading them back.
 *
 * {@link ingestEvents} commits a request's events in one transaction (the HTTP answer comes after it), once per
 * provider identity (a repeated event is counted as a duplicate and changes nothing), and for each new event:
 * - finds its tenant, batch and row: the config's own tenant, the correlation fields the send carried
 *   (`sb_tenant`, `sb_batch`, `sb_row`), or the sent message with that provider id and recipient;
 * - moves the message's delivery status (accepted → delivered | deferred | bounced | dropped | undelivered |
 *   failed, then opened/clicked/read, complained, unsubscribed; a status never moves back in rank);
 * - settles a ledger row left `unknown` by a crash (or `sending` by a dead run): any event proves the provider
 *   took the message, so the row becomes `sent` with the event's message id (audited `batch.row.settle`);
 * - applies the event's suppression action for the tenant (hard bounce, complaint, unsubscribe, opt-out;
 *   soft bounces counted, N within a window suppress until an expiry; opt-in lifts an opt-out).
 */
import type { CoreContext, Channel } from './context.js';
import { recordAudit } from './audit.js';
import * as repo from '../store/repos/events.js';
import type { EventRow, MessageRow } from '../store/repos/events.js';
import { NotFoundError, UsageError } from '../errors.js';
import type { EventType, ProviderEvent } from '../providers/webhooks/types.js';
import type { SettingValue } from '../providers/types.js';
import type { Sql } from '../store/sql.js';

import { DELIVERY_STATUSES, UNSUBSCRIBE_LINK, type DeliveryStatus } from './delivery-status.js';

export { DELIVERY_STATUSES, UNSUBSCRIBE_LINK, type DeliveryStatus };

/**
 * Rank of each status: a message's status moves to an event's only when the event's rank is at least the
 * current one (events arrive out of order: a late `deferred` never hides `delivered`).
 */
const RANK: Record<DeliveryStatus, number> = {
  accepted: 0, deferred: 1, delivered: 2, bounced: 2, dropped: 2, undelivered: 2, failed: 2, read: 3, opened: 3, clicked: 4, complained: 5, unsubscribed: 5,
};
const DELIVERED: ReadonlySet<string> = new Set(['delivered', 'opened', 'clicked', 'read']);
const BOUNCED: ReadonlySet<string> = new Set(['bounced', 'dropped', 'undelivered', 'failed']);


/** Soft-bounce policy defaults (settings `softBounceLimit`, `softBounceWindowDays`, `softBounceSuppressDays`). */
export const SOFT_BOUNCE_DEFAULTS = { limit: 3, windowDays: 7, suppressDays: 30 } as const;

/** The config an event came through. `ref`/`kind` name it in the store; its tenant (null for a system config) bounds what it may touch. */
export interface EventSource {
  ref: string;
  kind: string;
  tenantId: string | null;
  channel: Channel;
  settings: Readonly<Record<string, SettingValue>>;
  /** Whether its events may settle `unknown` rows (false for one-click unsubscribes, which carry no message id). */
  settles?: boolean;
}

/** What {@link ingestEvents} did. */
export interface IngestResult {
  /** New events stored. */
  stored: number;
  /** Events stored before (same provider identity): applied once, skipped now. */
  duplicates: number;
  /** Suppressions added or made permanent. */
  suppressed: number;
  /** Suppressions lifted (opt-in, or a delivery after soft bounces). */
  lifted: number;
  /** Ledger rows settled from `unknown` to `sent`. */
  settled: number;
}

function numberSetting(v: SettingValue | undefined, fallback: number): number {
  return typeof v === 'number' && v > 0 ? v : fallback;
}

const DAY_MS = 86_400_000;

/**
 * Stores and applies events of one request (or one import chunk) in one transaction (see the module docs); it
 * has committed when the promise resolves.
 * @throws the store's error (e.g. busy): nothing is stored, the caller answers 5xx so the provider retries.
 */
export async function ingestEvents(ctx: CoreContext, source: EventSource, events: readonly ProviderEvent[]): Promise<IngestResult> {
  const result: IngestResult = { stored: 0, duplicates: 0, suppressed: 0, lifted: 0, settled: 0 };
  if (events.length === 0) return result;
  const nowDate = ctx.clock.now();
  const now = nowDate.toISOString();
  const batches = new Map<string, { tenantId: string; channel: string } | undefined>();
  const tenants = new Map<string, boolean>();
  const batchOf = async (t: Sql, id: string) => {
    if (!batches.has(id)) batches.set(id, await repo.selectEventBatch(t, id));
    return batches.get(id);
  };
  const tenantExists = async (t: Sql, id: string) => {
    if (!tenants.has(id)) tenants.set(id, await repo.selectEventTenantExists(t, id));
    return tenants.get(id)!;
  };
  const limit = numberSetting(source.settings.softBounceLimit, SOFT_BOUNCE_DEFAULTS.limit);
  const windowMs = numberSetting(source.settings.softBounceWindowDays, SOFT_BOUNCE_DEFAULTS.windowDays) * DAY_MS;
  const suppressMs = numberSetting(source.settings.softBounceSuppressDays, SOFT_BOUNCE_DEFAULTS.suppressDays) * DAY_MS;

  const write = async (t: Sql) => {
    await repo.lockEventSource(t, source.ref);
    // Counted per attempt: PostgreSQL runs the whole transaction again after a deadlock (see PgSql.tx).
    Object.assign(result, { stored: 0, duplicates: 0, suppressed: 0, lifted: 0, settled: 0 });
    for (const e of events) {
      // Where it belongs. A tenant config's events stay within its tenant; correlation naming another tenant's
      // batch, or a batch of another channel, is ignored.
      let tenantId = source.tenantId;
      let batchId: string | null = null;
      let rowNo: number | null = null;
      const c = e.correlation;
      if (c.batchId !== undefined && c.rowNo !== undefined) {
        const b = await batchOf(t, c.batchId);
        if (b && b.channel === source.channel && (tenantId === null || b.tenantId === tenantId)) {
          tenantId = b.tenantId;
          batchId = c.batchId;
          rowNo = c.rowNo;
        }
      }
      if (tenantId === null && c.tenantId !== undefined && (await tenantExists(t, c.tenantId))) tenantId = c.tenantId;
      if (batchId === null && e.messageId && e.recipient && e.type !== 'inbound' && e.type !== 'opted-in' && e.type !== 'opted-out') {
        const m = await repo.selectSentMessage(t, e.messageId, e.recipient);
        if (m && (tenantId === null || m.tenantId === tenantId)) {
          tenantId = m.tenantId;
          batchId = m.batchId;
          rowNo = m.rowNo;
        }
      }

      const eventId = await repo.insertEvent(t, {
        key: e.key,
        receivedAt: now,
        occurredAt: e.occurredAt?.toISOString() ?? null,
        tenantId,
        channel: source.channel,
        provider: source.ref,
        providerKind: source.kind,
        type: e.type,
        providerType: e.providerType,
        recipient: e.recipient,
        messageId: e.messageId,
        batchId,
        rowNo,
        detail: e.detail,
        payload: JSON.stringify(e.payload ?? null),
      });
      if (eventId === undefined) {
        result.duplicates++;
        continue;
      }
      result.stored++;

      const status = (RANK as Record<string, number>)[e.type] !== undefined ? (e.type as DeliveryStatus) : undefined;
      if (status && e.messageId && e.recipient) {
        await repo.upsertDelivery(t, {
          messageId: e.messageId,
          recipient: e.recipient,
          tenantId,
          channel: source.channel,
          provider: source.ref,
          batchId,
          rowNo,
          status,
          rank: RANK[status],
          statusAt: e.occurredAt?.toISOString() ?? now,
          delivered: DELIVERED.has(status),
          bounced: BOUNCED.has(status),
          complained: status === 'complained',
          at: now,
        });
      }

      // A crash-made `unknown` row (or a `sending` row whose run is gone) is proven sent by any event for it.
      if (status && batchId !== null && rowNo !== null && tenantId !== null && source.settles !== false) {
        const row = await repo.selectSettleCandidate(t, batchId, rowNo, now);
        const sameRecipient = row && (e.recipient === null || row.recipient.toLowerCase() === e.recipient.toLowerCase());
        if (row && sameRecipient && (row.state === 'unknown' || (row.state === 'sending' && !row.leaseLive))) {
          const settled = await repo.settleEventRow(t, {
            batchId, rowNo, from: row.state, tenantId, channel: source.channel, provider: source.ref, providerKind: source.kind,
            recipient: row.recipient, messageId: e.messageId, attempt: Math.max(1, row.attempts), at: now,
          });
          if (settled) {
            result.settled++;
            await recordAudit(ctx, t, 'batch.row.settle', `${batchId}/${rowNo}`, tenantId, ['state', 'message_id', 'provider']);
          }
        }
      }

      if (tenantId === null || !e.recipient) continue;
      const address = e.recipient;
      const target = `${tenantId}/${source.channel}/${address}`;
      if (DELIVERED.has(e.type) && (await repo.clearSoftBounces(t, tenantId, source.channel, address))) {
        result.lifted++;
        await recordAudit(ctx, t, 'suppression.remove', target, tenantId, ['expires_at']);
      }
      const a = e.action;
      if (!a) continue;
      if (a.kind === 'opt-in') {
        if (await repo.deleteOptOutSuppression(t, tenantId, source.channel, address)) {
          result.lifted++;
          await recordAudit(ctx, t, 'suppression.remove', target, tenantId, ['reason']);
        }
        continue;
      }
      let expiresAt: string | null = null;
      let reason = a.reason;
      if (a.kind === 'soft-bounce') {
        const at = (e.occurredAt ?? nowDate).toISOString();
        const n = await repo.countSoftBounce(t, { tenantId, channel: source.channel, address, eventId, at, windowStart: new Date(nowDate.getTime() - windowMs).toISOString() });
        if (n < limit) continue;
        expiresAt = new Date(nowDate.getTime() + suppressMs).toISOString();
        reason = `soft bounces: ${n} within ${windowMs / DAY_MS} days (last: ${a.reason})`;
      }
      const outcome = await repo.suppressFromEvent(t, { tenantId, channel: source.channel, address, reason, source: source.ref, at: now, expiresAt });
      if (outcome !== 'kept') {
        result.suppressed++;
        await recordAudit(ctx, t, outcome === 'added' ? 'suppression.add' : 'suppression.update', target, tenantId, ['reason', 'source', 'expires_at']);
      }
    }
  };
  await ctx.sql.tx(write);
  return result;
}

/** One event as `events list` and `message show` present it (`--json` vocabulary: `…Id` refs, `…At` times). */
export interface EventEntry {
  id: number;
  receivedAt: string;
  occurredAt: string | null;
  tenantId: string | null;
  channel: string;
  provider: string;
  type: string;
  providerType: string;
  recipient: string | null;
  messageId: string | null;
  batchId: string | null;
  row: number | null;
  detail: string | null;
  /** The provider's own event object. */
  payload: unknown;
}

function toEntry(r: EventRow): EventEntry {
  return {
    id: r.id,
    receivedAt: r.receivedAt,
    occurredAt: r.occurredAt,
    tenantId: r.tenantId,
    channel: r.channel,
    provider: r.provider,
    type: r.type,
    providerType: r.providerType,
    recipient: r.recipient,
    messageId: r.messageId,
    batchId: r.batchId,
    row: r.rowNo,
    detail: r.detail,
    payload: JSON.parse(r.payload) as unknown,
  };
}

/** Filters of `events list`; all optional. `limit` defaults to 100 (the newest). */
export interface EventListFilter {
  tenantId?: string;
  batchId?: string;
  type?: EventType;
  provider?: string;
  since?: Date;
  limit?: number;
}

/** Stored events matching the filter, newest first. */
export async function listEvents(ctx: CoreContext, f: EventListFilter = {}): Promise<EventEntry[]> {
  const rows = await repo.selectEvents(ctx.sql, { tenantId: f.tenantId, batchId: f.batchId, type: f.type, provider: f.provider, since: f.since?.toISOString(), limit: f.limit ?? 100 });
  return rows.map(toEntry);
}

/** A batch's messages by delivery status: every {@link DELIVERY_STATUSES} key, 0 where none. */
export async function deliveryCounts(ctx: CoreContext, batchId: string): Promise<Record<DeliveryStatus, number>> {
  const got = await repo.selectDeliveryCounts(ctx.sql, batchId);
  return Object.fromEntries(DELIVERY_STATUSES.map((s) => [s, got[s] ?? 0])) as Record<DeliveryStatus, number>;
}

/** One attempt of a message, for its timeline: its entry in the message log (`log list`). */
export interface AttemptEntry {
  /** The attempt's id in the message log. */
  id: number;
  createdAt: string;
  provider: string;
  status: 'sent' | 'failed';
  messageId: string | null;
  attempt: number;
  fallback: boolean;
  /** The provider's error (one line), its kind (`auth`, `rate`, `transient`, ...) and code; null when sent. */
  error: string | null;
  errorKind: string | null;
  errorCode: string | null;
}

/** A message and what happened to it: `message show`. */
export interface MessageTimeline {
  /** The accepted attempt's own id in the message log (`log list`), or null for a message switchboard has events of but no record. */
  id: number | null;
  tenantId: string | null;
  channel: string;
  provider: string;
  recipient: string;
  messageId: string | null;
  batchId: string | null;
  row: number | null;
  sentAt: string | null;
  /** The delivery status: the furthest event's, `accepted` when no event came yet, or `failed` for a message never accepted. */
  status: string;
  statusAt: string | null;
  attempts: AttemptEntry[];
  events: EventEntry[];
}

const attemptEntry = (m: MessageRow): AttemptEntry => ({
  id: m.id,
  createdAt: m.createdAt,
  provider: m.provider,
  status: m.status,
  messageId: m.messageId,
  attempt: m.attempt,
  fallback: m.fallback === 1,
  error: m.error,
  errorKind: m.errorKind,
  errorCode: m.errorCode,
});

/**
 * The timeline of one message, named by its id in the message log (a number) or by its provider message id
 * (with `recipient` when one provider id covers several recipients: a SendGrid request of many rows).
 * @throws NotFoundError when nothing matches; UsageError when a provider id covers several recipients and no
 *   `recipient` is given (the message lists them).
 */
export async function messageTimeline(ctx: CoreContext, idOrMessageId: string, recipient?: string): Promise<MessageTimeline> {
  const sql = ctx.sql;
  let m: MessageRow | undefined;
  if (/^\d+$/.test(idOrMessageId)) m = await repo.selectMessageById(sql, Number(idOrMessageId));
  if (!m) {
    const all = (await repo.selectMessagesByProviderId(sql, idOrMessageId)).filter((x) => recipient === undefined || x.recipient.toLowerCase() === recipient.toLowerCase());
    if (all.length > 1) {
      const shown = all.slice(0, 10).map((x) => x.recipient);
      throw new UsageError(`${all.length} messages have provider message id ${idOrMessageId} (one request to several recipients); add --to <recipient>`, [
        ...shown,
        ...(all.length > 10 ? [`… and ${all.length - 10} more`] : []),
      ]);
    }
    m = all[0];
  }
  if (m) {
    const to = m.recipient.toLowerCase();
    const d = m.messageId ? await repo.selectDelivery(sql, m.messageId, to) : undefined;
    return {
      id: m.id,
      tenantId: m.tenantId,
      channel: m.channel,
      provider: m.provider,
      recipient: m.recipient,
      messageId: m.messageId,
      batchId: m.batchId,
      row: m.rowNo,
      sentAt: m.status === 'sent' ? m.createdAt : null,
      status: d?.status ?? (m.status === 'sent' ? 'accepted' : 'failed'),
      statusAt: d?.statusAt ?? null,
      attempts: (await repo.selectAttemptsOf(sql, m)).map(attemptEntry),
      events: (await repo.selectEventsOfMessage(sql, { messageId: m.messageId, recipient: m.recipient, batchId: m.batchId, rowNo: m.rowNo })).map(toEntry),
    };
  }
  // Events of a message switchboard has no record of (sent before, or by another tool through the same account).
  const events = (await repo.selectEventsByMessageId(sql, idOrMessageId)).filter((e) => recipient === undefined || e.recipient === recipient.toLowerCase());
  const first = events[0];
  if (!first) throw new NotFoundError(`no message ${idOrMessageId}${recipient ? ` to ${recipient}` : ''} (give its id from \`log list\`, or the provider's message id)`);
  const d = first.recipient ? await repo.selectDelivery(sql, idOrMessageId, first.recipient) : undefined;
  return {
    id: null,
    tenantId: first.tenantId,
    channel: first.channel,
    provider: first.provider,
    recipient: first.recipient ?? '',
    messageId: idOrMessageId,
    batchId: first.batchId,
    row: first.rowNo,
    sentAt: null,
    status: d?.status ?? first.type,
    statusAt: d?.statusAt ?? null,
    attempts: [],
    events: events.map(toEntry),
  };
}
