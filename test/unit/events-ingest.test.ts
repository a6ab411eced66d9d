// Unit: applying provider events to a real store file, with a clock the test moves — delivery status by rank,
// duplicates applied once, the soft-bounce policy (N within a window suppress until an expiry; a delivery lifts
// it), opt-in lifting an opt-out, a tenant config never touching another tenant's rows, and the settlement of an
// `unknown` ledger row; one-click tokens.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { sqliteCore, type SqliteTestCore } from '../helpers/core.js';
import type { Clock } from '../../src/core/context.js';
import { addTenant } from '../../src/core/tenants.js';
import { ingestEvents, messageTimeline, deliveryCounts, type EventSource } from '../../src/core/events.js';
import { suppressionReasons, listSuppressions } from '../../src/core/suppressions.js';
import { unsubscribeKey, unsubscribeToken, verifyUnsubscribeToken } from '../../src/core/unsubscribe.js';
import { listAudit } from '../../src/core/audit.js';
import type { ProviderEvent } from '../../src/providers/webhooks/types.js';

let dir: string;
let ctx: SqliteTestCore;
let now = new Date('2026-12-01T12:00:00.000Z');
const clock: Clock = { now: () => now, sleep: async () => {}, random: () => 0.5 };
const DAY = 86_400_000;

const source = (tenantId: string | null, extra: Partial<EventSource> = {}): EventSource => ({ ref: `${tenantId ?? 'system'}/email/sg`, kind: 'sendgrid', tenantId, channel: 'email', settings: {}, ...extra });
let n = 0;
const ev = (type: ProviderEvent['type'], recipient: string, extra: Partial<ProviderEvent> = {}): ProviderEvent => ({
  key: `test:${++n}`, type, providerType: type, occurredAt: now, recipient, messageId: 'MSG1', correlation: {}, detail: null, payload: {}, ...extra,
});

/** A batch with one ledger row in `state` (a fixture written as the ledger writes it). */
function ledgerRow(id: string, tenantId: string, recipient: string, state: string): void {
  ctx.db.prepare(
    `INSERT INTO batches (id, tenant_id, channel, idempotency_key, input_path, input_hash, template_path, template_hash, template, status, total, created_at, stats)
     VALUES (?, ?, 'email', ?, 'x.csv', 'h', 't', 'h', '{}', 'done', 1, ?, '{"rows":1}')`,
  ).run(id, tenantId, `k-${id}`, now.toISOString());
  ctx.db.prepare("INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, attempts, updated_at) VALUES (?, 1, 2, ?, '{}', ?, 1, ?)").run(id, recipient, state, now.toISOString());
}

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-ingest-'));
  const storePath = path.join(dir, 'sb.db');
  now = new Date('2026-12-01T12:00:00.000Z');
  ctx = { ...sqliteCore(storePath), storePath, clock, env: {}, actor: 'test@host' };
  await addTenant(ctx, 'acme', 'Acme');
  await addTenant(ctx, 'beta', 'Beta');
});
afterEach(() => {
  ctx.db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('ingestEvents', () => {
  test('status moves up by rank only; the same event twice is applied once', async () => {
    const delivered = ev('delivered', 'a@example.com');
    expect(await ingestEvents(ctx, source('acme'), [delivered, ev('accepted', 'a@example.com')])).toMatchObject({ stored: 2, duplicates: 0 });
    expect(await ingestEvents(ctx, source('acme'), [delivered, ev('deferred', 'a@example.com')])).toMatchObject({ stored: 1, duplicates: 1 });
    const d = ctx.db.prepare('SELECT status, events, delivered FROM deliveries').get() as { status: string; events: number; delivered: number };
    expect(d).toEqual({ status: 'delivered', events: 3, delivered: 1 });
    await ingestEvents(ctx, source('acme'), [ev('opened', 'a@example.com')]);
    expect((ctx.db.prepare('SELECT status FROM deliveries').get() as { status: string }).status).toBe('opened');
  });

  test('soft bounces: 3 within 7 days suppress for 30 days; a delivery lifts it; older bounces fall out of the window', async () => {
    const soft = () => ev('bounced', 'soft@example.com', { action: { kind: 'soft-bounce', reason: 'blocked' } });
    await ingestEvents(ctx, source('acme'), [soft()]);
    now = new Date(now.getTime() + 8 * DAY); // the first falls out of the window
    await ingestEvents(ctx, source('acme'), [soft(), soft()]);
    expect(await suppressionReasons(ctx, 'acme', 'email', ['soft@example.com'])).toEqual([null]);
    await ingestEvents(ctx, source('acme'), [soft()]);
    const [s] = await listSuppressions(ctx, 'acme', 'email');
    expect(s).toMatchObject({ address: 'soft@example.com', source: 'acme/email/sg', expiresAt: new Date(now.getTime() + 30 * DAY).toISOString() });
    expect(s!.reason).toMatch(/^soft bounces: 3 within 7 days/);
    // Expired: no longer applies.
    now = new Date(now.getTime() + 31 * DAY);
    expect(await suppressionReasons(ctx, 'acme', 'email', ['soft@example.com'])).toEqual([null]);
    // Settings change the policy; a delivery lifts a temporary suppression.
    await ingestEvents(ctx, source('acme', { settings: { softBounceLimit: 1, softBounceSuppressDays: 2 } }), [soft()]);
    expect((await suppressionReasons(ctx, 'acme', 'email', ['soft@example.com']))[0]).toMatch(/soft bounces: 1/);
    expect((await ingestEvents(ctx, source('acme'), [ev('delivered', 'soft@example.com')])).lifted).toBe(1);
    expect(await suppressionReasons(ctx, 'acme', 'email', ['soft@example.com'])).toEqual([null]);
  });

  test('a hard bounce is permanent and never overwrites a manual suppression; opt-in lifts only an opt-out', async () => {
    await ingestEvents(ctx, source('acme'), [ev('bounced', 'h@example.com', { action: { kind: 'suppress', reason: 'hard bounce: 5.1.1' } })]);
    ctx.db.prepare("INSERT INTO suppressions (tenant_id, channel, address, reason, source, created_at) VALUES ('acme', 'email', 'm@example.com', 'asked by phone', 'manual', ?)").run(now.toISOString());
    expect((await ingestEvents(ctx, source('acme'), [ev('complained', 'm@example.com', { action: { kind: 'suppress', reason: 'complaint' } })])).suppressed).toBe(0);
    await ingestEvents(ctx, source('acme'), [ev('opted-out', 'o@example.com', { action: { kind: 'suppress', reason: 'opt-out: replied STOP' } })]);
    await ingestEvents(ctx, source('acme'), [ev('opted-in', 'o@example.com', { action: { kind: 'opt-in', reason: 'START' } }), ev('opted-in', 'h@example.com', { action: { kind: 'opt-in', reason: 'START' } })]);
    expect((await listSuppressions(ctx, 'acme')).map((s) => [s.address, s.reason, s.expiresAt])).toEqual([
      ['h@example.com', 'hard bounce: 5.1.1', null],
      ['m@example.com', 'asked by phone', null],
    ]);
    expect((await listAudit(ctx)).filter((a) => a.action.startsWith('suppression.')).map((a) => a.action)).toEqual(['suppression.add', 'suppression.add', 'suppression.remove']);
  });

  test("an event settles an `unknown` row as sent (audited); a tenant config cannot touch another tenant's batch", async () => {
    ledgerRow('b-20261201-0000000a', 'acme', 'u@example.com', 'unknown');
    ledgerRow('b-20261201-0000000b', 'beta', 'v@example.com', 'unknown');
    const corr = (batchId: string) => ({ correlation: { batchId, rowNo: 1 } });
    // acme's config names beta's batch: stored for acme, beta's row untouched.
    expect((await ingestEvents(ctx, source('acme'), [ev('delivered', 'v@example.com', corr('b-20261201-0000000b'))])).settled).toBe(0);
    expect((await ingestEvents(ctx, source('acme'), [ev('delivered', 'u@example.com', { ...corr('b-20261201-0000000a'), messageId: 'SG-XYZ' })])).settled).toBe(1);
    const rows = ctx.db.prepare('SELECT batch_id, state, message_id, provider FROM batch_items ORDER BY batch_id').all();
    expect(rows).toEqual([
      { batch_id: 'b-20261201-0000000a', state: 'sent', message_id: 'SG-XYZ', provider: 'acme/email/sg' },
      { batch_id: 'b-20261201-0000000b', state: 'unknown', message_id: null, provider: null },
    ]);
    expect((await listAudit(ctx)).some((a) => a.action === 'batch.row.settle' && a.target === 'b-20261201-0000000a/1')).toBe(true);
    // The kept counts were dropped (read from the rows again); the message is in the log, with its timeline.
    expect((ctx.db.prepare("SELECT stats FROM batches WHERE id = 'b-20261201-0000000a'").get() as { stats: string | null }).stats).toBeNull();
    const t = await messageTimeline(ctx, 'SG-XYZ');
    expect(t).toMatchObject({ recipient: 'u@example.com', batchId: 'b-20261201-0000000a', row: 1, status: 'delivered' });
    expect(t.events.map((e) => e.type)).toEqual(['delivered']);
    expect(await deliveryCounts(ctx, 'b-20261201-0000000a')).toMatchObject({ delivered: 1, bounced: 0 });
  });

  test('a system config takes the tenant from the correlation; with none, nothing is suppressed', async () => {
    await ingestEvents(ctx, source(null), [ev('bounced', 'x@example.com', { correlation: { tenantId: 'beta' }, action: { kind: 'suppress', reason: 'hard bounce' } })]);
    await ingestEvents(ctx, source(null), [ev('bounced', 'y@example.com', { action: { kind: 'suppress', reason: 'hard bounce' } })]);
    expect((await listSuppressions(ctx, 'beta')).map((s) => s.address)).toEqual(['x@example.com']);
    expect(await listSuppressions(ctx, 'acme')).toEqual([]);
  });
});

describe('one-click unsubscribe tokens', () => {
  test('verify for their row only; any changed character fails', async () => {
    ledgerRow('b-20261201-0000000c', 'acme', 'Pat@Example.com', 'sent');
    const key = unsubscribeKey(Buffer.alloc(32, 7));
    const token = unsubscribeToken(key, { tenantId: 'acme', channel: 'email', recipient: 'pat@example.com', batchId: 'b-20261201-0000000c', rowNo: 1 });
    expect(await verifyUnsubscribeToken(ctx, key, token)).toMatchObject({ tenantId: 'acme', recipient: 'Pat@Example.com', rowNo: 1 });
    for (let i = 0; i < token.length; i++) {
      const c = token[i] === 'A' ? 'B' : 'A';
      expect(await verifyUnsubscribeToken(ctx, key, token.slice(0, i) + c + token.slice(i + 1)), `position ${i}`).toBeNull();
    }
    expect(await verifyUnsubscribeToken(ctx, unsubscribeKey(Buffer.alloc(32, 8)), token)).toBeNull();
  });
});
