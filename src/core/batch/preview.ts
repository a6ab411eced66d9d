/**
 * Previews of a bulk send (issue 12): what `send batch --dry-run` shows. The validation pass, which reads and
 * renders every row, hands each row to a {@link BatchPreviewer}: it looks the recipient up in the tenant's
 * suppressions (a suppressed row would be skipped, as the real send skips it) and, for sms and whatsapp text,
 * counts the encoding and segments (../segments.ts). It keeps the rows asked for (`--row <line>`, and the first
 * row), the skipped rows by reason and the segment totals; nothing is written. Also the segment totals of a
 * stored batch's sent rows, for the summary of a real send.
 */
import type { CoreContext, Channel } from '../context.js';
import { compileTemplate, phoneBody, type CompiledTemplate, type Rendered, type TemplateSource } from '../templates.js';
import { suppressionReasons } from '../suppressions.js';
import { resolveRoute } from '../providers.js';
import { estimateCost, priceFromSettings, SegmentCounter, SegmentTally, type MessageSegments, type SegmentPrice, type SegmentTotals } from '../segments.js';
import { UsageError } from '../../errors.js';
import { findBatchRow, iterateSentValues } from './ledger.js';

/** Rows whose suppressions are looked up in one query. */
const LOOKUP_CHUNK = 500;

/** What a dry run should show besides the counts. */
export interface PreviewOptions {
  /** CSV file lines of the rows to show (`--row`), besides the first row. */
  lines?: readonly number[];
  /**
   * The price per segment for the estimated cost (`--price-per-segment`); undefined: the first provider of the
   * route that has a `pricePerSegment` setting; null: no cost.
   */
  price?: SegmentPrice | null;
  /** ISO 4217 code that overrides the route setting's `currency` (`--currency` without `--price-per-segment`). */
  currency?: string;
}

/** One row as a dry run shows it. */
export interface PreviewMessage {
  /** Data row, from 1. */
  row: number;
  /** File line where the row starts (as validation errors name rows). */
  line: number;
  /** The recipient as it would be sent to (E.164 for phones). */
  recipient: string;
  /** E-mail only; null for sms and whatsapp. */
  subject: string | null;
  /** The text: the e-mail text part, or the sms / whatsapp body. */
  text: string;
  html: string | null;
  /** Why the row would be skipped (`suppressed: <reason>`, as the ledger would say), or null. */
  skipReason: string | null;
  /** sms and whatsapp text: encoding, segments and estimated cost; null for e-mail and whatsapp templates. */
  segments: MessageSegments | null;
}

/** What a dry run found over all rows. */
export interface BatchPreview {
  channel: Channel;
  /** The rows shown, in CSV order: the first row and every `--row`. */
  messages: PreviewMessage[];
  /** Rows that would be skipped, by reason (`suppressed: unsubscribe` → 3). */
  skippedByReason: Record<string, number>;
  /** Rows that would be skipped, all reasons. */
  skipped: number;
  /** Segment totals of the rows that would be sent (sms and whatsapp text), else null. */
  segments: SegmentTotals | null;
}

/** Whether a channel's messages are counted in SMS segments: sms, and whatsapp free-form text (not an approved template). */
export function countsSegments(channel: Channel, source: TemplateSource): boolean {
  return channel === 'sms' || (channel === 'whatsapp' && !source.whatsappTemplate);
}

/**
 * The price per segment the tenant's route gives: the first provider of the route for `channel` with a
 * `pricePerSegment` setting (and its `currency`); null when none has one.
 * @throws NotFoundError for an unknown tenant.
 */
export async function routePrice(ctx: CoreContext, tenantId: string, channel: Channel): Promise<SegmentPrice | null> {
  for (const e of (await resolveRoute(ctx, tenantId, channel)).entries) {
    const p = priceFromSettings(e.config.settings);
    if (p) return p;
  }
  return null;
}

/** What a dry run previews: the batch request's fields it reads. */
export interface PreviewRequest {
  tenantId: string;
  channel: Channel;
  csvPath: string;
  preview?: PreviewOptions;
}

/**
 * A dry run's preview, fed row by row by the validation pass (which reads, checks and renders every row once):
 * applies the tenant's suppressions (looked up 500 rows a query), counts segments of sms and whatsapp text, and
 * keeps the rows to show. Memory stays bounded (the shown rows, the first 50 UCS-2 rows, a bounded segment
 * cache, one chunk of rows).
 */
export class BatchPreviewer {
  private readonly want: Set<number>;
  private readonly segmented: boolean;
  private readonly price: SegmentPrice | null;
  private readonly counter = new SegmentCounter();
  private readonly tally = new SegmentTally();
  private readonly messages: PreviewMessage[] = [];
  private readonly skippedByReason: Record<string, number> = {};
  private skipped = 0;
  private chunk: Array<{ row: number; line: number; to: string; rendered: Rendered }> = [];
  private lines = { first: 0, last: 0 };

  /** A previewer for `req`. @throws NotFoundError for an unknown tenant (the route is read for the price). */
  static async open(ctx: CoreContext, req: PreviewRequest, template: CompiledTemplate): Promise<BatchPreviewer> {
    const opts = req.preview ?? {};
    const segmented = countsSegments(req.channel, template.source);
    const base = !segmented ? null : opts.price !== undefined ? opts.price : await routePrice(ctx, req.tenantId, req.channel);
    return new BatchPreviewer(ctx, req, segmented, base);
  }

  private constructor(
    private readonly ctx: CoreContext,
    private readonly req: PreviewRequest,
    segmented: boolean,
    base: SegmentPrice | null,
  ) {
    const opts = req.preview ?? {};
    this.want = new Set(opts.lines ?? []);
    this.segmented = segmented;
    this.price = base && opts.currency ? { ...base, currency: opts.currency } : base;
  }

  /** One row, as validation read it: data row, file line, normalised recipient, rendered content. */
  async add(row: number, line: number, to: string, rendered: Rendered): Promise<void> {
    this.lines.first ||= line;
    this.lines.last = line;
    this.chunk.push({ row, line, to, rendered });
    if (this.chunk.length >= LOOKUP_CHUNK) await this.flush();
  }

  /**
   * The preview, once every row was added.
   * @throws UsageError naming `--row` for a line that is not where a data row starts.
   */
  async finish(): Promise<BatchPreview> {
    await this.flush();
    const missing = [...this.want].filter((l) => !this.messages.some((m) => m.line === l));
    if (missing.length > 0) {
      throw new UsageError(
        `--row ${missing[0]}: no data row starts on line ${missing[0]} of --csv ${this.req.csvPath} (data rows are on lines ${this.lines.first}-${this.lines.last}; line 1 is the header)`,
      );
    }
    const { channel } = this.req;
    return { channel, messages: this.messages, skippedByReason: this.skippedByReason, skipped: this.skipped, segments: this.segmented ? this.tally.totals(this.price) : null };
  }

  private async flush(): Promise<void> {
    const { channel } = this.req;
    const reasons = await suppressionReasons(this.ctx, this.req.tenantId, channel, this.chunk.map((p) => p.to));
    this.chunk.forEach((p, k) => {
      const reason = reasons[k];
      const skip = reason == null ? null : `suppressed: ${reason}`;
      if (skip) {
        this.skipped++;
        this.skippedByReason[skip] = (this.skippedByReason[skip] ?? 0) + 1;
      }
      const show = p.row === 1 || this.want.has(p.line);
      const text = channel === 'email' ? p.rendered.text : phoneBody(p.rendered);
      const info = this.segmented && (show || !skip) ? this.counter.info(text) : null;
      if (info && !skip) this.tally.add(p.row, p.line, info);
      if (!show) return;
      this.messages.push({
        row: p.row,
        line: p.line,
        recipient: p.to,
        subject: channel === 'email' ? (p.rendered.subject ?? '') : null,
        text,
        html: channel === 'email' ? (p.rendered.html ?? null) : null,
        skipReason: skip,
        segments: info && { ...info, estimatedCost: estimateCost(info.segmentCount, this.price), currency: this.price?.currency ?? null },
      });
    });
    this.chunk = [];
  }
}

/**
 * Segment totals of a stored batch's sent rows, re-rendered from the ledger (each row's values and the batch's
 * template as stored), with the estimated cost at the route's price: what a real send's summary shows. Null for
 * e-mail and whatsapp templates, or an unknown batch.
 */
export async function sentSegments(ctx: CoreContext, batchId: string): Promise<SegmentTotals | null> {
  const b = await findBatchRow(ctx, batchId);
  if (!b) return null;
  const source = JSON.parse(b.template) as TemplateSource;
  if (!countsSegments(b.channel, source)) return null;
  const template = compileTemplate(source);
  const counter = new SegmentCounter();
  const tally = new SegmentTally();
  const rows = iterateSentValues(ctx, batchId);
  // (A row that was sent rendered then; the same template and values render the same now.)
  for await (const r of rows) tally.add(r.row_no, r.line_no, counter.info(phoneBody(template.render(JSON.parse(r.vars) as Record<string, string>))));
  return tally.totals(await routePrice(ctx, b.tenant_id, b.channel));
}
