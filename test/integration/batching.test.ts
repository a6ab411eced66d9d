// Provider batching (BatchSender) and the per-provider request limiter, driven in-process through the core
// with a real SQLite store and a real local HTTP server. The batching adapter is a test kind registered
// through the documented extension point `registerKind` (the SendGrid adapter is built elsewhere): it posts
// SendGrid-shaped `personalizations` (one per message) and reads the request id from `X-Message-Id`.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sqliteCore, type SqliteTestCore } from '../helpers/core.js';
import { systemClock } from '../../src/core/context.js';
import { addTenant } from '../../src/core/tenants.js';
import { addProvider } from '../../src/core/providers.js';
import { runBatch } from '../../src/core/batch/runner.js';
import { batchItems } from '../../src/core/batch/queries.js';
import type { BatchRunHooks } from '../../src/core/batch/types.js';
import { RequestLimiter } from '../../src/core/limiter.js';
import { registerKind } from '../../src/providers/registry.js';
import { ProviderError, type AdapterConfig, type BatchItemResult, type EmailMessage, type EmailProvider } from '../../src/providers/types.js';
import { encodeKey, generateKey } from '../../src/crypto/keys.js';

interface Personalization {
  to: Array<{ email: string }>;
  subject: string;
  headers: Record<string, string>;
}

/** What the server does with the next requests: answer 202, or an error status (with optional Retry-After seconds). */
type Answer = { status: 202 } | { status: number; retryAfter?: number };

interface Server {
  url: string;
  requests: Array<{ personalizations: Personalization[]; messageId: string; at: number }>;
  script: Answer[];
  close(): Promise<void>;
}

async function startServer(): Promise<Server> {
  const s: Omit<Server, 'url' | 'close'> = { requests: [], script: [] };
  let n = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const answer = s.script.shift() ?? { status: 202 };
      if (answer.status !== 202) {
        res.writeHead(answer.status, 'retryAfter' in answer && answer.retryAfter !== undefined ? { 'Retry-After': String(answer.retryAfter) } : {});
        res.end(JSON.stringify({ errors: [{ message: `status ${answer.status}` }] }));
        return;
      }
      const parsed = JSON.parse(body) as { personalizations: Personalization[] };
      const messageId = `req-${++n}`;
      s.requests.push({ personalizations: parsed.personalizations, messageId, at: performance.now() });
      res.writeHead(202, { 'X-Message-Id': messageId });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { ...s, url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) } as Server;
}

/** The test adapter: one POST per `sendMany`, SendGrid-like error classes. */
function createBatchHttpProvider(config: AdapterConfig): EmailProvider {
  const endpoint = String(config.settings.endpoint);
  const post = async (messages: EmailMessage[]) => {
    const res = await fetch(`${endpoint}/v3/mail/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ personalizations: messages.map((m) => ({ to: [{ email: m.to }], subject: m.subject, headers: m.headers ?? {} })) }),
    });
    await res.text();
    if (res.status === 429) throw new ProviderError('rate_limited', 'too many requests', { code: '429', retryAfterMs: Number(res.headers.get('retry-after') ?? '1') * 1000 });
    if (res.status === 401) throw new ProviderError('auth', 'bad key', { code: '401' });
    if (res.status === 400) throw new ProviderError('recipient', 'bad request', { code: '400' });
    if (res.status >= 300) throw new ProviderError('transient', `HTTP ${res.status}`, { code: String(res.status) });
    return { messageId: res.headers.get('x-message-id') ?? '', acceptedAt: new Date() };
  };
  return {
    channel: 'email',
    maxBatchSize: 1000,
    send: (m) => post([m]),
    async sendMany(messages): Promise<BatchItemResult[]> {
      const r = await post(messages);
      return messages.map(() => ({ ok: true, ...r }));
    },
    verify: async () => ({ ok: true, detail: 'test' }),
    close: async () => {},
  };
}

registerKind({
  kind: 'test-batch-http',
  channels: ['email'],
  summary: 'test only: SendGrid-shaped batched requests to a local server',
  settings: { endpoint: { type: 'string', required: true, doc: 'base URL' } },
  secrets: {},
  create: async (config) => createBatchHttpProvider(config),
});

const hooks: BatchRunHooks = { owner: `${process.pid}@test`, ownerAlive: () => true };
const retry = { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 5_000 };

let dir: string;
let ctx: SqliteTestCore;
let srv: Server;

beforeAll(async () => {
  srv = await startServer();
});
afterAll(async () => {
  await srv.close();
});
beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-batching-'));
  const storePath = path.join(dir, 'sb.db');
  ctx = { ...sqliteCore(storePath), storePath, clock: systemClock, env: { SWITCHBOARD_MASTER_KEY: encodeKey(generateKey()) }, actor: 'test@host' };
  await addTenant(ctx, 'acme', 'Acme');
  await addProvider(ctx, { tenantId: 'acme', channel: 'email', kind: 'test-batch-http', name: 'bulk', priority: 1, settings: { endpoint: srv.url }, secrets: {} });
  await addProvider(ctx, { tenantId: null, channel: 'email', kind: 'outbox', settings: { dir: path.join(dir, 'outbox') }, secrets: {} });
  srv.requests.length = 0;
  srv.script.length = 0;
});
afterEach(() => {
  ctx.db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function csv(rows: number): string {
  const file = path.join(dir, `r${rows}.csv`);
  fs.writeFileSync(file, ['email,name', ...Array.from({ length: rows }, (_, i) => `u${i + 1}@example.com,N${i + 1}`)].join('\n') + '\n');
  return file;
}

function request(file: string) {
  const tpl = path.join(dir, 't.html');
  fs.writeFileSync(tpl, '<p>Hi {{name}}</p>');
  return { tenantId: 'acme', channel: 'email' as const, csvPath: file, templatePath: tpl, subject: 'Hi {{name}}', run: { retry, concurrency: 2 } };
}

describe('provider batching (sendMany)', () => {
  it('groups 2,500 rows into requests of ≤ 1000 personalizations; each row has its own state and the request id', async () => {
    const s = await runBatch(ctx, request(csv(2500)), hooks);
    expect(s).toMatchObject({ rows: 2500, sent: 2500, failed: 0, unknown: 0, pending: 0, fallback: 0 });
    expect(srv.requests.map((r) => r.personalizations.length).sort((a, b) => b - a)).toEqual([1000, 1000, 500]);
    const items = [];
    for await (const item of await batchItems(ctx, s.batchId!)) items.push(item);
    expect(items).toHaveLength(2500);
    const byRow = new Map(srv.requests.flatMap((r) => r.personalizations.map((p) => [p.headers['X-Switchboard-Batch'], { to: p.to[0]!.email, subject: p.subject, id: r.messageId }] as const)));
    expect(byRow.size).toBe(2500);
    for (const item of items) {
      const got = byRow.get(`${s.batchId}/${item.row}`);
      expect(got, `row ${item.row}`).toMatchObject({ to: item.recipient, subject: `Hi N${item.row}`, id: item.messageId });
      expect(item).toMatchObject({ state: 'sent', provider: 'acme/email/bulk', fallback: false });
    }
    const logged = ctx.db.prepare("SELECT count(*) AS n FROM messages WHERE status = 'sent' AND batch_id = ?").get(s.batchId) as { n: number };
    expect(logged.n).toBe(2500);
  });

  it('a batched request that keeps failing falls back row by row to the next provider', async () => {
    srv.script.push({ status: 503 }, { status: 503 });
    const s = await runBatch(ctx, { ...request(csv(30)), run: { retry, concurrency: 1 } }, hooks);
    expect(s).toMatchObject({ rows: 30, sent: 30, failed: 0, fallback: 30, byProvider: { 'system/email/outbox': 30 } });
    expect(srv.requests).toHaveLength(0);
    const failed = ctx.db.prepare("SELECT count(*) AS n FROM messages WHERE status = 'failed' AND provider = 'acme/email/bulk'").get() as { n: number };
    expect(failed.n).toBe(60); // 2 attempts × 30 rows recorded
    expect(fs.readdirSync(path.join(dir, 'outbox')).filter((f) => f.endsWith('.eml'))).toHaveLength(30);
  });

  it('a refused batch (one bad recipient) is retried row by row on the same provider', async () => {
    srv.script.push({ status: 400 });
    const s = await runBatch(ctx, request(csv(5)), hooks);
    expect(s).toMatchObject({ rows: 5, sent: 5, fallback: 0, byProvider: { 'acme/email/bulk': 5 } });
    expect(srv.requests.map((r) => r.personalizations.length)).toEqual([1, 1, 1, 1, 1]);
  });

  it('a 429 pauses the provider for Retry-After, then the same group is sent', async () => {
    srv.script.push({ status: 429, retryAfter: 1 });
    const t0 = performance.now();
    const s = await runBatch(ctx, request(csv(10)), hooks);
    expect(s).toMatchObject({ rows: 10, sent: 10, fallback: 0 });
    expect(srv.requests).toHaveLength(1);
    expect(srv.requests[0]!.at - t0).toBeGreaterThanOrEqual(1000);
  });
});

describe('request limiter', () => {
  it('counts a request until one second after it finished: no window holds more than `rate` of any moment between start and finish', async () => {
    const q = new RequestLimiter({ rate: 10 }, systemClock);
    const spans: Array<{ start: number; end: number }> = [];
    // Durations vary like a pool's first connections and later reused ones; the provider may count a request
    // at any moment between its start and its answer, so the worst case is checked: earlier requests counted at
    // their end, the later one at its start.
    await Promise.all(
      Array.from({ length: 25 }, (_, k) =>
        q.run(async () => {
          const start = performance.now();
          await new Promise((r) => setTimeout(r, k % 10 === 0 ? 300 : k % 3));
          spans.push({ start, end: performance.now() });
        }),
      ),
    );
    spans.sort((a, b) => a.start - b.start);
    for (const [j, s] of spans.entries()) {
      const counted = spans.slice(0, j).filter((i) => i.end > s.start - 1000).length;
      expect(counted, `request ${j} started with ${counted} others in flight or finished within the last second`).toBeLessThan(10);
    }
  });

  it('starts nothing during a pause', async () => {
    const q = new RequestLimiter({}, systemClock);
    const t0 = performance.now();
    q.pauseFor(200);
    const at = await q.run(async () => performance.now());
    expect(at - t0).toBeGreaterThanOrEqual(195);
  });

  it('caps requests in flight at `concurrency`', async () => {
    const q = new RequestLimiter({ concurrency: 3 }, systemClock);
    let now = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        q.run(async () => {
          peak = Math.max(peak, ++now);
          await new Promise((r) => setTimeout(r, 5));
          now--;
        }),
      ),
    );
    expect(peak).toBe(3);
  });
});
