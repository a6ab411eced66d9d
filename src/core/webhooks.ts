/**
 * The webhook routes of `events serve`, without HTTP (DESIGN §6b): each takes a request (method, path and query,
 * headers, raw body) and returns the answer. The HTTP server (`src/cli/events-server.ts`) only moves bytes.
 *
 * - `POST /hooks/<tenant|system>/<channel>/<name>`: the config of that ref; its kind decides the provider:
 *   `sendgrid` (Event Webhook), `twilio`/`twilio-whatsapp` (status callbacks, inbound messages),
 *   `meta-whatsapp` (statuses, inbound messages; `GET` for the subscription handshake), `ses` (SNS).
 * - `POST|GET /hooks/meta` and `POST /hooks/twilio`: one URL for many tenants; the config is found from the
 *   payload (`phone_number_id`; `AccountSid` + our number), and each config's own secret must verify.
 * - `GET|POST /unsubscribe/<token>`: one-click unsubscribe (RFC 8058): POST suppresses, GET only shows a page.
 * A request whose signature is missing or wrong is refused (401/403) before anything is stored; accepted events
 * are committed ({@link ingestEvents}) before the 2xx answer.
 */
import type { CoreContext } from './context.js';
import { recordAudit } from './audit.js';
import { configSecrets, getProvider, listProviders, type ProviderConfig } from './providers.js';
import type { ActiveKey } from './vault.js';
import { ingestEvents, UNSUBSCRIBE_LINK, type EventSource, type IngestResult } from './events.js';
import { unsubscribeKey, verifyUnsubscribeToken } from './unsubscribe.js';
import { getTenant } from './tenants.js';
import { NotFoundError, UsageError } from '../errors.js';
import { selectProviderConfigsVersion } from '../store/repos/events.js';
import { WebhookRejection, type ProviderEvent } from '../providers/webhooks/types.js';
import { loadSendGridVerifier, parseSendGridEvents, verifySendGridSignature, SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER } from '../providers/webhooks/sendgrid.js';
import { isTwilioInbound, loadTwilioValidators, parseTwilioEvent, parseTwilioForm, twilioOwnNumber, verifyTwilioSignature, TWILIO_SIGNATURE_HEADER, type TwilioParams } from '../providers/webhooks/twilio.js';
import { META_SIGNATURE_HEADER, metaSignatureMatches, parseMetaBody, parseMetaChanges } from '../providers/webhooks/meta.js';
import { confirmSnsSubscription, parseSesEvent, parseSnsBody, parseSnsNotification, verifySnsMessage, type SnsMessage } from '../providers/webhooks/sns.js';

/** A request as the HTTP layer received it. */
export interface HookRequest {
  method: string;
  /** Path and query exactly as requested, e.g. `/hooks/acme/sms/twilio?sb_tenant=acme`. */
  url: string;
  /** Header values by lower-case name. */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** The answer, and what the log line says about it. */
export interface HookReply {
  status: number;
  contentType: string;
  body: string;
  /** The tenant the request was for, when known. */
  tenantId: string | null;
  /** One line: what was stored, or why the request was refused (never a secret). */
  result: string;
}

/** Settings of the receiver. */
export interface WebhookOptions {
  /** The public base URL (Twilio signs the full URL it requested). */
  publicUrl: string | null;
  /** How far a signed timestamp (SendGrid) may be from now, in ms. */
  toleranceMs: number;
  /** The SNS certificate cache folder. */
  snsCertCache: string;
  /** The master key: opens the configs' secrets and keys the unsubscribe tokens. */
  key: ActiveKey;
}

/** Counts since start, for the shutdown line and `/healthz`. */
export interface WebhookStats {
  requests: number;
  stored: number;
  duplicates: number;
  /** Requests refused for a missing or wrong signature, a stale timestamp, an unknown topic or token. */
  rejected: number;
  failed: number;
}

/** Provider kinds with webhooks, and the one kind that has none to offer (SNS SMS: CloudWatch Logs only). */
export const WEBHOOK_KINDS: ReadonlySet<string> = new Set(['sendgrid', 'ses', 'twilio', 'twilio-whatsapp', 'meta-whatsapp']);

interface Loaded {
  config: ProviderConfig;
  /** Null when the config's secrets do not open (its requests are refused; others still work). */
  secrets: Record<string, string> | null;
}

const header = (req: HookRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

const json = (status: number, body: unknown, tenantId: string | null, result: string): HookReply => ({ status, contentType: 'application/json; charset=utf-8', body: JSON.stringify(body), tenantId, result });
const TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>';

function sourceOf(c: ProviderConfig, extra: Partial<EventSource> = {}): EventSource {
  return { ref: c.ref, kind: c.kind, tenantId: c.tenantId, channel: c.channel, settings: c.settings, ...extra };
}

function summary(r: IngestResult): string {
  const parts = [`stored ${r.stored}`, `duplicates ${r.duplicates}`];
  if (r.suppressed) parts.push(`suppressed ${r.suppressed}`);
  if (r.lifted) parts.push(`lifted ${r.lifted}`);
  if (r.settled) parts.push(`settled ${r.settled}`);
  return parts.join(', ');
}

/** The receiver's routes over one store (see the module docs). */
export class Webhooks {
  readonly stats: WebhookStats = { requests: 0, stored: 0, duplicates: 0, rejected: 0, failed: 0 };
  private loaded: Loaded[] = [];
  private version = '';
  private readonly unsubKey: Buffer;

  constructor(
    private readonly ctx: CoreContext,
    private readonly opts: WebhookOptions,
  ) {
    this.unsubKey = unsubscribeKey(opts.key.key);
  }

  /** Loads the signature libraries the store's configs need (the twilio SDK, @sendgrid/eventwebhook) before the first request. */
  async preload(): Promise<void> {
    const kinds = new Set((await this.configs()).map((l) => l.config.kind));
    await Promise.all([
      kinds.has('twilio') || kinds.has('twilio-whatsapp') ? loadTwilioValidators() : undefined,
      kinds.has('sendgrid') ? loadSendGridVerifier() : undefined,
    ]);
  }

  /** Configs of webhook kinds with their secrets, reloaded when a config was added, changed or removed. */
  private async configs(): Promise<Loaded[]> {
    const version = await selectProviderConfigsVersion(this.ctx.sql);
    if (version !== this.version) {
      const loaded: Loaded[] = [];
      for (const config of (await listProviders(this.ctx)).filter((c) => WEBHOOK_KINDS.has(c.kind))) {
        try {
          loaded.push({ config, secrets: await configSecrets(this.ctx, this.opts.key, config) });
        } catch {
          loaded.push({ config, secrets: null });
        }
      }
      this.loaded = loaded;
      this.version = version;
    }
    return this.loaded;
  }

  /** Runs a route, turning refusals and failures into answers and counting them. */
  async handle(route: () => Promise<HookReply>): Promise<HookReply> {
    this.stats.requests++;
    try {
      return await route();
    } catch (err) {
      if (err instanceof WebhookRejection) {
        if (err.status === 401 || err.status === 403) this.stats.rejected++;
        return json(err.status, { error: err.message }, null, `rejected: ${err.message}`);
      }
      if (err instanceof NotFoundError || err instanceof UsageError) {
        this.stats.rejected++;
        return json(404, { error: 'no such webhook' }, null, `rejected: ${err.message}`);
      }
      this.stats.failed++;
      const code = (err as { code?: string }).code;
      // A busy store is worth a retry by the provider; so is anything else that went wrong on our side.
      return json(code === 'SQLITE_BUSY' ? 503 : 500, { error: 'not stored; try again' }, null, `failed: ${(err as Error).message}`);
    }
  }

  private async ingest(source: EventSource, events: ProviderEvent[]): Promise<IngestResult> {
    const r = await ingestEvents(this.ctx, source, events);
    this.stats.stored += r.stored;
    this.stats.duplicates += r.duplicates;
    return r;
  }

  private async find(ref: string): Promise<Loaded> {
    const l = (await this.configs()).find((x) => x.config.ref === ref);
    if (!l) {
      const c = await getProvider(this.ctx, ref); // NotFoundError (404) for no such config
      throw new WebhookRejection(404, `${ref} is a ${c.kind} config: that kind sends no webhooks`);
    }
    if (!l.secrets) throw new WebhookRejection(403, `the secrets of ${ref} do not open with this master key`);
    return l;
  }

  /** `POST|GET /hooks/<ref>`. */
  configHook(ref: string, req: HookRequest): Promise<HookReply> {
    return this.handle(async () => {
      const l = await this.find(ref);
      const c = l.config;
      if (req.method === 'GET') {
        if (c.kind !== 'meta-whatsapp') throw new WebhookRejection(405, 'only POST');
        return this.metaHandshake(req, [l]);
      }
      switch (c.kind) {
        case 'sendgrid':
          return this.sendgrid(l, req);
        case 'twilio':
        case 'twilio-whatsapp':
          return this.twilio(l, req, parseTwilioForm(req.body));
        case 'meta-whatsapp':
          return this.meta(req, [l]);
        case 'ses':
          return this.sns(l, req);
        default:
          throw new WebhookRejection(404, `${ref} is a ${c.kind} config: that kind sends no webhooks`);
      }
    });
  }

  private async sendgrid(l: Loaded, req: HookRequest): Promise<HookReply> {
    const c = l.config;
    const publicKey = c.settings.eventWebhookPublicKey;
    if (typeof publicKey !== 'string' || !publicKey) throw new WebhookRejection(403, `${c.ref} has no eventWebhookPublicKey setting: its events cannot be verified`);
    await verifySendGridSignature({
      publicKey,
      body: req.body,
      signature: header(req, SENDGRID_SIGNATURE_HEADER),
      timestamp: header(req, SENDGRID_TIMESTAMP_HEADER),
      nowMs: this.ctx.clock.now().getTime(),
      toleranceMs: this.opts.toleranceMs,
    });
    const r = await this.ingest(sourceOf(c), parseSendGridEvents(req.body));
    return json(200, r, c.tenantId, summary(r));
  }

  private async twilio(l: Loaded, req: HookRequest, params: TwilioParams): Promise<HookReply> {
    const c = l.config;
    if (!this.opts.publicUrl) throw new WebhookRejection(403, 'no public URL is known: Twilio signs the full URL it requested (set one with `events serve --public-url`)');
    const url = `${this.opts.publicUrl}${req.url}`;
    await verifyTwilioSignature({ authToken: l.secrets!.authToken ?? '', signature: header(req, TWILIO_SIGNATURE_HEADER), url, body: req.body, params });
    const query = new URL(url).searchParams;
    const r = await this.ingest(sourceOf(c), parseTwilioEvent(params, query));
    return { status: 200, contentType: 'text/xml; charset=utf-8', body: TWIML_EMPTY, tenantId: c.tenantId, result: summary(r) };
  }

  /** `POST /hooks/twilio`: the config is the Twilio config of the request's account and number (or messaging service). */
  twilioShared(req: HookRequest): Promise<HookReply> {
    return this.handle(async () => {
      const params = parseTwilioForm(req.body);
      const one = (k: string) => {
        const v = params[k];
        return Array.isArray(v) ? v[0] : v;
      };
      const account = one('AccountSid');
      const number = twilioOwnNumber(params);
      const service = one('MessagingServiceSid');
      const whatsapp = /^whatsapp:/i.test(one(isTwilioInbound(params) ? 'To' : 'From') ?? '');
      const matches = (await this.configs()).filter(
        (x) =>
          x.config.kind === (whatsapp ? 'twilio-whatsapp' : 'twilio') &&
          x.config.settings.accountSid === account &&
          ((number !== undefined && String(x.config.settings.from ?? '').replace(/^whatsapp:/i, '') === number) ||
            (service !== undefined && x.config.settings.messagingServiceSid === service)),
      );
      if (matches.length === 0) throw new WebhookRejection(404, `no Twilio config for account ${account ?? '(none)'} and number ${number ?? '(none)'}`);
      if (matches.length > 1) throw new WebhookRejection(409, `${matches.length} Twilio configs match account ${account} and number ${number}: give each its own URL /hooks/<ref>`);
      const l = matches[0]!;
      if (!l.secrets) throw new WebhookRejection(403, `the secrets of ${l.config.ref} do not open with this master key`);
      return this.twilio(l, req, params);
    });
  }

  private metaHandshake(req: HookRequest, candidates: Loaded[]): HookReply {
    const q = new URL(req.url, 'http://localhost').searchParams;
    const token = q.get('hub.verify_token');
    const challenge = q.get('hub.challenge') ?? '';
    const match = candidates.find((l) => l.secrets?.webhookVerifyToken && token !== null && l.secrets.webhookVerifyToken === token);
    if (q.get('hub.mode') !== 'subscribe' || !match) throw new WebhookRejection(403, 'subscription handshake: wrong hub.mode or hub.verify_token');
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(challenge)) throw new WebhookRejection(400, 'subscription handshake: malformed hub.challenge');
    return { status: 200, contentType: 'text/plain; charset=utf-8', body: challenge, tenantId: match.config.tenantId, result: `subscription verified for ${match.config.ref}` };
  }

  /**
   * Meta statuses and messages for `candidates`: each change goes to the candidate whose `phoneNumberId` it
   * names (changes for other numbers are ignored), and the body's signature must verify with the app secret of
   * every config that receives a change.
   */
  private async meta(req: HookRequest, candidates: Loaded[]): Promise<HookReply> {
    const changes = parseMetaChanges(parseMetaBody(req.body));
    const signature = header(req, META_SIGNATURE_HEADER);
    if (!signature) throw new WebhookRejection(401, 'no X-Hub-Signature-256 header');
    const work: Array<{ l: Loaded; events: ProviderEvent[] }> = [];
    let ignored = 0;
    for (const ch of changes) {
      const l = candidates.find((x) => String(x.config.settings.phoneNumberId) === ch.phoneNumberId);
      if (!l) {
        ignored += ch.events.length;
        continue;
      }
      const appSecret = l.secrets?.appSecret;
      if (!appSecret) throw new WebhookRejection(403, `${l.config.ref} has no appSecret secret: its events cannot be verified`);
      if (!metaSignatureMatches(appSecret, req.body, signature)) throw new WebhookRejection(403, `bad X-Hub-Signature-256 for ${l.config.ref}`);
      const same = work.find((w) => w.l === l);
      if (same) same.events.push(...ch.events);
      else work.push({ l, events: [...ch.events] });
    }
    // Nothing for a config of ours: still only a body signed with one of our app secrets gets a 200.
    if (work.length === 0 && !candidates.some((l) => l.secrets?.appSecret && metaSignatureMatches(l.secrets.appSecret, req.body, signature))) {
      throw new WebhookRejection(403, 'bad X-Hub-Signature-256');
    }
    const total: IngestResult = { stored: 0, duplicates: 0, suppressed: 0, lifted: 0, settled: 0 };
    for (const w of work) {
      const r = await this.ingest(sourceOf(w.l.config), w.events);
      for (const k of Object.keys(total) as Array<keyof IngestResult>) total[k] += r[k];
    }
    const tenants = [...new Set(work.map((w) => w.l.config.tenantId ?? 'system'))];
    return json(200, { ...total, ignored }, tenants.length === 1 ? (work[0]!.l.config.tenantId ?? null) : null, `${summary(total)}${ignored ? `, ignored ${ignored} (other numbers)` : ''}${tenants.length > 1 ? ` [${tenants.join(', ')}]` : ''}`);
  }

  /** `GET|POST /hooks/meta`: every Meta config is a candidate (see {@link meta}). */
  metaShared(req: HookRequest): Promise<HookReply> {
    return this.handle(async () => {
      const candidates = (await this.configs()).filter((l) => l.config.kind === 'meta-whatsapp');
      return req.method === 'GET' ? this.metaHandshake(req, candidates) : this.meta(req, candidates);
    });
  }

  private async sns(l: Loaded, req: HookRequest): Promise<HookReply> {
    const c = l.config;
    const m = parseSnsBody(req.body);
    const declared = header(req, 'x-amz-sns-message-type');
    if (declared !== undefined && declared !== m.Type) throw new WebhookRejection(400, `x-amz-sns-message-type ${declared} does not match Type ${String(m.Type)}`);
    const topics = String(c.settings.snsTopicArn ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    if (topics.length === 0) throw new WebhookRejection(403, `${c.ref} has no snsTopicArn setting: it accepts no SNS topic`);
    if (!topics.includes(String(m.TopicArn))) throw new WebhookRejection(403, `TopicArn ${String(m.TopicArn)} is not a topic ${c.ref} accepts`);
    await verifySnsMessage(m, { cacheDir: this.opts.snsCertCache, now: this.ctx.clock.now() });
    if (m.Type === 'SubscriptionConfirmation') {
      await confirmSnsSubscription(m, typeof c.settings.snsEndpoint === 'string' ? c.settings.snsEndpoint : undefined);
      await this.ctx.sql.tx((t) => recordAudit(this.ctx, t, 'sns.subscription.confirm', c.ref, c.tenantId, ['TopicArn']));
      return json(200, { confirmed: String(m.TopicArn) }, c.tenantId, `subscription to ${String(m.TopicArn)} confirmed`);
    }
    if (m.Type !== 'Notification') return json(200, { ignored: String(m.Type) }, c.tenantId, `ignored ${String(m.Type)}`);
    const r = await this.ingest(sourceOf(c), parseSnsNotification(m));
    return json(200, r, c.tenantId, summary(r));
  }

  /**
   * `GET|POST /unsubscribe/<token>`. GET answers a confirmation page and changes nothing (mail scanners fetch
   * links); POST with `List-Unsubscribe=One-Click` (RFC 8058 §3.2) suppresses the recipient for the tenant and
   * channel at once. A token that does not verify gets 403.
   */
  unsubscribe(token: string, req: HookRequest): Promise<HookReply> {
    return this.handle(async () => {
      const target = await verifyUnsubscribeToken(this.ctx, this.unsubKey, token);
      if (!target) {
        this.stats.rejected++;
        return page(403, 'Link not valid', 'This unsubscribe link is not valid. Use the link from the message as it was sent.', null, 'rejected: token does not verify');
      }
      const tenant = await getTenant(this.ctx, target.tenantId);
      const shown = maskAddress(target.recipient);
      if (req.method === 'GET') {
        return page(
          200,
          'Unsubscribe',
          `Stop messages from ${escapeHtml(tenant.name)} to ${escapeHtml(shown)}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form><p>`,
          target.tenantId,
          'shown confirmation page',
        );
      }
      if (!oneClick(req)) return page(400, 'Unsubscribe', 'The request did not ask to unsubscribe (List-Unsubscribe=One-Click).', target.tenantId, 'rejected: no List-Unsubscribe=One-Click');
      const now = this.ctx.clock.now();
      const r = await this.ingest({ ref: UNSUBSCRIBE_LINK, kind: 'unsubscribe', tenantId: target.tenantId, channel: target.channel, settings: {}, settles: false }, [
        {
          key: `unsubscribe:${target.batchId}/${target.rowNo}:${now.toISOString()}`,
          type: 'unsubscribed',
          providerType: 'one-click',
          occurredAt: now,
          recipient: target.recipient.toLowerCase(),
          messageId: target.messageId,
          correlation: { tenantId: target.tenantId, batchId: target.batchId, rowNo: target.rowNo },
          detail: 'one-click unsubscribe (List-Unsubscribe-Post)',
          action: { kind: 'suppress', reason: 'unsubscribed (one-click link)' },
          payload: { batchId: target.batchId, row: target.rowNo },
        },
      ]);
      return page(200, 'Unsubscribed', `${escapeHtml(shown)} will get no more messages from ${escapeHtml(tenant.name)}.`, target.tenantId, `unsubscribed ${target.tenantId}/${target.channel} (${summary(r)})`);
    });
  }
}

/** Whether a POST body says `List-Unsubscribe=One-Click` (form-urlencoded or multipart/form-data). */
function oneClick(req: HookRequest): boolean {
  const type = header(req, 'content-type') ?? '';
  const text = req.body.toString('utf8');
  if (/multipart\/form-data/i.test(type)) return /name="List-Unsubscribe"\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n/.test(text);
  return new URLSearchParams(text).get('List-Unsubscribe') === 'One-Click';
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** `pat@example.com` → `p**@example.com`; phone numbers keep their last 3 digits. */
function maskAddress(a: string): string {
  const at = a.indexOf('@');
  if (at > 0) return `${a[0]}${'*'.repeat(Math.max(2, at - 1))}${a.slice(at)}`;
  return `${'*'.repeat(Math.max(0, a.length - 3))}${a.slice(-3)}`;
}

function page(status: number, title: string, html: string, tenantId: string | null, result: string): HookReply {
  const body = `<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>${title}</title></head><body><h1>${title}</h1><p>${html}</p></body></html>`;
  return { status, contentType: 'text/html; charset=utf-8', body, tenantId, result };
}

/** What `events import` did. */
export interface ImportResult extends IngestResult {
  provider: string;
  /** Request bodies (or lines) read from the file. */
  bodies: number;
}

/**
 * `events import --provider <ref> FILE`: the events of a file, parsed as the route of that config parses a
 * request, without HTTP and without signatures; idempotent (events stored before are duplicates). The file holds
 * one request body (a SendGrid JSON array, a Meta or SNS JSON object), or one per line (JSON Lines; Twilio:
 * form-encoded bodies, where the correlation fields `sb_batch`/`sb_row` may be among the parameters). An SES
 * event without its SNS envelope is accepted too.
 * @throws NotFoundError (ref), UsageError (a kind without webhooks; a body that does not parse, naming its line).
 */
export async function importEvents(ctx: CoreContext, ref: string, text: string, file: string): Promise<ImportResult> {
  const c = await getProvider(ctx, ref);
  if (!WEBHOOK_KINDS.has(c.kind)) throw new UsageError(`--provider ${ref} is a ${c.kind} config: that kind has no events to import`);
  let bodies: Array<{ line: number; text: string }>;
  const whole = text.trim();
  try {
    JSON.parse(whole);
    bodies = [{ line: 1, text: whole }];
  } catch {
    bodies = text.split('\n').flatMap((l, i) => (l.trim() ? [{ line: i + 1, text: l.trim() }] : []));
  }
  const events: ProviderEvent[] = [];
  for (const b of bodies) {
    try {
      events.push(...eventsOfBody(c, b.text));
    } catch (err) {
      throw new UsageError(`${file} line ${b.line}: ${(err as Error).message}`);
    }
  }
  const total: ImportResult = { provider: ref, bodies: bodies.length, stored: 0, duplicates: 0, suppressed: 0, lifted: 0, settled: 0 };
  // One transaction per 1000 events, as a large request would be.
  for (let i = 0; i < events.length; i += 1000) {
    const r = await ingestEvents(ctx, sourceOf(c), events.slice(i, i + 1000));
    for (const k of ['stored', 'duplicates', 'suppressed', 'lifted', 'settled'] as const) total[k] += r[k];
  }
  return total;
}

/** The events of one request body for config `c` (see {@link importEvents}). */
function eventsOfBody(c: ProviderConfig, text: string): ProviderEvent[] {
  switch (c.kind) {
    case 'sendgrid':
      return parseSendGridEvents(text.startsWith('{') ? `[${text}]` : text);
    case 'twilio':
    case 'twilio-whatsapp': {
      const params: TwilioParams = text.startsWith('{') ? (JSON.parse(text) as TwilioParams) : parseTwilioForm(text);
      return parseTwilioEvent(params, new URLSearchParams());
    }
    case 'meta-whatsapp':
      return parseMetaChanges(parseMetaBody(text))
        .filter((ch) => ch.phoneNumberId === String(c.settings.phoneNumberId))
        .flatMap((ch) => ch.events);
    case 'ses': {
      const o = JSON.parse(text) as SnsMessage;
      if (typeof o.Type === 'string') return o.Type === 'Notification' ? parseSnsNotification(parseSnsBody(text)) : [];
      return parseSesEvent(o, null, null);
    }
    default:
      return [];
  }
}
