/**
 * Tenants: the organisations an operator sends for. Ids are slugs (`acme-dental`).
 */
import type { CoreContext, Channel } from './context.js';
import { CHANNELS } from './context.js';
import { audit } from './audit.js';
import { NotFoundError, UsageError } from '../errors.js';

/** A tenant id: lower-case letters, digits and single hyphens, 2–63 characters, starting with a letter. */
export const TENANT_ID_PATTERN = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

/** The word used in provider refs for system defaults; not a valid tenant id. */
export const SYSTEM = 'system';

/** A tenant row. `fallback[channel]` says whether the system defaults follow the tenant's own providers. */
export interface Tenant {
  id: string;
  name: string;
  fallback: Record<Channel, boolean>;
  createdAt: string;
  updatedAt: string;
}

interface TenantRow {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
}

/** @throws UsageError naming `field` if `id` is not a slug or is the reserved word `system`. */
export function checkTenantId(id: string, field = 'tenant id'): void {
  if (id.length < 2 || id.length > 63 || !TENANT_ID_PATTERN.test(id)) {
    throw new UsageError(
      `${field} "${id}" is not a valid slug: use 2-63 lower-case letters, digits and hyphens, starting with a letter (e.g. acme-dental)`,
    );
  }
  if (id === SYSTEM) throw new UsageError(`${field} "${SYSTEM}" is reserved for the system defaults`);
}

function defaultFallback(): Record<Channel, boolean> {
  return Object.fromEntries(CHANNELS.map((c) => [c, true])) as Record<Channel, boolean>;
}

function toTenant(ctx: CoreContext, row: TenantRow): Tenant {
  const fallback = defaultFallback();
  const rows = ctx.db.prepare('SELECT channel, fallback FROM tenant_channels WHERE tenant_id = ?').all(row.id) as Array<{
    channel: Channel;
    fallback: number;
  }>;
  for (const r of rows) fallback[r.channel] = r.fallback === 1;
  return { id: row.id, name: row.name, fallback, createdAt: row.created_at, updatedAt: row.updated_at };
}

/**
 * Adds a tenant.
 * @throws UsageError if the id is malformed or already taken, or the name is empty.
 */
export function addTenant(ctx: CoreContext, id: string, name: string): Tenant {
  checkTenantId(id);
  if (!name.trim()) throw new UsageError('--name must not be empty');
  const now = ctx.clock.now().toISOString();
  ctx.db.transaction(() => {
    if (ctx.db.prepare('SELECT 1 FROM tenants WHERE id = ?').get(id)) {
      throw new UsageError(`tenant "${id}" already exists`);
    }
    ctx.db.prepare('INSERT INTO tenants (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)').run(id, name.trim(), now, now);
    audit(ctx, 'tenant.add', id, id, ['id', 'name']);
  }).immediate();
  return getTenant(ctx, id);
}

/** All tenants, by id. */
export function listTenants(ctx: CoreContext): Tenant[] {
  const rows = ctx.db.prepare('SELECT id, name, created_at, updated_at FROM tenants ORDER BY id').all() as TenantRow[];
  const switches = ctx.db.prepare('SELECT tenant_id, channel, fallback FROM tenant_channels').all() as Array<{
    tenant_id: string;
    channel: Channel;
    fallback: number;
  }>;
  const byTenant = new Map<string, Record<Channel, boolean>>();
  for (const s of switches) {
    const f = byTenant.get(s.tenant_id) ?? defaultFallback();
    f[s.channel] = s.fallback === 1;
    byTenant.set(s.tenant_id, f);
  }
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    fallback: byTenant.get(r.id) ?? defaultFallback(),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }));
}

/** @throws NotFoundError if there is no tenant `id`. */
export function getTenant(ctx: CoreContext, id: string): Tenant {
  const row = ctx.db.prepare('SELECT id, name, created_at, updated_at FROM tenants WHERE id = ?').get(id) as TenantRow | undefined;
  if (!row) throw new NotFoundError(`no tenant "${id}" in store ${ctx.storePath} (see \`switchboard tenant list\`)`);
  return toTenant(ctx, row);
}

/** Changes to a tenant: a new name and/or fallback switches per channel. */
export interface TenantUpdate {
  name?: string;
  fallback?: Partial<Record<Channel, boolean>>;
}

/**
 * Updates a tenant.
 * @throws NotFoundError if the tenant does not exist; UsageError if nothing is to change.
 */
export function updateTenant(ctx: CoreContext, id: string, change: TenantUpdate): Tenant {
  const fields: string[] = [];
  if (change.name !== undefined) {
    if (!change.name.trim()) throw new UsageError('--name must not be empty');
    fields.push('name');
  }
  for (const c of Object.keys(change.fallback ?? {})) fields.push(`fallback.${c}`);
  if (fields.length === 0) throw new UsageError('nothing to update: give --name or --fallback <channel>=on|off');
  const now = ctx.clock.now().toISOString();
  ctx.db.transaction(() => {
    getTenant(ctx, id);
    if (change.name !== undefined) {
      ctx.db.prepare('UPDATE tenants SET name = ?, updated_at = ? WHERE id = ?').run(change.name.trim(), now, id);
    }
    for (const [channel, on] of Object.entries(change.fallback ?? {})) {
      ctx.db
        .prepare(
          `INSERT INTO tenant_channels (tenant_id, channel, fallback) VALUES (?, ?, ?)
           ON CONFLICT (tenant_id, channel) DO UPDATE SET fallback = excluded.fallback`,
        )
        .run(id, channel, on ? 1 : 0);
    }
    ctx.db.prepare('UPDATE tenants SET updated_at = ? WHERE id = ?').run(now, id);
    audit(ctx, 'tenant.update', id, id, fields);
  }).immediate();
  return getTenant(ctx, id);
}

/**
 * Removes a tenant with its provider configs (and their sealed secrets), templates, domains and suppressions.
 * Batches and the message log of the tenant are removed too.
 * @returns how many provider configs were removed with it.
 * @throws NotFoundError if the tenant does not exist.
 */
export function removeTenant(ctx: CoreContext, id: string): { providers: number } {
  let providers = 0;
  ctx.db.transaction(() => {
    getTenant(ctx, id);
    providers = (ctx.db.prepare('SELECT count(*) AS n FROM provider_configs WHERE tenant_id = ?').get(id) as { n: number }).n;
    ctx.db.prepare('DELETE FROM messages WHERE tenant_id = ?').run(id);
    ctx.db.prepare('DELETE FROM tenants WHERE id = ?').run(id);
    audit(ctx, 'tenant.remove', id, id, []);
  }).immediate();
  return { providers };
}
