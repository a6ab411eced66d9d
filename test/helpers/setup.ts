// Shared steps for e2e tests: tenants, providers and reading what the outbox provider wrote.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe as describeResult, makeWorkspace, parseJsonLines, type CliResult, type Workspace } from './cli.js';
import { parseMail, type ParsedMail, type TestSmtpServer } from './smtp.js';

/** Throw with the full output unless the run exited with `code`. */
export function expectExit(r: CliResult, code: number, what: string): CliResult {
  if (r.exitCode !== code) throw new Error(`${what}: expected exit ${code}\n${describeResult(r)}`);
  return r;
}

export async function addTenant(ws: Workspace, id: string, name = `Tenant ${id}`): Promise<void> {
  expectExit(await ws.run(['tenant', 'add', id, '--name', name]), 0, `tenant add ${id}`);
}

export interface SmtpProviderOptions {
  tenant: string;
  user: string;
  password: string;
  from?: string;
  name?: string;
  priority?: number;
}

/** Add an smtp provider (STARTTLS, AUTH, the server's self-signed cert as `ca`); the password travels via --secret-env. */
export async function addSmtpProvider(ws: Workspace, srv: TestSmtpServer, o: SmtpProviderOptions): Promise<string> {
  const caFile = ws.file(`ca-${srv.port}.pem`, srv.cert);
  const args = [
    'provider', 'add', '--tenant', o.tenant, '--channel', 'email', '--kind', 'smtp',
    '--set', `host=${srv.host}`,
    '--set', `port=${srv.port}`,
    '--set', 'tls=starttls',
    '--set', `user=${o.user}`,
    '--set', `from=${o.from ?? `noreply@${o.tenant}.test`}`,
    '--set', `ca=${caFile}`,
    '--secret-env', 'password=SMTP_PASS',
  ];
  if (o.name !== undefined) args.push('--name', o.name);
  if (o.priority !== undefined) args.push('--priority', String(o.priority));
  expectExit(await ws.run(args, { env: { SMTP_PASS: o.password } }), 0, `provider add smtp for ${o.tenant}`);
  return `${o.tenant}/email/${o.name ?? 'smtp'}`;
}

/** Add the system default email provider: an outbox writing .eml files into `dir`. */
export async function addSystemOutbox(ws: Workspace, dir: string, from = 'system@switchboard.test'): Promise<string> {
  expectExit(
    await ws.run(['provider', 'add', '--system', '--channel', 'email', '--kind', 'outbox', '--set', `dir=${dir}`, '--set', `from=${from}`]),
    0,
    'provider add system outbox',
  );
  return 'system/email/outbox';
}

export interface OutboxMessage extends ParsedMail {
  file: string;
}

/** The .eml files in an outbox folder, parsed. A missing folder reads as empty. */
export async function readOutbox(dir: string): Promise<OutboxMessage[]> {
  if (!fs.existsSync(dir)) return [];
  const files = fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.eml'))
    .sort();
  const out: OutboxMessage[] = [];
  for (const f of files) {
    const file = path.join(dir, f);
    out.push({ file, ...(await parseMail(fs.readFileSync(file))) });
  }
  return out;
}

/** All bytes of the store: the main file plus any -wal / -shm / -journal companions. */
export function storeFiles(store: string): Array<{ file: string; bytes: Buffer }> {
  const dir = path.dirname(store);
  const base = path.basename(store);
  return fs
    .readdirSync(dir)
    .filter((f) => f === base || f.startsWith(`${base}-`))
    .sort()
    .map((f) => ({ file: path.join(dir, f), bytes: fs.readFileSync(path.join(dir, f)) }));
}

/** Normalise a Message-ID for comparison: no angle brackets, no surrounding space. */
export function normId(id: unknown): string {
  return String(id ?? '').trim().replace(/^<|>$/g, '');
}

/** Row counts by state and per provider, as the summary and `batch show` give them (README: JSON output). */
export interface BatchCountsJson {
  status: string;
  rowCount: number;
  pendingCount: number;
  sentCount: number;
  failedCount: number;
  skippedCount: number;
  unknownCount: number;
  fallbackCount: number;
  byProvider: Array<{ provider: string; sentCount: number }>;
}

/** The `send batch --json` summary line. */
export interface BatchSummary extends BatchCountsJson {
  batchId: string;
  elapsedMs: number;
  alreadyFinished: boolean;
  resumed: boolean;
  status: string;
  pausedReason: string | null;
  pausedAt: string | null;
  duplicateRecipientCount: number;
}

/** `byProvider` as a map of provider ref → sent count, for comparisons. */
export function sentBy(b: { byProvider: Array<{ provider: string; sentCount: number }> }): Record<string, number> {
  return Object.fromEntries(b.byProvider.map((p) => [p.provider, p.sentCount]));
}

export interface BatchItem {
  row: number;
  line: number;
  recipient: string;
  state: string;
  provider: string | null;
  messageId: string | null;
  fallback: boolean;
  error: string | null;
}

/** `batch show --json`. */
export interface BatchDetail extends BatchCountsJson {
  id: string;
  tenantId: string;
  channel: string;
  status: string;
  pausedReason: string | null;
  pausedAt: string | null;
  idempotencyKey: string;
  keyExpiresAt: string | null;
  items: BatchItem[] | null;
}

/**
 * A logical dump of every table in the store (opened read-only), for "nothing was written" checks
 * that do not depend on how SQLite lays out pages or when it checkpoints the WAL.
 */
export function dumpStore(store: string): string {
  const db = new Database(store, { readonly: true, fileMustExist: true });
  try {
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .all() as Array<{ name: string }>;
    const out: Record<string, string[]> = { user_version: [String(db.pragma('user_version', { simple: true }))] };
    for (const { name } of tables) {
      const rows = db.prepare(`SELECT * FROM "${name.replace(/"/g, '""')}"`).all() as Array<Record<string, unknown>>;
      out[name] = rows
        .map((r) => JSON.stringify(r, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v)))
        .sort();
    }
    return JSON.stringify(out);
  } finally {
    db.close();
  }
}

/** A `send batch --json` row event (JSON Lines, one per row, before the summary). */
export interface BatchRowEvent extends BatchItem {
  type: 'row';
  line: number;
}

/**
 * `send batch --json` streams JSON Lines: one `{"type":"row"}` event per row, then one `{"type":"summary"}`
 * as the last line. Returns both, checking that shape.
 */
export function parseBatchOutput(r: CliResult): { summary: BatchSummary; rows: BatchRowEvent[] } {
  const docs = parseJsonLines<{ type?: string }>(r);
  const last = docs[docs.length - 1];
  if (!last || last.type !== 'summary') {
    throw new Error(`send batch --json: last line is not the summary\n${describeResult(r)}`);
  }
  const rows = docs.slice(0, -1) as BatchRowEvent[];
  if (rows.some((d) => d.type !== 'row')) throw new Error(`send batch --json: unexpected line type\n${describeResult(r)}`);
  return { summary: last as unknown as BatchSummary, rows };
}

/** A workspace with tenant(s) and the system outbox at `<dir>/outbox`, for bulk-send tests. */
export async function outboxWorkspace(tenants: string[] = ['acme']): Promise<{ ws: Workspace; out: string }> {
  const ws = makeWorkspace();
  const out = path.join(ws.dir, 'outbox');
  for (const t of tenants) await addTenant(ws, t);
  await addSystemOutbox(ws, out);
  return { ws, out };
}

/** `send test --json`: the dispatch result with every attempt (README: JSON output). */
export interface SendTestJson {
  recipient: string;
  status: string;
  provider: string | null;
  messageId: string | null;
  fallback: boolean;
  attempts: Array<{ provider: string; attempt: number; status: string; messageId: string | null; error: string | null; errorKind: string | null }>;
  error: string | null;
  errorKind: string | null;
  errorCode: string | null;
}

/** `provider list --json` rows (the fields health checks need); `id` is the ref. */
export interface ProviderListRow {
  id: string;
  health: string;
  healthDetail: string | null;
}

/** `send batch --json` of a plain-text message to each of `phones` (a `phone,name` CSV) for tenant `acme`. */
export function sendPhoneBatch(ws: Workspace, channel: 'sms' | 'whatsapp', phones: string[], extra: string[] = []): Promise<CliResult> {
  const csv = ws.file(`rows-${randomBytes(4).toString('hex')}.csv`, `phone,name\n${phones.map((p, i) => `${p},P${i}`).join('\n')}\n`);
  const tpl = ws.file('phone-batch.txt', 'Hi {{name}}, see you tomorrow.\n');
  return ws.run(['send', 'batch', '--tenant', 'acme', '--channel', channel, '--csv', csv, '--template-file', tpl, '--json', ...extra]);
}

/** A tenant's suppressions as stored (read-only), ordered by address. */
export function readSuppressions(store: string, tenantId: string): Array<{ channel: string; address: string; source: string }> {
  const db = new Database(store, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT channel, address, source FROM suppressions WHERE tenant_id = ? ORDER BY address').all(tenantId) as Array<{ channel: string; address: string; source: string }>;
  } finally {
    db.close();
  }
}

/** The most arrivals (epoch ms) in any half-open one-second window [t, t + 1000): what a rate limit must bound. */
export function maxPerSecond(times: number[]): number {
  const t = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; j < t.length; j++) {
    while (t[j]! - t[i]! >= 1000) i++;
    max = Math.max(max, j - i + 1);
  }
  return max;
}
