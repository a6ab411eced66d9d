/**
 * `switchboard events serve|import|list|public-url` and `switchboard message show`: delivery status (DESIGN §6b).
 * The HTTP server (Fastify) is imported only by `events serve`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import type { Io } from './context.js';
import { action, examples, intFlag } from './command.js';
import { parseDuration, parseSince } from '../core/time.js';
import { checkPublicUrl, publicUrl, setPublicUrl } from '../core/tracking.js';
import { listEvents, messageTimeline } from '../core/events.js';
import { EVENT_TYPES, type EventType } from '../providers/webhooks/types.js';
import { requireKey } from '../core/vault.js';
import { OperationFailed, UsageError } from '../errors.js';
import { stamp } from './output.js';
import { eventJson, messageJson } from './json.js';
import type { ImportResult } from '../core/webhooks.js';
import type { RequestLog } from './events-server.js';

/** Default `--listen`. */
const DEFAULT_LISTEN = '127.0.0.1:8787';
/** Default `--body-limit`: 5 MB. */
const DEFAULT_BODY_LIMIT = 5 * 1024 * 1024;

/**
 * Parses a byte size: `5mb`, `512kb`, `1048576`. @throws UsageError naming `flag`.
 */
export function parseBytes(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|mb)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${flag} ${text}: expected a size such as 5mb, 512kb or 1048576`);
  const n = Math.round(Number(m[1]) * { b: 1, kb: 1024, mb: 1024 * 1024 }[(m[2] ?? 'b').toLowerCase() as 'b' | 'kb' | 'mb']);
  if (n < 1024 || n > 100 * 1024 * 1024) throw new UsageError(`${flag} ${text}: expected 1kb to 100mb`);
  return n;
}

/** Parses `host:port` (`[::1]:8787` for IPv6). @throws UsageError naming `--listen`. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen ${text}: expected host:port, e.g. 127.0.0.1:8787`);
  return { host: (m[1] ?? m[2])!, port };
}

/** The SNS certificate cache folder: `$XDG_CACHE_HOME/switchboard/sns-certs` (default `~/.cache/switchboard/sns-certs`). */
function defaultCertCache(env: NodeJS.ProcessEnv): string {
  return path.join(env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), '.cache'), 'switchboard', 'sns-certs');
}

/** `events import --json`: `{provider, file, bodyCount, storedCount, duplicateCount, suppressedCount, liftedCount, settledCount}`. */
function importJson(r: ImportResult, file: string) {
  return {
    provider: r.provider,
    file,
    bodyCount: r.bodies,
    storedCount: r.stored,
    duplicateCount: r.duplicates,
    suppressedCount: r.suppressed,
    liftedCount: r.lifted,
    settledCount: r.settled,
  };
}

/**
 * One request-log line of `events serve` on stdout: tab-separated, starting with an ISO 8601 time stamp (local
 * with its offset, or UTC with `--utc`), then method, route, HTTP status, tenant, time taken and result.
 */
function requestLine(e: RequestLog, utc: boolean): string {
  return `${stamp(new Date(e.answeredAt), utc)}\t${e.method}\t${e.route}\t${e.statusCode}\t${e.tenantId ?? '-'}\t${e.elapsedMs}ms\t${e.result}\n`;
}

/** Registers `events` and `message`. */
export function registerEvents(program: Command, io: Io): void {
  const events = program.command('events').description('delivery status: receive provider webhooks, import and list events');
  examples(events, [
    'switchboard events serve --public-url https://hooks.example.com',
    'switchboard events list --tenant acme-dental --type bounced --since 7d',
    'switchboard events import --provider acme-dental/email/sendgrid events.json',
  ]);

  examples(
    events
      .command('serve')
      .description('receive provider webhooks (SendGrid, Twilio, Meta WhatsApp, SES via SNS) and one-click unsubscribes; one dated log line per request on stdout (JSON Lines with --json); stops cleanly on SIGTERM')
      .option('--listen <host:port>', 'address to listen on (put a TLS proxy in front)', DEFAULT_LISTEN)
      .option('--public-url <url>', 'the https URL providers and recipients reach this server under; stored, so later sends carry callback and unsubscribe URLs')
      .option('--body-limit <size>', 'largest request body (413 above it)', '5mb')
      .option('--sns-cert-cache <dir>', 'folder of SNS signing certificates, one PEM file per certificate URL (default ~/.cache/switchboard/sns-certs)')
      .option('--signature-tolerance <duration>', 'how far a signed timestamp (SendGrid) may be from now', '5m')
      .option('--request-timeout <duration>', 'most time to receive one request', '30s')
      .action(
        action<{ listen: string; publicUrl?: string; bodyLimit: string; snsCertCache?: string; signatureTolerance: string; requestTimeout: string }>(io, async (cli, _args, opts) => {
          const listen = parseListen(opts.listen);
          const bodyLimit = opts.bodyLimit === '5mb' ? DEFAULT_BODY_LIMIT : parseBytes(opts.bodyLimit, '--body-limit');
          const toleranceMs = parseDuration(opts.signatureTolerance, '--signature-tolerance');
          const requestTimeoutMs = parseDuration(opts.requestTimeout, '--request-timeout');
          const given = opts.publicUrl === undefined ? undefined : checkPublicUrl(opts.publicUrl, '--public-url');
          const base = await cli.core();
          const ctx = { ...base, actor: `events-serve:${base.actor}` };
          const key = await requireKey(ctx);
          if (given !== undefined) await setPublicUrl(ctx, given);
          const url = await publicUrl(ctx);
          const { Webhooks } = await import('../core/webhooks.js');
          const { startEventsServer } = await import('./events-server.js');
          const webhooks = new Webhooks(ctx, { publicUrl: url.url, toleranceMs, snsCertCache: path.resolve(opts.snsCertCache ?? defaultCertCache(cli.io.env)), key });
          await webhooks.preload();
          let server;
          try {
            server = await startEventsServer({
              ...listen,
              bodyLimit,
              requestTimeoutMs,
              webhooks,
              now: () => ctx.clock.now(),
              log: (e) => {
                if (cli.out.opts.json) cli.out.jsonLine(e);
                else cli.io.stdout.write(requestLine(e, cli.out.opts.utc === true));
              },
            });
          } catch (err) {
            throw new OperationFailed(`--listen ${opts.listen}: ${(err as Error).message}`);
          }
          cli.out.info(`events serve: listening on ${server.url}; public URL ${url.url ? `${url.url}${url.source === 'env' ? ' (SWITCHBOARD_PUBLIC_URL)' : ''}` : 'not set (Twilio callbacks cannot be verified and sends carry no callback or unsubscribe URLs)'}`);
          if (url.url?.startsWith('http:') && !/^http:\/\/(127\.|localhost|\[::1\])/.test(url.url)) cli.out.warn(`public URL ${url.url} is not https: mailbox providers require https for one-click unsubscribe`);
          const signal = await new Promise<NodeJS.Signals>((resolve) => {
            process.once('SIGTERM', () => resolve('SIGTERM'));
            process.once('SIGINT', () => resolve('SIGINT'));
          });
          cli.out.info(`events serve: ${signal}: finishing requests in flight`);
          await server.close();
          const s = webhooks.stats;
          cli.out.info(`events serve: stopped after ${s.requests} requests: ${s.stored} events stored, ${s.duplicates} duplicates, ${s.rejected} rejected, ${s.failed} failed`);
        }),
      ),
    [
      'switchboard events serve --public-url https://hooks.example.com',
      'switchboard events serve --listen 127.0.0.1:8787 --sns-cert-cache /var/lib/switchboard/sns-certs --json',
    ],
  );

  examples(
    events
      .command('import <file>')
      .description('store the events of a file as the webhook of that config would (no HTTP, no signatures): a SendGrid JSON array, Meta or SNS JSON, or one body per line; events stored before are skipped')
      .option('--provider <ref>', 'the config the events belong to (<tenant|system>/<channel>/<name>)')
      .action(
        action<{ provider?: string }>(io, async (cli, [file], opts) => {
          if (!opts.provider) throw new UsageError('--provider is required (the config the events belong to, e.g. acme-dental/email/sendgrid)');
          let text: string;
          try {
            text = fs.readFileSync(path.resolve(file!), 'utf8');
          } catch (err) {
            throw new UsageError(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
          }
          const { importEvents } = await import('../core/webhooks.js');
          const r = await importEvents(await cli.core(), opts.provider, text, file!);
          cli.out.result(importJson(r, path.resolve(file!)), () => `Imported ${r.stored} events for ${r.provider} (${r.duplicates} stored before; ${r.suppressed} suppressed, ${r.lifted} lifted, ${r.settled} unknown rows settled)`);
        }),
      ),
    ['switchboard events import --provider acme-dental/email/sendgrid events.json', 'switchboard events import --provider acme-dental/sms/twilio callbacks.txt --json'],
  );

  examples(
    events
      .command('list')
      .description('list stored events, newest first')
      .option('--tenant <id>', 'only this tenant\'s')
      .option('--batch <id>', 'only this batch\'s')
      .option('--type <type>', `only this type (${EVENT_TYPES.join(', ')})`)
      .option('--provider <ref>', 'only events received for this config')
      .option('--since <when>', 'a duration such as 24h, or an ISO 8601 time')
      .option('--limit <n>', 'at most this many', '100')
      .action(
        action<{ tenant?: string; batch?: string; type?: string; provider?: string; since?: string; limit: string }>(io, async (cli, _args, opts) => {
          if (opts.type !== undefined && !(EVENT_TYPES as readonly string[]).includes(opts.type)) throw new UsageError(`--type ${opts.type}: expected one of ${EVENT_TYPES.join(', ')}`);
          const ctx = await cli.core();
          const list = await listEvents(ctx, {
            tenantId: opts.tenant,
            batchId: opts.batch,
            type: opts.type as EventType | undefined,
            provider: opts.provider,
            since: opts.since === undefined ? undefined : parseSince(opts.since, ctx.clock.now(), '--since'),
            limit: intFlag(opts.limit, '--limit', 1, 1_000_000),
          });
          cli.out.result(list.map(eventJson), () =>
            cli.out.list(
              ['RECEIVED', 'TENANT', 'PROVIDER', 'EVENT', 'RECIPIENT', 'MESSAGE ID', 'BATCH/ROW', 'DETAIL'],
              list.map((e) => [cli.out.time(e.receivedAt, true), e.tenantId, e.provider, e.type, e.recipient, e.messageId, e.batchId ? `${e.batchId}/${e.row}` : null, e.detail]),
              'No events.',
            ),
          );
        }),
      ),
    ['switchboard events list --tenant acme-dental --type bounced --since 7d', 'switchboard events list --batch b-20261123-1a2b3c4d --json'],
  );

  examples(
    events
      .command('public-url [url]')
      .description('show, set or (with --unset) remove the stored public URL; SWITCHBOARD_PUBLIC_URL overrides it for one command')
      .option('--unset', 'remove it: later sends carry no callback or unsubscribe URLs')
      .action(
        action<{ unset?: boolean }>(io, async (cli, [url], opts) => {
          if (url !== undefined && opts.unset) throw new UsageError('give a URL or --unset, not both');
          const ctx = await cli.core();
          if (url !== undefined) await setPublicUrl(ctx, checkPublicUrl(url, 'public URL'));
          if (opts.unset) await setPublicUrl(ctx, null);
          const p = await publicUrl(ctx);
          cli.out.result({ publicUrl: p.url, source: p.source }, () => (p.url ? `${p.url}${p.source === 'env' ? ' (from SWITCHBOARD_PUBLIC_URL)' : ''}` : 'No public URL: sends carry no status-callback or unsubscribe URLs.'));
        }),
      ),
    ['switchboard events public-url https://hooks.example.com', 'switchboard events public-url --json'],
  );

  const message = program.command('message').description('one message and its delivery timeline');
  examples(message, ['switchboard message show 4711', 'switchboard message show W5ur2mBnQZ6Jj8Sd9A3xLg --to pat@example.com --json']);
  examples(
    message
      .command('show <id>')
      .description('a message by its id in the message log (`log list`) or its provider message id: attempts, delivery status and events')
      .option('--to <recipient>', 'the recipient, when one provider message id covers several (a batched SendGrid request)')
      .action(
        action<{ to?: string }>(io, async (cli, [id], opts) => {
          const t = await messageTimeline(await cli.core(), id!, opts.to);
          cli.out.result(messageJson(t), () =>
            [
              cli.out.fields([
                ['message', t.id],
                ['tenant', t.tenantId],
                ['channel', t.channel],
                ['provider', t.provider],
                ['to', t.recipient],
                ['message id', t.messageId],
                ['batch/row', t.batchId ? `${t.batchId}/${t.row}` : null],
                ['sent', cli.out.time(t.sentAt, true)],
                ['status', `${t.status}${t.statusAt ? ` (${cli.out.time(t.statusAt, true)})` : ''}`],
              ]),
              ...(t.attempts.length > 1 || t.attempts.some((a) => a.status === 'failed')
                ? ['', cli.out.table(['ATTEMPT', 'TIME', 'PROVIDER', 'STATUS', 'MESSAGE ID / ERROR'], t.attempts.map((a) => [a.attempt, cli.out.time(a.createdAt, true), a.provider + (a.fallback ? ' (fallback)' : ''), a.status, a.error === null ? a.messageId : `${a.errorKind}: ${a.error}`]))]
                : []),
              '',
              t.events.length === 0 ? 'No events yet.' : cli.out.table(['TIME', 'EVENT', 'PROVIDER EVENT', 'DETAIL'], t.events.map((e) => [cli.out.time(e.occurredAt ?? e.receivedAt, true), e.type, e.providerType, e.detail])),
            ].join('\n'),
          );
        }),
      ),
    ['switchboard message show 4711', 'switchboard message show W5ur2mBnQZ6Jj8Sd9A3xLg --to pat@example.com --json'],
  );
}
