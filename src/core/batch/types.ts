/**
 * Shapes of bulk sends (DESIGN §6), shared by the parts of `src/core/batch/`: the request, the run's hooks and
 * options, row and batch states, counts, summaries and stored rows.
 */
import type { Channel } from '../context.js';
import type { RetryPolicy } from '../dispatch.js';
import type { TemplateSource, WhatsAppTemplateRef } from '../templates.js';
import type { BatchPreview, PreviewOptions } from './preview.js';

/**
 * Row states of the ledger: `pending → sending → sent | failed | skipped`; `unknown` for a row left `sending` by
 * a run that died with its request on the wire. A row is `failed` only for a recipient or render error.
 */
export type ItemState = 'pending' | 'sending' | 'sent' | 'failed' | 'skipped' | 'unknown';

/**
 * Batch states: `loading` (rows being stored), `ready`, `running`, `interrupted` (a signal stopped it),
 * `paused` (no provider of the route could take messages; see `pausedReason`), `done`, `cancelled`.
 */
export type BatchStatus = 'loading' | 'ready' | 'running' | 'interrupted' | 'paused' | 'done' | 'cancelled';

/** Rows a `batch retry` puts back to `pending`: by state, optionally only with one error class. */
export type ErrorClass = 'recipient' | 'auth' | 'config' | 'transient' | 'render';

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
  /** The CSV's encoding, a WHATWG label (default UTF-8, decoded strictly). */
  encoding?: string;
  /** The template file's encoding, a WHATWG label (default UTF-8). */
  templateEncoding?: string;
  dryRun?: boolean;
  /** Dry run only: the rows to show and the price per segment (./preview.ts). */
  preview?: PreviewOptions;
  /** An explicit idempotency key: it never expires. */
  idempotencyKey?: string;
  /**
   * How long a key derived from the input (no `idempotencyKey`) finds a finished batch, in ms from its creation
   * (default {@link DEFAULT_DEDUPE_WINDOW_MS}; 0: never). A batch with rows left to send is always continued.
   */
  dedupeWindowMs?: number;
  /** Start a new batch even if the same input was sent before. */
  newBatch?: boolean;
  /** Send once per recipient: later rows with the same recipient are `skipped` ("duplicate of line N"). */
  dedupeRecipients?: boolean;
  /** How the rows are sent. */
  run?: RunOptions;
}

/**
 * How a pause's reason (`pausedReason`) begins when the route was up but some rows' transient retries ran out
 * (they are `pending` again, for the next run); any other reason is the route's outage (every provider down).
 */
export const RETRIES_RAN_OUT = 'retries ran out with the route up';

/** Default dedupe window of a derived idempotency key: 24 h. */
export const DEFAULT_DEDUPE_WINDOW_MS = 24 * 3_600_000;

/** How a run sends a batch's rows (`send batch`, `batch resume`). */
export interface RunOptions {
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Most requests per second to each provider for this run (lowers a provider's own `rate`). */
  rate?: number;
  /** Resend rows whose outcome is unknown after a crash. */
  retryUnknown?: boolean;
  retry?: Partial<RetryPolicy>;
}

/** Who runs a batch: the lease owner, and how to tell whether another owner still lives. */
export interface LeaseHolder {
  /** Lease owner id of this process, e.g. `4242@host`. */
  owner: string;
  /** Whether a lease owner (as written by another process) is still alive; unknown → true. */
  ownerAlive(owner: string): boolean;
}

/** Run-time hooks for a batch run. */
export interface BatchRunHooks extends LeaseHolder {
  /** Aborting stops starting requests; requests on the wire finish and are recorded. */
  signal?: AbortSignal;
  /**
   * Called after each row outcome is committed, with the run's live counts (not a copy: read them during the
   * call, or copy them to keep).
   */
  onRow?(event: RowEvent, progress: Readonly<BatchCounts>): void;
  /** Called once with each warning of the CSV pass (e.g. duplicate recipients), before anything is sent. */
  onWarning?(message: string, details: string[]): void;
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

/** A batch's row counts by state, with its sent rows per provider and how many of those were fallbacks. */
export type BatchStats = BatchCounts & { byProvider: Record<string, number>; fallback: number };

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
export interface BatchSummary extends BatchStats {
  batchId: string | null;
  status: BatchStatus | 'dry-run';
  idempotencyKey: string | null;
  /** Wall time of this run in ms. */
  elapsedMs: number;
  /** True when this run found the batch already finished (done or cancelled) and sent nothing. */
  alreadyFinished: boolean;
  /** True when this run continued an earlier, unfinished run. */
  resumed: boolean;
  /** Why the batch is paused (`ref: error; ref: error`), else null. */
  pausedReason: string | null;
  /** When the batch was paused (ISO UTC), else null. */
  pausedAt: string | null;
  /** When the batch was created (ISO UTC); null for a dry run. */
  createdAt: string | null;
  /** When the batch finished (ISO UTC), else null. */
  finishedAt: string | null;
  /** True when this run lost its lease to another process and stopped (exit 4). */
  leaseLost: boolean;
  /** Rows whose recipient already appeared on an earlier line of the CSV. */
  duplicateRecipients: number;
  /** Dry run only: the rows shown, skipped rows by reason, segment totals (./preview.ts). */
  preview?: BatchPreview;
}

/** A stored batch as listed by `batch list` / `batch show`. */
export interface BatchInfo extends BatchStats {
  id: string;
  tenantId: string;
  channel: Channel;
  status: BatchStatus;
  idempotencyKey: string;
  /** When a derived key stops finding this batch once finished (ISO UTC); null for an explicit key. */
  keyExpiresAt: string | null;
  inputPath: string;
  templatePath: string;
  leaseOwner: string | null;
  leaseExpiresAt: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  pausedReason: string | null;
  pausedAt: string | null;
}

/** A `batches` row as stored. */
export interface BatchRow {
  id: string;
  tenant_id: string;
  channel: Channel;
  idempotency_key: string;
  /** The key derived from the input, for derived-key batches (migration 6). */
  derived_key: string | null;
  key_expires_at: string | null;
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
  paused_reason: string | null;
  paused_at: string | null;
  /** {@link BatchStats} as JSON, kept when a run ends or the batch is cancelled. */
  stats: string | null;
}

/** A `batch_items` row as the runner reads it. */
export interface ItemRow {
  row_no: number;
  line_no: number;
  recipient: string;
  vars: string;
  state: ItemState;
}
