/**
 * The one JSON vocabulary of `--json` (README "JSON output"): the objects that appear in several commands,
 * each built in one place so every command prints them alike.
 *
 * Rules: `id` is the object's own id; references are `<thing>Id` (`tenantId`, `batchId`, `keyId`); a provider is
 * always `provider`, its ref string; timestamps are ISO 8601 UTC named `…At`; durations `…Ms`; a count is a number
 * named `…Count` and a plural name is always an array; lists are arrays, never maps keyed by an id; an absent value
 * is `null`, never a missing key; an error is `error` (one line) with `errorKind` and `errorCode` beside it.
 * `test/e2e/operator-ux.test.ts` checks every command against `test/schemas/<noun>-<verb>.schema.json`.
 */
import type { Tenant } from '../core/tenants.js';
import type { ProviderConfig } from '../core/providers.js';
import type { BatchCounts, BatchInfo, RowEvent } from '../core/batch/types.js';
import type { Domain } from '../core/domains.js';
import type { StoredTemplate } from '../core/template-store.js';
import type { Suppression } from '../core/suppressions.js';
import type { AttemptRecord } from '../core/dispatch.js';
import type { DnsRecord } from '../providers/domain-auth.js';
import type { AttemptEntry, EventEntry, MessageTimeline } from '../core/events.js';
import { DELIVERY_STATUSES, UNSUBSCRIBE_LINK, type DeliveryStatus } from '../core/delivery-status.js';

/** `undefined` → `null`: JSON never drops a key. */
export const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

/** A tenant: `{id, name, fallback: {email, sms, whatsapp}, providerCount, createdAt, updatedAt}`. */
export function tenantJson(t: Tenant, providerCount: number) {
  return { id: t.id, name: t.name, fallback: t.fallback, providerCount, createdAt: t.createdAt, updatedAt: t.updatedAt };
}

/**
 * A provider config; its `id` is its ref (`<tenant|system>/<channel>/<name>`), secrets masked; `missingSecrets`
 * names the secrets its kind needs that are not stored (e.g. dropped by `key reset`).
 */
export function providerJson(p: ProviderConfig) {
  return {
    id: p.ref,
    tenantId: p.tenantId,
    channel: p.channel,
    kind: p.kind,
    name: p.name,
    priority: p.priority,
    enabled: p.enabled,
    settings: p.settings,
    secrets: p.secrets,
    missingSecrets: [...p.missingSecrets],
    keyId: p.keyId,
    health: p.health,
    healthDetail: p.healthDetail,
    lastVerifiedAt: p.lastVerifiedAt,
    lastVerifyResult: p.lastVerifyResult,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  };
}

/** Per-provider counts as an array, in ref order: `[{provider, sentCount}]`. */
export function byProviderJson(byProvider: Readonly<Record<string, number>>) {
  return Object.entries(byProvider)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([provider, sentCount]) => ({ provider, sentCount }));
}

/** Row counts by state, named `…Count`. */
export function countsJson(c: BatchCounts) {
  return {
    rowCount: c.rows,
    pendingCount: c.pending,
    sendingCount: c.sending,
    sentCount: c.sent,
    failedCount: c.failed,
    skippedCount: c.skipped,
    unknownCount: c.unknown,
  };
}

/** A stored batch (`batch list`, `batch show`). */
export function batchJson(b: BatchInfo) {
  return {
    id: b.id,
    tenantId: b.tenantId,
    channel: b.channel,
    status: b.status,
    idempotencyKey: b.idempotencyKey,
    keyExpiresAt: b.keyExpiresAt,
    inputPath: b.inputPath,
    templatePath: b.templatePath,
    ...countsJson(b),
    fallbackCount: b.fallback,
    byProvider: byProviderJson(b.byProvider),
    leaseOwner: b.leaseOwner,
    leaseExpiresAt: b.leaseExpiresAt,
    createdAt: b.createdAt,
    startedAt: b.startedAt,
    finishedAt: b.finishedAt,
    pausedReason: b.pausedReason,
    pausedAt: b.pausedAt,
  };
}

/** One batch row: `{row, line, recipient, state, provider, messageId, fallback, error}`. */
export function batchRowJson(r: RowEvent) {
  return { row: r.row, line: r.line, recipient: r.recipient, state: r.state, provider: r.provider, messageId: r.messageId, fallback: r.fallback, error: r.error };
}

/** A DNS record to publish: `{purpose, type, host, value, priority}` (`priority` for MX only, else null). */
export function dnsRecordJson(r: DnsRecord) {
  return { purpose: r.purpose, type: r.type, host: r.host, value: r.value, priority: orNull(r.priority) };
}

/** A sender domain. */
export function domainJson(d: Domain) {
  return {
    id: d.id,
    tenantId: d.tenantId,
    domain: d.domain,
    provider: d.providerRef,
    providerKind: d.providerKind,
    externalId: d.externalId,
    status: d.status,
    detail: d.detail,
    records: d.records.map(dnsRecordJson),
    checkedAt: d.checkedAt,
    createdAt: d.createdAt,
  };
}

/** A stored template. */
export function templateJson(t: StoredTemplate) {
  return { tenantId: t.tenantId, name: t.name, subject: t.subject, html: t.html, text: t.text, required: t.required, optional: t.optional, createdAt: t.createdAt, updatedAt: t.updatedAt };
}

/** A suppression. */
export function suppressionJson(s: Suppression) {
  return { tenantId: s.tenantId, channel: s.channel, address: s.address, reason: s.reason, source: s.source, createdAt: s.createdAt, expiresAt: s.expiresAt };
}

/** One send attempt: `{attempt, provider, status, messageId, error, errorKind, errorCode}`. */
export function attemptJson(a: AttemptRecord) {
  return {
    attempt: a.attempt,
    provider: a.provider,
    status: a.status,
    messageId: orNull(a.messageId),
    error: orNull(a.error),
    errorKind: orNull(a.errorKind),
    errorCode: orNull(a.errorCode),
  };
}

/**
 * Messages of a batch per delivery status, every status in {@link DELIVERY_STATUSES} order (zeros too):
 * `[{status, messageCount}]`.
 */
export function deliveryCountsJson(counts: Readonly<Record<DeliveryStatus, number>>) {
  return DELIVERY_STATUSES.map((status) => ({ status, messageCount: counts[status] }));
}

/** The provider of an event: its config's ref, or `null` for a one-click unsubscribe (no provider sent it). */
const eventProvider = (p: string): string | null => (p === UNSUBSCRIBE_LINK ? null : p);

/**
 * A delivery event (`events list`, `message show`): `{id, receivedAt, occurredAt, tenantId, channel, provider,
 * type, providerType, recipient, messageId, batchId, row, detail, payload}`. `type` is switchboard's (`delivered`,
 * `bounced`, ...), `providerType` the provider's own word; `payload` is the provider's event object as received
 * (its own field names, outside this vocabulary).
 */
export function eventJson(e: EventEntry) {
  return {
    id: e.id,
    receivedAt: e.receivedAt,
    occurredAt: e.occurredAt,
    tenantId: e.tenantId,
    channel: e.channel,
    provider: eventProvider(e.provider),
    type: e.type,
    providerType: e.providerType,
    recipient: e.recipient,
    messageId: e.messageId,
    batchId: e.batchId,
    row: e.row,
    detail: e.detail,
    payload: e.payload,
  };
}

/**
 * One attempt in a message's timeline: a send attempt (as {@link attemptJson}) with its message-log `id`,
 * `createdAt` and `fallback`.
 */
export function messageAttemptJson(a: AttemptEntry) {
  return {
    id: a.id,
    createdAt: a.createdAt,
    attempt: a.attempt,
    provider: a.provider,
    status: a.status,
    messageId: a.messageId,
    error: a.error,
    errorKind: a.errorKind,
    errorCode: a.errorCode,
    fallback: a.fallback,
  };
}

/**
 * A message and its delivery timeline (`message show`): `{id, tenantId, channel, provider, recipient, messageId,
 * batchId, row, sentAt, status, statusAt, attempts: [attempt], events: [event]}`; `id` is the accepted attempt's
 * id in the message log (`null` for a message known only from events).
 */
export function messageJson(t: MessageTimeline) {
  return {
    id: t.id,
    tenantId: t.tenantId,
    channel: t.channel,
    provider: eventProvider(t.provider),
    recipient: t.recipient,
    messageId: t.messageId,
    batchId: t.batchId,
    row: t.row,
    sentAt: t.sentAt,
    status: t.status,
    statusAt: t.statusAt,
    attempts: t.attempts.map(messageAttemptJson),
    events: t.events.map(eventJson),
  };
}
