/**
 * Tenants: the organisations an operator sends for. Ids are slugs (`acme-dental`).
 */
import type { CoreContext, Channel } from './context.js';
import { recordAudit } from './audit.js';
import type { Sql } from '../store/sql.js';
import {
  deleteTenantCascade,
  insertTenant,
  selectTenantRow,
  selectTenantRows,
  selectTenantSwitches,
  touchTenant,
  updateTenantName,
  upsertTenantSwitch,
  type TenantRow,
  type TenantSwitchRow,
} from '../store/repos/tenants.js';
import { countTenantProviderConfigs } from '../store/repos/providers.js';
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
  return { email: true, sms: true, whatsapp: true } satisfies Record<Channel, boolean>;
}

/** Tenants from their rows and switches (two queries, whatever the number of tenants). */
function toTenants(rows: TenantRow[], switches: TenantSwitchRow[]): Tenant[] {
  const byTenant = new Map<string, Record<Channel, boolean>>();
  for (const s of switches) {
    const f = byTenant.get(s.tenant_id) ?? defaultFallback();
    f[s.channel as Channel] = Number(s.fallback) === 1;
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

/**
 * Adds a tenant.
 * @throws UsageError if the id is malformed or already taken, or the name is empty.
 */
export async function addTenant(ctx: CoreContext, id: string, name: string): Promise<Tenant> {
  checkTenantId(id);
  if (!name.trim()) throw new UsageError('--name must not be empty');
  const now = ctx.clock.now().toISOString();
  await ctx.sql.tx(async (t) => {
    // The insert itself refuses a taken id: on PostgreSQL another process may add it after a check.
    if (!(await insertTenant(t, id, name.trim(), now))) throw new UsageError(`tenant "${id}" already exists`);
    await recordAudit(ctx, t, 'tenant.add', id, id, ['id', 'name']);
  });
  return getTenant(ctx, id);
}

/** All tenants, by id (one query for the tenants, one for their switches). */
export async function listTenants(ctx: CoreContext): Promise<Tenant[]> {
  return toTenants(await selectTenantRows(ctx.sql), await selectTenantSwitches(ctx.sql));
}

/**
 * The tenant `id`. Pass `sql` (a transaction's handle) to read inside that transaction.
 * @throws NotFoundError if there is no tenant `id`.
 */
export async function getTenant(ctx: CoreContext, id: string, sql: Sql = ctx.sql): Promise<Tenant> {
  const row = await selectTenantRow(sql, id);
  if (!row) throw new NotFoundError(`no tenant "${id}" in store ${ctx.storePath} (see \`switchboard tenant list\`)`);
  return toTenants([row], await selectTenantSwitches(sql, id))[0]!;
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
export async function updateTenant(ctx: CoreContext, id: string, change: TenantUpdate): Promise<Tenant> {
  const fields: string[] = [];
  if (change.name !== undefined) {
    if (!change.name.trim()) throw new UsageError('--name must not be empty');
    fields.push('name');
  }
  for (const c of Object.keys(change.fallback ?? {})) fields.push(`fallback.${c}`);
  if (fields.length === 0) throw new UsageError('nothing to update: give --name or --fallback <channel>=on|off');
  const now = ctx.clock.now().toISOString();
  await ctx.sql.tx(async (t) => {
    await getTenant(ctx, id, t);
    if (change.name !== undefined) await updateTenantName(t, id, change.name.trim(), now);
    for (const [channel, on] of Object.entries(change.fallback ?? {})) await upsertTenantSwitch(t, id, channel, on);
    await touchTenant(t, id, now);
    await recordAudit(ctx, t, 'tenant.update', id, id, fields);
  });
  return getTenant(ctx, id);
}

/**
 * Removes a tenant with its provider configs (and their sealed secrets), templates, domains and suppressions.
 * Batches and the message log of the tenant are removed too.
 * @returns how many provider configs were removed with it.
 * @throws NotFoundError if the tenant does not exist.
 */
export async function removeTenant(ctx: CoreContext, id: string): Promise<{ providers: number }> {
  return ctx.sql.tx(async (t) => {
    await getTenant(ctx, id, t);
    const providers = await countTenantProviderConfigs(t, id);
    await deleteTenantCascade(t, id);
    await recordAudit(ctx, t, 'tenant.remove', id, id, []);
    return { providers };
  });
}
