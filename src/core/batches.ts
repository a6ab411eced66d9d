/**
 * Bulk sends (DESIGN §6). A batch is a ledger with one row per CSV row:
 * `pending → sending → sent | failed | skipped`, and `unknown` for a row left `sending` by a crash.
 * A row is marked `sending` in a committed transaction before its request leaves, so a crash never sends a
 * row twice by default (an `unknown` row is resent only with `retryUnknown`) and no row is lost from the
 * record. One process works a batch at a time (a lease in the store). The same input run again resumes or
 * reports; it never starts a duplicate batch unless asked (`newBatch`).
 */
import { createHash, randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import { normaliseRecipient } from './address.js';
import type { CoreContext, Channel } from './context.js';
import { Dispatcher, type DispatchResult, type RetryPolicy } from './dispatch.js';
import type { EmailMessage, OutboundMessage } from '../providers/types.js';
import { LockedError, NotFoundError, UsageError } from '../errors.js';
import { openCsv } from './csv.js';
import { compileTemplate, composeMessage, isHtmlTemplate, readTemplateFile, type CompiledTemplate, type Rendered, type TemplateSource, type WhatsAppTemplateRef } from './templates.js';
import { getTenant } from './tenants.js';
import { suppressionReasons } from './suppressions.js';
import { audit } from './audit.js';
import { GroupCommit } from '../store/group-commit.js';
import { prepared } from '../store/db.js';
import { addTask } from './limiter.js';
import { batchTracker } from './tracking.js';
import { BatchPreviewer, type BatchPreview, type PreviewOptions } from './batch/preview.js';

/** Row states of the ledger. */
export type ItemState = 'pending' | 'sending' | 'sent' | 'failed' | 'skipped' | 'unknown';

/** Batch states: `loading` (rows being stored), `ready`, `running`, `interrupted`, `done`, `cancelled`. */
export type BatchStatus = 'loading' | 'ready' | 'running' | 'interrupted' | 'done' | 'cancelled';

/** Rows written per transaction while loading a CSV into the ledger. */
const LOAD_CHUNK = 1000;
/** Lease length in ms; renewed every third of it while the batch is worked. */
export const LEASE_MS = 30_000;
/** How many validation errors are kept for the message (the count is always exact). */
const MAX_REPORTED_ERRORS = 50;
/** Most rows per batched provider request (SendGrid: 1000 personalizations per request). */
export const MAX_GROUP = 1000;

/** What `send batch` asks for. */
export interface BatchRequest {
  tenantId: string;
  channel: Channel;
  csvPath: string;
  /** Handlebars body file; optional for WhatsApp when `whatsappTemplate` is given. */
  templatePath?: string;
  /** A stored template (`template add`) instead of `templatePath` and `subject`. */
  stored?: { name: string; source: TemplateSource };
  /** Handlebars subject (e-mail only, required there). */
  subject?: string;
  /** An approved WhatsApp template instead of a body file. */
  whatsappTemplate?: WhatsAppTemplateRef;
  /** Region for phone numbers without a +country code (ISO 3166-1 alpha-2). */
  defaultRegion?: string;
  /** The CSV's encoding, a WHATWG label (`--encoding`; default UTF-8, decoded strictly). */
  encoding?: string;
  /** The template file's encoding, a WHATWG label (`--template-encoding`; default UTF-8). */
  templateEncoding?: string;
  dryRun?: boolean;
  /** Dry run only: the rows to show and the price per segment (./batch/preview.ts). */
  preview?: PreviewOptions;
  /** Messages in flight at once (default 4). */
  concurrency?: number;
  /** Most requests per second to each provider for this run (lowers a provider's own `rate`). */
  rate?: number;
  idempotencyKey?: string;
  /** Start a new batch even if the same input was sent before. */
  newBatch?: boolean;
  /** Resend rows whose outcome is unknown after a crash. */
  retryUnknown?: boolean;
  retry?: Partial<RetryPolicy>;
}

/** Run-time hooks for a batch run. */
export interface BatchRunHooks {
  /** Lease owner id of this process, e.g. `4242@host`. */
  owner: string;
  /** Whether a lease owner (as written by another process) is still alive; unknown → true. */
  ownerAlive(owner: string): boolean;
  /** Aborting stops taking new rows; rows in flight finish and are recorded. */
  signal?: AbortSignal;
  /**
   * Called after each row outcome is committed, with the run's live counts (not a copy: read them during the
   * call, or copy them to keep).
   */
  onRow?(event: RowEvent, progress: Readonly<BatchCounts>): void;
}

/** Counts of a batch's rows by state. `rows` is the total. */
export interface BatchCounts {
  rows: number;
  pending: number;
  sending: number;
  sent: number;
  failed: number;
  skipped: number;
  unknown: number;
}

/** One row outcome, as streamed with `--json`. */
export interface RowEvent {
  row: number;
  line: number;
  recipient: string;
  state: ItemState;
  provider: string | null;
  messageId: string | null;
  fallback: boolean;
  error: string | null;
}

/** The result of a batch run (or of a dry run). */
export interface BatchSummary extends BatchCounts {
  batchId: string | null;
  status: BatchStatus | 'dry-run';
  idempotencyKey: string | null;
  /** Sent rows per provider ref. */
  byProvider: Record<string, number>;
  /** Sent rows that a provider other than the first in the route took. */
  fallback: number;
  /** Wall time of this run in ms. */
  elapsedMs: number;
  /** True when this run found the batch already complete and sent nothing. */
  alreadyComplete: boolean;
  /** True when this run continued an earlier, unfinished run. */
  resumed: boolean;
  /** Dry run only: the rows shown, skipped rows by reason, segment totals (./batch/preview.ts). */
  preview?: BatchPreview;
}

/** A stored batch as listed by `batch list` / `batch show`. */
export interface BatchInfo extends BatchCounts {
  id: string;
  tenantId: string;
  channel: Channel;
  status: BatchStatus;
  idempotencyKey: string;
  inputPath: string;
  templatePath: string;
  leaseOwner: string | null;
  leaseExpiresAt: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  byProvider: Record<string, number>;
  fallback: number;
}

interface BatchRow {
  id: string;
  tenant_id: string;
  channel: Channel;
  idempotency_key: string;
  input_path: string;
  input_hash: string;
  template_path: string;
  template_hash: string;
  template: string;
  /** JSON array of the CSV's column names. */
  columns: string;
  status: BatchStatus;
  total: number;
  lease_owner: string | null;
  lease_expires_at: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** {@link BatchStats} as JSON, kept when a run ends or the batch is cancelled (see {@link batchStats}). */
  stats: string | null;
}

interface ItemRow {
  row_no: number;
  line_no: number;
  recipient: string;
  vars: string;
  state: ItemState;
}

/**
 * Checks the template flags for the channel and reads the body file.
 * @throws UsageError naming the flag that is missing or does not apply.
 */
function templateSource(req: BatchRequest): TemplateSource {
  const { channel, templatePath, subject, whatsappTemplate } = req;
  if (req.stored) {
    if (templatePath || subject !== undefined || whatsappTemplate) throw new UsageError('--template takes the subject and body from the stored template: leave out --template-file, --subject and --template-name');
    if (channel !== 'email' && req.stored.source.html) throw new UsageError(`--template ${req.stored.name} has an HTML body; ${channel} messages are plain text`);
    return channel === 'email' ? req.stored.source : { ...req.stored.source, subject: undefined };
  }
  if (channel !== 'email' && subject !== undefined) throw new UsageError(`--subject applies to e-mail only, not ${channel}`);
  if (channel !== 'whatsapp' && whatsappTemplate) throw new UsageError(`--template-name applies to whatsapp only, not ${channel}`);
  if (channel === 'email' && (subject === undefined || subject.trim() === '')) {
    throw new UsageError('--subject is required for e-mail (a Handlebars template, e.g. "Hello {{name}}")');
  }
  if (channel === 'whatsapp' && whatsappTemplate) {
    if (templatePath) throw new UsageError('give either --template-file (free-form text) or --template-name (an approved template), not both');
    return { html: false, whatsappTemplate };
  }
  if (!templatePath) throw new UsageError(`--template-file is required${channel === 'whatsapp' ? ' (or --template-name with --template-lang)' : ''}`);
  const html = isHtmlTemplate(templatePath);
  if (html && channel !== 'email') throw new UsageError(`--template-file ${templatePath}: ${channel} messages are plain text; use a .txt template`);
  return { subject, body: readTemplateFile(templatePath, { encoding: req.templateEncoding }), html };
}

/** The column holding the recipient for a channel. */
export function recipientColumn(channel: Channel): string {
  return channel === 'email' ? 'email' : 'phone';
}

interface Validation {
  rows: number;
  hash: string;
  recipientKey: string;
  errors: string[];
  errorCount: number;
  sample?: { to: string } & Rendered;
}

/**
 * Pass 1: stream the CSV and check every row without writing anything: the recipient, and a value for every
 * variable the template needs. Rendering is checked on the first row (what can fail there — a missing helper
 * or partial — fails for every row), or on every row with `renderAll` (`--dry-run`). A row that still fails
 * to render when it is sent is recorded `failed` with the reason. A dry run's `preview` gets every rendered row.
 */
async function validate(csvPath: string, channel: Channel, template: CompiledTemplate, region: string | undefined, renderAll: boolean, encoding?: string, preview?: BatchPreviewer): Promise<Validation> {
  const csv = await openCsv(csvPath, encoding);
  const want = recipientColumn(channel);
  const recipientKey = csv.columns.find((c) => c.toLowerCase() === want);
  if (!recipientKey) throw new UsageError(`--csv ${csvPath} line 1: no "${want}" column (columns: ${csv.columns.join(', ')})`);
  const missing = template.required.concat(template.optional).filter((v) => !csv.columns.includes(v));
  const missingRequired = missing.filter((v) => template.required.includes(v));
  if (missingRequired.length > 0) {
    throw new UsageError(
      `template variable${missingRequired.length > 1 ? 's' : ''} ${missingRequired.map((v) => `{{${v}}}`).join(', ')} ha${missingRequired.length > 1 ? 've' : 's'} no column in --csv ${csvPath} (columns: ${csv.columns.join(', ')}); nothing was sent`,
    );
  }
  const errors: string[] = [];
  let errorCount = 0;
  let rows = 0;
  let sample: Validation['sample'];
  const fail = (msg: string) => {
    errorCount++;
    if (errors.length < MAX_REPORTED_ERRORS) errors.push(msg);
  };
  for await (const { row, line, record } of csv.rows) {
    rows++;
    const raw = (record[recipientKey] ?? '').trim();
    const r = raw ? normaliseRecipient(channel, raw, region) : { error: 'is empty' };
    if ('error' in r) fail(`line ${line}: ${recipientKey} ${r.error}`);
    const to = 'to' in r ? r.to : raw;
    const empty = template.required.filter((v) => v !== recipientKey && !(record[v] ?? '').trim());
    if (empty.length) fail(`line ${line}: ${empty.map((v) => `column "${v}"`).join(', ')} empty (the template uses ${empty.map((v) => `{{${v}}}`).join(', ')})`);
    if (sample && !renderAll) continue;
    let rendered: Rendered | undefined;
    try {
      rendered = template.render(record);
      sample ??= { to, ...rendered };
    } catch (err) {
      fail(`line ${line}: template does not render: ${(err as Error).message.split('\n')[0]}`);
    }
    if (rendered) preview?.add(row, line, to, rendered);
  }
  if (rows === 0) throw new UsageError(`--csv ${csvPath} has a header but no data rows`);
  return { rows, hash: csv.hash(), recipientKey, errors, errorCount, sample };
}

/**
 * Runs `send batch`: validates every row, stores the batch (or finds the same one from an earlier run),
 * then sends the pending rows through the dispatcher.
 * @returns the summary; the caller maps failed/unknown rows to exit 3.
 * @throws UsageError (bad flags or input: nothing stored, nothing sent), KeyError (no/wrong key, before
 *   anything is written), LockedError (another process works this batch), NotFoundError (tenant).
 */
export async function runBatch(ctx: CoreContext, req: BatchRequest, hooks: BatchRunHooks): Promise<BatchSummary> {
  const started = ctx.clock.now().getTime();
  getTenant(ctx, req.tenantId);
  const concurrency = req.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) throw new UsageError('--concurrency must be a whole number from 1 to 1000');
  const template = compileTemplate(templateSource(req));
  const preview = req.dryRun ? new BatchPreviewer(ctx, req, template) : undefined;
  const v = await validate(req.csvPath, req.channel, template, req.defaultRegion, req.dryRun ?? false, req.encoding, preview);
  if (v.errorCount > 0) {
    const more = v.errorCount > v.errors.length ? [`… and ${v.errorCount - v.errors.length} more`] : [];
    throw new UsageError(
      `--csv ${req.csvPath}: ${v.errorCount} problem${v.errorCount > 1 ? 's' : ''} in ${v.rows} rows; nothing was sent`,
      [...v.errors, ...more],
    );
  }
  if (preview) {
    const p = preview.finish();
    return {
      ...emptyCounts(v.rows),
      pending: v.rows - p.skipped,
      skipped: p.skipped,
      batchId: null,
      status: 'dry-run',
      idempotencyKey: null,
      byProvider: {},
      fallback: 0,
      elapsedMs: ctx.clock.now().getTime() - started,
      alreadyComplete: false,
      resumed: false,
      preview: p,
    };
  }

  // Opens every secret of the route: a missing or wrong key fails here, before anything is written.
  const journal = new GroupCommit(ctx.db);
  const dispatcher = Dispatcher.open(ctx, req.tenantId, req.channel, { retry: req.retry, maxConcurrency: concurrency, signal: hooks.signal, rate: req.rate, journal });
  try {
    const derived = createHash('sha256').update(`${req.tenantId}|${req.channel}|${v.hash}|${template.hash}`).digest('hex').slice(0, 32);
    let key = req.idempotencyKey ?? derived;
    let existing = findByKey(ctx, key);
    if (existing && req.idempotencyKey && (existing.input_hash !== v.hash || existing.template_hash !== template.hash)) {
      throw new UsageError(
        `--idempotency-key ${req.idempotencyKey} was used for batch ${existing.id} with a different CSV or template; use another key`,
      );
    }
    if (existing && req.newBatch) {
      key = `${key}+${randomBytes(4).toString('hex')}`;
      existing = undefined;
    }
    if (existing?.status === 'loading' && !leaseHeldByOther(ctx, existing, hooks)) {
      // A run died while storing the rows: nothing was sent, start the load again.
      ctx.db.prepare('DELETE FROM batches WHERE id = ?').run(existing.id);
      existing = undefined;
    }
    let batchId: string;
    let resumed = false;
    if (existing) {
      batchId = existing.id;
      resumed = true;
      const counts = batchStats(ctx, existing);
      if (existing.status === 'cancelled') return summarize(ctx, batchId, started, { alreadyComplete: true, resumed: false });
      if (existing.status === 'done' && counts.pending === 0 && !(req.retryUnknown && counts.unknown > 0)) {
        return summarize(ctx, batchId, started, { alreadyComplete: true, resumed: false });
      }
    } else {
      batchId = await loadBatch(ctx, req, template.source, v, key, hooks);
    }
    return await work(ctx, batchId, dispatcher, journal, template, concurrency, req.retryUnknown ?? false, hooks, started, resumed);
  } finally {
    await dispatcher.close();
  }
}

/**
 * Continues a stored batch (`batch resume`): pending rows are sent; rows left `sending` by a crash become
 * `unknown` and are resent only with `retryUnknown`.
 * @throws NotFoundError, LockedError, KeyError.
 */
export async function resumeBatch(
  ctx: CoreContext,
  batchId: string,
  opts: { concurrency?: number; rate?: number; retryUnknown?: boolean; retry?: Partial<RetryPolicy> },
  hooks: BatchRunHooks,
): Promise<BatchSummary> {
  const started = ctx.clock.now().getTime();
  const batch = getBatchRow(ctx, batchId);
  if (batch.status === 'loading') throw new UsageError(`batch ${batchId} never finished loading; run the same \`send batch\` again`);
  if (batch.status === 'cancelled') throw new UsageError(`batch ${batchId} was cancelled; its pending rows were skipped (send them with \`send batch … --new-batch\`)`);
  const source = JSON.parse(batch.template) as TemplateSource;
  const template = compileTemplate(source);
  const concurrency = opts.concurrency ?? 4;
  const journal = new GroupCommit(ctx.db);
  const dispatcher = Dispatcher.open(ctx, batch.tenant_id, batch.channel, { retry: opts.retry, maxConcurrency: concurrency, signal: hooks.signal, rate: opts.rate, journal });
  try {
    return await work(ctx, batchId, dispatcher, journal, template, concurrency, opts.retryUnknown ?? false, hooks, started, true);
  } finally {
    await dispatcher.close();
  }
}

function findByKey(ctx: CoreContext, key: string): BatchRow | undefined {
  return ctx.db.prepare('SELECT * FROM batches WHERE idempotency_key = ?').get(key) as BatchRow | undefined;
}

function getBatchRow(ctx: CoreContext, id: string): BatchRow {
  const row = ctx.db.prepare('SELECT * FROM batches WHERE id = ?').get(id) as BatchRow | undefined;
  if (!row) throw new NotFoundError(`no batch ${id} in store ${ctx.storePath} (see \`switchboard batch list\`)`);
  return row;
}

function newBatchId(ctx: CoreContext): string {
  const d = ctx.clock.now().toISOString().slice(0, 10).replace(/-/g, '');
  return `b-${d}-${randomBytes(4).toString('hex')}`;
}

/** Pass 2: store the batch and one ledger row per CSV row, in chunked transactions. */
async function loadBatch(
  ctx: CoreContext,
  req: BatchRequest,
  source: TemplateSource,
  v: Validation,
  key: string,
  hooks: BatchRunHooks,
): Promise<string> {
  const id = newBatchId(ctx);
  const now = () => ctx.clock.now().toISOString();
  const csv = await openCsv(req.csvPath, req.encoding);
  try {
    ctx.db
      .prepare(
        `INSERT INTO batches (id, tenant_id, channel, idempotency_key, input_path, input_hash, template_path, template_hash, template,
           columns, status, total, lease_owner, lease_expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'loading', 0, ?, ?, ?)`,
      )
      .run(
        id,
        req.tenantId,
        req.channel,
        key,
        req.csvPath,
        v.hash,
        req.stored ? `template:${req.stored.name}` : (req.templatePath ?? ''),
        compileTemplate(source).hash,
        JSON.stringify(source),
        JSON.stringify(csv.columns),
        hooks.owner,
        new Date(ctx.clock.now().getTime() + LEASE_MS).toISOString(),
        now(),
      );
  } catch (err) {
    if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
      throw new LockedError(`another process started the same batch (idempotency key ${key}) just now; run \`switchboard batch list\``);
    }
    throw err;
  }
  const insert = ctx.db.prepare(
    'INSERT INTO batch_items (batch_id, row_no, line_no, recipient, vars, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  let chunk: Array<[number, number, string, string]> = [];
  const flush = ctx.db.transaction((rows: Array<[number, number, string, string]>) => {
    const t = now();
    for (const [row, line, to, vars] of rows) insert.run(id, row, line, to, vars, 'pending', t);
  });
  let total = 0;
  for await (const { row, line, record } of csv.rows) {
    // Pass 1 checked every address, and the hash compared below proves these are the same bytes: an e-mail
    // address needs only its trim again; a phone number its E.164 form.
    const raw = record[v.recipientKey] ?? '';
    const r = req.channel === 'email' ? { to: raw.trim() } : normaliseRecipient(req.channel, raw, req.defaultRegion);
    if ('error' in r) throw new UsageError(`--csv ${req.csvPath} changed while it was being read; nothing was sent, run again`);
    chunk.push([row, line, r.to, JSON.stringify(record)]);
    total++;
    if (chunk.length >= LOAD_CHUNK) {
      flush.immediate(chunk);
      chunk = [];
    }
  }
  flush.immediate(chunk);
  if (csv.hash() !== v.hash || total !== v.rows) {
    ctx.db.prepare('DELETE FROM batches WHERE id = ?').run(id);
    throw new UsageError(`--csv ${req.csvPath} changed while it was being read; nothing was sent, run again`);
  }
  ctx.db.prepare("UPDATE batches SET status = 'ready', total = ? WHERE id = ?").run(total, id);
  return id;
}

function leaseHeldByOther(ctx: CoreContext, b: Pick<BatchRow, 'lease_owner' | 'lease_expires_at'>, hooks: BatchRunHooks): boolean {
  if (!b.lease_owner || b.lease_owner === hooks.owner) return false;
  if (!b.lease_expires_at || Date.parse(b.lease_expires_at) <= ctx.clock.now().getTime()) return false;
  return hooks.ownerAlive(b.lease_owner);
}

/** Takes the batch's lease or throws LockedError naming the holder. Turns rows left `sending` into `unknown`. */
function acquire(ctx: CoreContext, batchId: string, hooks: BatchRunHooks, retryUnknown: boolean): void {
  ctx.db.transaction(() => {
    const b = getBatchRow(ctx, batchId);
    if (leaseHeldByOther(ctx, b, hooks)) {
      throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); not starting a second run`);
    }
    const now = ctx.clock.now();
    ctx.db
      .prepare("UPDATE batches SET lease_owner = ?, lease_expires_at = ?, status = 'running', started_at = ifnull(started_at, ?) WHERE id = ?")
      .run(hooks.owner, new Date(now.getTime() + LEASE_MS).toISOString(), now.toISOString(), batchId);
    // Whoever left rows `sending` is gone: we cannot know whether those requests reached the provider.
    ctx.db
      .prepare("UPDATE batch_items SET state = 'unknown', error = 'interrupted while sending; outcome unknown', updated_at = ? WHERE batch_id = ? AND state = 'sending'")
      .run(now.toISOString(), batchId);
    if (retryUnknown) {
      ctx.db.prepare("UPDATE batch_items SET state = 'pending', error = NULL WHERE batch_id = ? AND state = 'unknown'").run(batchId);
    }
  }).immediate();
}

/** What the ledger records for a row once it is done: the fields of a {@link RowEvent} after its row, line and recipient. */
type Outcome = Omit<RowEvent, 'row' | 'line' | 'recipient'>;

const NO_OUTCOME = { provider: null, messageId: null, fallback: false, error: null } as const;

function outcomeOf(result: DispatchResult): Outcome {
  return result.status === 'sent'
    ? { state: 'sent', provider: result.provider ?? null, messageId: result.messageId ?? null, fallback: result.fallback, error: null }
    : {
        state: 'failed',
        provider: result.provider ?? null,
        messageId: null,
        fallback: result.fallback,
        error: result.error ? `${result.error.kind}: ${result.error.message}` : 'failed',
      };
}

async function work(
  ctx: CoreContext,
  batchId: string,
  dispatcher: Dispatcher,
  journal: GroupCommit,
  template: CompiledTemplate,
  concurrency: number,
  retryUnknown: boolean,
  hooks: BatchRunHooks,
  started: number,
  resumed: boolean,
): Promise<BatchSummary> {
  acquire(ctx, batchId, hooks, retryUnknown);
  const renew = setInterval(() => {
    try {
      ctx.db
        .prepare('UPDATE batches SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?')
        .run(new Date(ctx.clock.now().getTime() + LEASE_MS).toISOString(), batchId, hooks.owner);
    } catch {
      // A busy store delays a renewal; the next one comes in LEASE_MS / 3.
    }
  }, LEASE_MS / 3);
  renew.unref();

  const counts = countItems(ctx, batchId);
  // Rows share the batch's one template: group them when the first provider can batch (BatchSender).
  const groupSize = dispatcher.channel === 'email' ? await dispatcher.batchSize(MAX_GROUP) : 1;
  const page = ctx.db.prepare(
    "SELECT row_no, line_no, recipient, vars, state FROM batch_items WHERE batch_id = ? AND state = 'pending' AND row_no > ? ORDER BY row_no LIMIT ?",
  );
  // Ledger writes name their rows as a JSON array of row numbers, so a request's rows (up to 1000) take one
  // statement each time, not one per row.
  const markSending = ctx.db.prepare(
    `UPDATE batch_items SET state = 'sending', attempts = attempts + 1, updated_at = ?
     WHERE batch_id = ? AND row_no IN (SELECT value FROM json_each(?)) AND state = 'pending' RETURNING row_no`,
  );
  const finish = ctx.db.prepare(
    'UPDATE batch_items SET state = ?, provider = ?, message_id = ?, fallback = ?, error = ?, updated_at = ? WHERE batch_id = ? AND row_no IN (SELECT value FROM json_each(?))',
  );
  const tenantId = dispatcher.tenantId;
  const channel = dispatcher.channel;
  const tracker = batchTracker(ctx, tenantId, channel);

  // Every write below goes through the group commit (one transaction per event-loop turn for all rows that
  // reached that point in the turn). A row's `sending` mark is awaited before its request leaves; its attempt
  // records (Dispatcher) and its outcome are queued in the same turn, so they commit together.
  /**
   * Records each row's outcome (`outcomes[k]` for `items[k]`): rows with the same outcome (a request's
   * message id) in one statement. Resolves once committed, and then tells `onRow` of each row, in order.
   */
  const report = (items: readonly ItemRow[], outcomes: readonly Outcome[]): Promise<void> =>
    journal
      .commit(() => {
        const byOutcome = new Map<string, { o: Outcome; rows: number[] }>();
        outcomes.forEach((o, k) => {
          const key = `${o.state}\u0000${o.provider}\u0000${o.messageId}\u0000${o.fallback}\u0000${o.error}`;
          const same = byOutcome.get(key);
          if (same) same.rows.push(items[k]!.row_no);
          else byOutcome.set(key, { o, rows: [items[k]!.row_no] });
        });
        const t = ctx.clock.now().toISOString();
        for (const { o, rows } of byOutcome.values()) finish.run(o.state, o.provider, o.messageId, o.fallback ? 1 : 0, o.error, t, batchId, JSON.stringify(rows));
      })
      .then(() => {
        items.forEach((item, k) => {
          const o = outcomes[k]!;
          counts.pending--;
          counts[o.state]++;
          hooks.onRow?.({ row: item.row_no, line: item.line_no, recipient: item.recipient, ...o }, counts);
        });
      });

  /**
   * Skips suppressed rows and fails rows that do not render (`done`: their outcomes, resolved once committed);
   * the other rows come back with their messages. Suppressions are looked up for all rows in one query.
   */
  const prepare = (items: readonly ItemRow[]): { done: Array<Promise<void>>; ready: Array<{ item: ItemRow; message: OutboundMessage }> } => {
    const reasons = suppressionReasons(ctx, tenantId, channel, items.map((i) => i.recipient));
    const done: Array<Promise<void>> = [];
    const ready: Array<{ item: ItemRow; message: OutboundMessage }> = [];
    items.forEach((item, k) => {
      const reason = reasons[k];
      if (reason != null) {
        done.push(report([item], [{ ...NO_OUTCOME, state: 'skipped', error: `suppressed: ${reason}` }]));
        return;
      }
      let content: Rendered;
      try {
        content = template.render(JSON.parse(item.vars) as Record<string, string>);
      } catch (err) {
        done.push(report([item], [{ ...NO_OUTCOME, state: 'failed', error: `template does not render: ${(err as Error).message.split('\n')[0]}` }]));
        return;
      }
      const message = composeMessage(channel, item.recipient, template.source, content, { 'X-Switchboard-Batch': `${batchId}/${item.row_no}` });
      ready.push({ item, message: { ...message, tracking: tracker.track(batchId, item.row_no, item.recipient) } });
    });
    return { done, ready };
  };

  /** Marks rows `sending` and waits until that is committed; returns the rows still pending (now claimed). */
  const claim = async <T extends { item: ItemRow }>(rows: T[]): Promise<T[]> => {
    let claimed = new Set<number>();
    await journal.commit(() => {
      const got = markSending.all(ctx.clock.now().toISOString(), batchId, JSON.stringify(rows.map((r) => r.item.row_no))) as Array<{ row_no: number }>;
      claimed = new Set(got.map((g) => g.row_no));
    });
    return claimed.size === rows.length ? rows : rows.filter((r) => claimed.has(r.item.row_no));
  };

  /**
   * Sends rows: one row per request, or up to `groupSize` rows in one batched request (BatchSender); either
   * way each row keeps its own ledger state.
   */
  const processRows = async (items: ItemRow[]) => {
    const { done, ready } = prepare(items);
    // Committed (all rows of the request at once) before the request leaves: a crash from here on leaves
    // the rows `sending`, which a resume turns into `unknown`.
    const claimed = ready.length > 0 ? await claim(ready) : [];
    if (claimed.length > 0) {
      const origins = claimed.map((r) => ({ batchId, rowNo: r.item.row_no }));
      const results =
        groupSize > 1
          ? await dispatcher.sendMany(claimed.map((r) => r.message as EmailMessage), origins)
          : [await dispatcher.send(claimed[0]!.message, origins[0])];
      done.push(report(claimed.map((r) => r.item), results.map(outcomeOf)));
    }
    await Promise.all(done);
  };

  const queue = new PQueue({ concurrency });
  let failure: unknown;
  let cursor = 0;
  try {
    outer: while (!hooks.signal?.aborted) {
      const items = page.all(batchId, cursor, Math.max(500, groupSize)) as ItemRow[];
      if (items.length === 0) break;
      for (let k = 0; k < items.length; k += groupSize) {
        if (hooks.signal?.aborted || failure) break outer;
        await queue.onSizeLessThan(concurrency * 2);
        const group = items.slice(k, k + groupSize);
        cursor = group[group.length - 1]!.row_no;
        addTask(queue, () => processRows(group)).catch((err: unknown) => (failure ??= err));
      }
    }
    await queue.onIdle();
  } finally {
    clearInterval(renew);
    try {
      journal.flush();
    } catch (err) {
      failure ??= err;
    }
    const left = liveStats(ctx, batchId);
    const status: BatchStatus = left.pending === 0 && left.sending === 0 ? 'done' : 'interrupted';
    // (A cancel cannot race this: it needs the lease, which this run holds until the update below.)
    ctx.db
      .prepare(
        `UPDATE batches SET status = ?, stats = ?, lease_owner = NULL, lease_expires_at = NULL,
           finished_at = CASE WHEN ? = 'done' THEN ? ELSE finished_at END WHERE id = ? AND lease_owner = ?`,
      )
      .run(status, JSON.stringify(left), status, ctx.clock.now().toISOString(), batchId, hooks.owner);
  }
  if (failure) throw failure;
  return summarize(ctx, batchId, started, { alreadyComplete: false, resumed });
}

function emptyCounts(rows: number): BatchCounts {
  return { rows, pending: 0, sending: 0, sent: 0, failed: 0, skipped: 0, unknown: 0 };
}

/** A batch's row counts by state, with its sent rows per provider and how many of those were fallbacks. */
export type BatchStats = BatchCounts & { byProvider: Record<string, number>; fallback: number };

/** Counts a batch's rows by state (one scan of its rows). */
export function countItems(ctx: CoreContext, batchId: string): BatchCounts {
  const { byProvider: _p, fallback: _f, ...counts } = liveStats(ctx, batchId);
  return counts;
}

/** A batch's stats read from its rows: one scan of them by primary key. */
function liveStats(ctx: CoreContext, batchId: string): BatchStats {
  const rows = prepared(
    ctx.db,
    'SELECT state, provider, count(*) AS n, sum(fallback) AS fb FROM batch_items WHERE batch_id = ? GROUP BY state, provider ORDER BY provider',
  ).all(batchId) as Array<{ state: ItemState; provider: string | null; n: number; fb: number }>;
  const stats: BatchStats = { ...emptyCounts(0), byProvider: {}, fallback: 0 };
  for (const r of rows) {
    stats[r.state] += r.n;
    stats.rows += r.n;
    if (r.state === 'sent' && r.provider !== null) {
      stats.byProvider[r.provider] = r.n;
      stats.fallback += r.fb;
    }
  }
  return stats;
}

/**
 * A batch's stats: kept ones while it is done, interrupted or cancelled (its rows change only in a run, which
 * sets it `running`, or a cancel, which keeps them anew), else read from its rows.
 */
function batchStats(ctx: CoreContext, b: Pick<BatchRow, 'id' | 'status' | 'stats'>): BatchStats {
  if (b.stats && (b.status === 'done' || b.status === 'interrupted' || b.status === 'cancelled')) return JSON.parse(b.stats) as BatchStats;
  return liveStats(ctx, b.id);
}

function summarize(ctx: CoreContext, batchId: string, started: number, flags: { alreadyComplete: boolean; resumed: boolean }): BatchSummary {
  const b = getBatchRow(ctx, batchId);
  return {
    batchId,
    status: b.status,
    idempotencyKey: b.idempotency_key,
    ...batchStats(ctx, b),
    elapsedMs: ctx.clock.now().getTime() - started,
    ...flags,
  };
}

function toInfo(ctx: CoreContext, b: BatchRow): BatchInfo {
  return {
    id: b.id,
    tenantId: b.tenant_id,
    channel: b.channel,
    status: b.status,
    idempotencyKey: b.idempotency_key,
    inputPath: b.input_path,
    templatePath: b.template_path,
    leaseOwner: b.lease_owner,
    leaseExpiresAt: b.lease_expires_at,
    createdAt: b.created_at,
    startedAt: b.started_at,
    finishedAt: b.finished_at,
    ...batchStats(ctx, b),
  };
}

/** Stored batches, newest first, optionally for one tenant. */
export function listBatches(ctx: CoreContext, filter: { tenantId?: string; limit?: number } = {}): BatchInfo[] {
  const rows = (
    filter.tenantId
      ? ctx.db.prepare('SELECT * FROM batches WHERE tenant_id = ? ORDER BY created_at DESC, id LIMIT ?').all(filter.tenantId, filter.limit ?? 100)
      : ctx.db.prepare('SELECT * FROM batches ORDER BY created_at DESC, id LIMIT ?').all(filter.limit ?? 100)
  ) as BatchRow[];
  return rows.map((b) => toInfo(ctx, b));
}

/** One batch. @throws NotFoundError. */
export function getBatch(ctx: CoreContext, id: string): BatchInfo {
  return toInfo(ctx, getBatchRow(ctx, id));
}

/** A batch's ledger rows in CSV order (for `batch show --items`). */
export function batchItems(ctx: CoreContext, id: string): RowEvent[] {
  getBatchRow(ctx, id);
  const rows = ctx.db
    .prepare('SELECT row_no, line_no, recipient, state, provider, message_id, fallback, error FROM batch_items WHERE batch_id = ? ORDER BY row_no')
    .all(id) as Array<{ row_no: number; line_no: number; recipient: string; state: ItemState; provider: string | null; message_id: string | null; fallback: number; error: string | null }>;
  return rows.map((r) => ({
    row: r.row_no,
    line: r.line_no,
    recipient: r.recipient,
    state: r.state,
    provider: r.provider,
    messageId: r.message_id,
    fallback: r.fallback === 1,
    error: r.error,
  }));
}

/** What `batch cancel` did. */
export interface CancelResult {
  batchId: string;
  /** Pending rows now `skipped` with error `cancelled`. */
  cancelled: number;
  counts: BatchCounts;
}

/**
 * Stops a batch for good: its pending rows become `skipped` (error `cancelled`) and the batch `cancelled`, so
 * neither `batch resume` nor the same `send batch` sends them. Rows already sent, failed or unknown stay as
 * they are. The lease is respected: a batch being worked by a live process is not touched.
 * @throws NotFoundError; LockedError (another live process holds the lease: stop it first, e.g. Ctrl-C).
 */
export function cancelBatch(ctx: CoreContext, batchId: string, hooks: Pick<BatchRunHooks, 'owner' | 'ownerAlive'>): CancelResult {
  let cancelled = 0;
  let stats: BatchStats | undefined;
  ctx.db.transaction(() => {
    const b = getBatchRow(ctx, batchId);
    if (leaseHeldByOther(ctx, b, hooks)) {
      throw new LockedError(`batch ${batchId} is being sent by ${b.lease_owner} (lease until ${b.lease_expires_at}); stop that run first (Ctrl-C or SIGTERM), then cancel`);
    }
    const now = ctx.clock.now().toISOString();
    cancelled = ctx.db
      .prepare("UPDATE batch_items SET state = 'skipped', error = 'cancelled', updated_at = ? WHERE batch_id = ? AND state = 'pending'")
      .run(now, batchId).changes;
    stats = liveStats(ctx, batchId);
    ctx.db
      .prepare("UPDATE batches SET status = 'cancelled', stats = ?, lease_owner = NULL, lease_expires_at = NULL, finished_at = ? WHERE id = ?")
      .run(JSON.stringify(stats), now, batchId);
    audit(ctx, 'batch.cancel', batchId, b.tenant_id, ['status']);
  }).immediate();
  const { byProvider: _p, fallback: _f, ...counts } = stats!;
  return { batchId, cancelled, counts };
}

/** Columns `batch export` adds after the input columns. */
export const EXPORT_COLUMNS = ['state', 'provider', 'message_id', 'error'] as const;

/**
 * Every input row of a batch, in CSV order: its input columns (as read from the CSV), then `state`,
 * `provider`, `message_id` and `error`. Rows are read lazily from the store, so memory stays flat.
 * @throws NotFoundError.
 */
export function exportBatch(ctx: CoreContext, batchId: string): { columns: string[]; rows: Iterable<string[]> } {
  const b = getBatchRow(ctx, batchId);
  const input = JSON.parse(b.columns) as string[];
  const stmt = ctx.db.prepare('SELECT vars, state, provider, message_id, error FROM batch_items WHERE batch_id = ? ORDER BY row_no');
  function* rows(): Iterable<string[]> {
    for (const r of stmt.iterate(batchId) as Iterable<{ vars: string; state: string; provider: string | null; message_id: string | null; error: string | null }>) {
      const vars = JSON.parse(r.vars) as Record<string, string>;
      yield [...input.map((c) => vars[c] ?? ''), r.state, r.provider ?? '', r.message_id ?? '', r.error ?? ''];
    }
  }
  return { columns: [...input, ...EXPORT_COLUMNS], rows: rows() };
}
