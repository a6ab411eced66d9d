import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore, SCHEMA_VERSION, resolveStorePath } from '../../src/store/db.js';
import { sqliteCore, type SqliteTestCore } from '../helpers/core.js';
import { systemClock } from '../../src/core/context.js';
import { addTenant, getTenant, listTenants, removeTenant, updateTenant } from '../../src/core/tenants.js';
import { addProvider, configSecrets, getProvider, listProviders, maskSecret, parseRef, resolveRoute, updateProvider } from '../../src/core/providers.js';
import { requireKey } from '../../src/core/vault.js';
import { listAudit } from '../../src/core/audit.js';
import { encodeKey, generateKey } from '../../src/crypto/keys.js';
import { KeyError, NotFoundError, UsageError } from '../../src/errors.js';
import { PLANNED_KINDS } from '../../src/providers/registry.js';

let dir: string;
let ctx: SqliteTestCore;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-store-'));
  const storePath = path.join(dir, 'nested', 'sb.db');
  ctx = { ...sqliteCore(storePath), storePath, clock: systemClock, env: { SWITCHBOARD_MASTER_KEY: encodeKey(generateKey()) }, actor: 'test@host' };
});
afterEach(() => {
  ctx.db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('store', () => {
  it('is created 0600 in WAL mode with foreign keys and the current schema version', () => {
    expect(fs.statSync(ctx.storePath).mode & 0o777).toBe(0o600);
    expect(ctx.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(ctx.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(ctx.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    ctx.db.close();
    ctx.db = openStore(ctx.storePath); // reopening does not migrate again
    expect(ctx.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
  });

  it('refuses a store from a newer switchboard', () => {
    ctx.db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    ctx.db.close();
    expect(() => openStore(ctx.storePath)).toThrow(/newer than this switchboard/);
    ctx.db = openStore(path.join(dir, 'other.db'));
  });

  it('resolves the path: flag, then env, then XDG', () => {
    expect(resolveStorePath('/a/b.db', { SWITCHBOARD_STORE: '/c.db' })).toBe('/a/b.db');
    expect(resolveStorePath(undefined, { SWITCHBOARD_STORE: '/c.db' })).toBe('/c.db');
    expect(resolveStorePath(undefined, { XDG_DATA_HOME: '/x' })).toBe('/x/switchboard/switchboard.db');
    expect(resolveStorePath(undefined, { HOME: '/home/u' })).toBe('/home/u/.local/share/switchboard/switchboard.db');
  });
});

describe('tenants', () => {
  it('validates slugs and rejects duplicates', async () => {
    await addTenant(ctx, 'acme-dental', 'Acme Dental');
    await expect(addTenant(ctx, 'acme-dental', 'Again')).rejects.toThrow(/already exists/);
    for (const bad of ['Acme', 'acme dental', '-acme', 'acme-', 'a', '1acme', 'acme--x', 'system']) {
      await expect(addTenant(ctx, bad, 'x'), bad).rejects.toThrow(UsageError);
    }
    expect((await listTenants(ctx)).map((t) => t.id)).toEqual(['acme-dental']);
  });

  it('updates fallback per channel and removes with providers', async () => {
    await addTenant(ctx, 'acme', 'Acme');
    expect((await getTenant(ctx, 'acme')).fallback).toEqual({ email: true, sms: true, whatsapp: true });
    await updateTenant(ctx, 'acme', { fallback: { email: false } });
    expect((await getTenant(ctx, 'acme')).fallback.email).toBe(false);
    await addProvider(ctx, { tenantId: 'acme', channel: 'email', kind: 'outbox', settings: { dir: dir }, secrets: {} });
    expect((await removeTenant(ctx, 'acme')).providers).toBe(1);
    expect(await listProviders(ctx)).toHaveLength(0);
    await expect(getTenant(ctx, 'acme')).rejects.toThrow(NotFoundError);
  });
});

describe('provider configs', () => {
  beforeEach(async () => {
    await addTenant(ctx, 'acme', 'Acme');
  });

  const smtp = (over: Partial<Parameters<typeof addProvider>[1]> = {}) =>
    addProvider(ctx, {
      tenantId: 'acme',
      channel: 'email',
      kind: 'smtp',
      settings: { host: 'mail.example.com', from: 'a@example.com', port: '2525' },
      secrets: { password: 'correct-horse-battery-staple' },
      ...over,
    });

  it('parses and validates settings, seals secrets, masks them', async () => {
    const p = await smtp();
    expect(p.ref).toBe('acme/email/smtp');
    expect(p.settings).toMatchObject({ host: 'mail.example.com', port: 2525, tls: 'starttls' });
    expect(p.secrets).toEqual({ password: '****aple' });
    const raw = ctx.db.prepare('SELECT sealed_secrets FROM provider_configs WHERE id = ?').get(p.id) as { sealed_secrets: Buffer };
    expect(raw.sealed_secrets.includes(Buffer.from('correct-horse'))).toBe(false);
    expect(await configSecrets(ctx, await requireKey(ctx), p)).toEqual({ password: 'correct-horse-battery-staple' });
  });

  it('rejects bad input naming the field', async () => {
    await expect(smtp({ settings: { host: 'h', from: 'a@example.com', port: 'abc' } })).rejects.toThrow(/--set port/);
    await expect(smtp({ settings: { host: 'h', from: 'not-an-address' } })).rejects.toThrow(/--set from/);
    await expect(smtp({ settings: { host: 'h', from: 'a@example.com', password: 'x' } })).rejects.toThrow(/secret.*never accepted on the command line/);
    await expect(smtp({ settings: { host: 'h', from: 'a@example.com', colour: 'red' } })).rejects.toThrow(/no setting "colour"/);
    await expect(smtp({ settings: { from: 'a@example.com' } })).rejects.toThrow(/--set host=… is required/);
    for (const planned of PLANNED_KINDS) await expect(smtp({ kind: planned })).rejects.toThrow(/not built yet/);
    await expect(smtp({ kind: 'pigeon' })).rejects.toThrow(/not a provider kind/);
    await expect(smtp({ channel: 'sms' })).rejects.toThrow(/does not serve channel sms/);
    await smtp();
    await expect(smtp()).rejects.toThrow(/already exists/);
  });

  it('replaces one secret without retyping the others and audits names only', async () => {
    const p = await smtp();
    await updateProvider(ctx, p.ref, { secrets: { password: 'another-long-password-1234' }, settings: { port: '587' } });
    expect(await configSecrets(ctx, await requireKey(ctx), await getProvider(ctx, p.ref))).toEqual({ password: 'another-long-password-1234' });
    const entries = await listAudit(ctx);
    expect(entries.map((e) => e.action)).toEqual(['tenant.add', 'key.bind', 'provider.add', 'provider.update']);
    expect(entries[3]!.fields).toEqual(['port', 'secret.password']);
    expect(JSON.stringify(entries)).not.toContain('another-long-password');
  });

  it('fails with KeyError on a wrong key and nothing is written', async () => {
    await smtp();
    const before = ctx.db.prepare('SELECT count(*) AS n FROM audit_log').get();
    const wrong = { ...ctx, env: { SWITCHBOARD_MASTER_KEY: encodeKey(generateKey()) } };
    await expect(addProvider(wrong, { tenantId: 'acme', channel: 'email', kind: 'outbox', settings: { dir }, secrets: {} })).rejects.toThrow(KeyError);
    expect(ctx.db.prepare('SELECT count(*) AS n FROM audit_log').get()).toEqual(before);
    await expect(requireKey({ ...ctx, env: {} })).rejects.toThrow(/no master key/);
  });

  it('resolves routes: tenant by priority, then system unless fallback is off', async () => {
    await smtp({ name: 'backup', priority: 200 });
    await smtp({ name: 'primary', priority: 10 });
    await addProvider(ctx, { tenantId: null, channel: 'email', kind: 'outbox', settings: { dir }, secrets: {} });
    expect((await resolveRoute(ctx, 'acme', 'email')).entries.map((e) => e.config.ref)).toEqual([
      'acme/email/primary',
      'acme/email/backup',
      'system/email/outbox',
    ]);
    await updateTenant(ctx, 'acme', { fallback: { email: false } });
    expect((await resolveRoute(ctx, 'acme', 'email')).entries.map((e) => e.config.ref)).toEqual(['acme/email/primary', 'acme/email/backup']);
    await updateProvider(ctx, 'acme/email/primary', { enabled: false });
    await updateProvider(ctx, 'acme/email/backup', { enabled: false });
    // No own enabled provider: the system default serves even with fallback off.
    expect((await resolveRoute(ctx, 'acme', 'email')).entries.map((e) => e.config.ref)).toEqual(['system/email/outbox']);
  });

  it('parses refs and masks secrets', () => {
    expect(parseRef('system/email/outbox')).toEqual({ tenantId: null, channel: 'email', name: 'outbox' });
    expect(() => parseRef('acme/fax/x')).toThrow(UsageError);
    expect(() => parseRef('acme/email')).toThrow(UsageError);
    expect(maskSecret('SG.abcdefghijklmnopqrstuvwxyz')).toBe('SG.****wxyz');
    expect(maskSecret('short')).toBe('****');
  });
});

describe('suppressions', () => {
  it('normalise addresses, are found by the batch lookup, audited, and removable', async () => {
    const { addSuppression, suppressionReasons, listSuppressions, removeSuppression } = await import('../../src/core/suppressions.js');
    await addTenant(ctx, 'acme', 'Acme');
    expect(await addSuppression(ctx, { tenantId: 'acme', channel: 'email', address: 'Ada@Example.com', reason: 'bounced', source: 'manual' })).toBe(true);
    expect(await addSuppression(ctx, { tenantId: 'acme', channel: 'sms', address: '+1 (415) 555-2671', reason: 'STOP', source: 'acme/sms/twilio' })).toBe(true);
    expect(await addSuppression(ctx, { tenantId: 'acme', channel: 'sms', address: '+14155552671', reason: 'STOP again', source: 'manual' })).toBe(false);
    expect(await suppressionReasons(ctx, 'acme', 'email', ['bo@example.com', 'ada@example.com', 'Ada@Example.com'])).toEqual([null, 'bounced', 'bounced']);
    expect(await suppressionReasons(ctx, 'acme', 'sms', ['+14155552671'])).toEqual(['STOP again']);
    expect(await suppressionReasons(ctx, 'acme', 'whatsapp', ['+14155552671'])).toEqual([null]);
    expect((await listSuppressions(ctx, 'acme')).map((s) => s.address)).toEqual(['ada@example.com', '+14155552671']);
    await expect(addSuppression(ctx, { tenantId: 'acme', channel: 'sms', address: '12', reason: 'x', source: 'manual' })).rejects.toThrow(UsageError);
    expect(await removeSuppression(ctx, 'acme', 'email', 'ADA@example.com')).toBe(true);
    expect(await removeSuppression(ctx, 'acme', 'email', 'ada@example.com')).toBe(false);
    expect((await listAudit(ctx, { tenantId: 'acme' })).map((e) => e.action)).toEqual(['tenant.add', 'suppression.add', 'suppression.add', 'suppression.update', 'suppression.remove']);
  });
});
