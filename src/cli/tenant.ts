/**
 * `switchboard tenant add|list|show|update|remove`.
 */
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, channelFlag, collect, examples, required } from './command.js';
import { askConfirm, askInput, confirmOrYes } from './prompt.js';
import { addTenant, getTenant, listTenants, removeTenant, updateTenant, type Tenant } from '../core/tenants.js';
import { listProviders } from '../core/providers.js';
import { providerJson, tenantJson } from './json.js';
import { UsageError } from '../errors.js';
import { CHANNELS, type Channel } from '../core/context.js';

function fallbackText(t: Tenant): string {
  let text = '';
  for (const c of CHANNELS) text += `${text ? ', ' : ''}${c} ${t.fallback[c] ? 'on' : 'off'}`;
  return text;
}

/** Parses `--fallback email=off` items. */
function parseFallback(items: string[] | undefined): Partial<Record<Channel, boolean>> {
  const out: Partial<Record<Channel, boolean>> = {};
  for (const item of items ?? []) {
    const [c, v] = item.split('=');
    const channel = channelFlag(c, '--fallback');
    if (v !== 'on' && v !== 'off') throw new UsageError(`--fallback ${item}: expected <channel>=on|off (e.g. email=off)`);
    out[channel] = v === 'on';
  }
  return out;
}

/** Registers the `tenant` commands. */
export function registerTenant(program: Command, io: Io): void {
  const tenant = program.command('tenant').description('add, list, show, update and remove tenants');
  examples(tenant, ['switchboard tenant add acme-dental --name "Acme Dental"', 'switchboard tenant list', 'switchboard tenant remove acme-dental --yes']);

  examples(
    tenant
      .command('add <id>')
      .description('add a tenant (id: a slug such as acme-dental); on a terminal, asks for the name and offers to add a provider')
      .option('--name <name>', 'display name')
      .action(
        action<{ name?: string }>(io, async (cli, [id], opts) => {
          let name = opts.name;
          if (name === undefined && cli.interactive) name = await askInput('Tenant name', { required: true });
          const t = await addTenant(await cli.core({ create: true }), id!, required(name, '--name', 'the tenant display name'));
          cli.out.result(tenantJson(t, 0), () => `Added tenant ${t.id} (${t.name})`);
          if (cli.interactive && (await askConfirm(`Add a provider for ${t.id} now?`, true))) await (await import('./provider.js')).providerAddFlow(cli, { tenant: t.id });
        }),
      ),
    ['switchboard tenant add acme-dental --name "Acme Dental"'],
  );

  examples(
    tenant
      .command('list')
      .description('list tenants')
      .action(
        action(io, async (cli) => {
          const ctx = await cli.core();
          const tenants = await listTenants(ctx);
          const counts = new Map<string, number>();
          for (const p of await listProviders(ctx)) if (p.tenantId) counts.set(p.tenantId, (counts.get(p.tenantId) ?? 0) + 1);
          cli.out.result(
            tenants.map((t) => tenantJson(t, counts.get(t.id) ?? 0)),
            () =>
              cli.out.list(
                ['ID', 'NAME', 'PROVIDERS', 'FALLBACK', 'CREATED'],
                tenants.map((t) => [t.id, t.name, counts.get(t.id) ?? 0, fallbackText(t), cli.out.time(t.createdAt)]),
                'No tenants yet. Add one with: switchboard tenant add <id> --name <name>',
              ),
          );
        }),
      ),
    ['switchboard tenant list', 'switchboard tenant list --json | jq -r ".[].id"'],
  );

  examples(
    tenant
      .command('show <id>')
      .description("show a tenant with its providers")
      .action(
        action(io, async (cli, [id]) => {
          const ctx = await cli.core();
          const t = await getTenant(ctx, id!);
          const providers = await listProviders(ctx, { tenantId: t.id });
          cli.out.result({ ...tenantJson(t, providers.length), providers: providers.map(providerJson) }, () =>
            [
              cli.out.fields([
                ['id', t.id],
                ['name', t.name],
                ['fallback', fallbackText(t)],
                ['created', cli.out.time(t.createdAt)],
                ['updated', cli.out.time(t.updatedAt)],
              ]),
              '',
              cli.out.list(
                ['PROVIDER', 'KIND', 'PRIORITY', 'ENABLED', 'HEALTH'],
                providers.map((p) => [p.ref, p.kind, p.priority, p.enabled ? 'yes' : 'no', p.health]),
                'No providers of its own: it sends through the system defaults.',
              ),
            ].join('\n'),
          );
        }),
      ),
    ['switchboard tenant show acme-dental'],
  );

  examples(
    tenant
      .command('update <id>')
      .description('rename a tenant or switch fallback to the system defaults per channel')
      .option('--name <name>', 'new display name')
      .option('--fallback <channel=on|off>', 'whether system defaults follow the tenant\'s own providers (repeatable)', collect)
      .action(
        action<{ name?: string; fallback?: string[] }>(io, async (cli, [id], opts) => {
          const ctx = await cli.core();
          const t = await updateTenant(ctx, id!, { name: opts.name, fallback: parseFallback(opts.fallback) });
          const providers = await listProviders(ctx, { tenantId: t.id });
          cli.out.result(tenantJson(t, providers.length), () => `Updated tenant ${t.id} (${t.name}; fallback: ${fallbackText(t)})`);
        }),
      ),
    ['switchboard tenant update acme-dental --name "Acme Dental Group"', 'switchboard tenant update acme-dental --fallback email=off'],
  );

  examples(
    tenant
      .command('remove <id>')
      .description('remove a tenant with its providers and their secrets')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(
        action<{ yes?: boolean }>(io, async (cli, [id], opts) => {
          const ctx = await cli.core();
          const t = await getTenant(ctx, id!);
          await confirmOrYes(cli, opts.yes, `Remove tenant ${t.id} with its providers, secrets and history?`);
          const r = await removeTenant(ctx, t.id);
          // Its rows were zeroed in place (secure_delete); empty the write-ahead log of their old copies too.
          await ctx.store.checkpoint();
          cli.out.result({ id: t.id, removed: true, providerCount: r.providers }, () => `Removed tenant ${t.id} and ${r.providers} provider config(s)`);
        }),
      ),
    ['switchboard tenant remove acme-dental --yes'],
  );
}
