// The dispatcher's one retry/fallback loop, in-process: every error class × route shape → outcome, attempts,
// fallback, the circuit and the pause reason. Real SQLite store and the real Dispatcher; the adapters are a test
// kind registered through the documented extension point `registerKind`, answering from a script; the clock is
// a fake (sleeps advance it at once and are recorded; jitter's random() is fixed).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { sqliteCore, type SqliteTestCore } from '../helpers/core.js';
import type { Clock } from '../../src/core/context.js';
import { addTenant } from '../../src/core/tenants.js';
import { addProvider } from '../../src/core/providers.js';
import { Dispatcher } from '../../src/core/dispatch.js';
import { registerKind } from '../../src/providers/registry.js';
import { ProviderError, type BatchItemResult, type EmailMessage, type ProviderErrorKind } from '../../src/providers/types.js';
import { encodeKey, generateKey } from '../../src/crypto/keys.js';

/** One scripted answer: sent, or an error of a class (rate_limited carries Retry-After 2 s). */
type Answer = 'ok' | ProviderErrorKind;

/** Per provider name: the answers still to give (the last one repeats), and every request seen (messages per request). */
const scripts = new Map<string, Answer[]>();
const calls = new Map<string, number[]>();

function answer(name: string, size: number): void {
  const list = scripts.get(name) ?? ['ok'];
  const a = list.length > 1 ? list.shift()! : list[0]!;
  calls.set(name, [...(calls.get(name) ?? []), size]);
  if (a === 'ok') return;
  throw new ProviderError(a, `${a} from ${name}`, a === 'rate_limited' ? { code: '429', retryAfterMs: 2000 } : { code: a });
}

registerKind({
  kind: 'test-scripted',
  channels: ['email'],
  summary: 'test only: answers from a script',
  settings: { script: { type: 'string', required: true, doc: 'script name' }, batch: { type: 'string', doc: 'yes: can sendMany' } },
  secrets: {},
  create: async (config) => {
    const name = String(config.settings.script);
    let n = 0;
    return {
      channel: 'email',
      ...(config.settings.batch === 'yes'
        ? {
            maxBatchSize: 100,
            async sendMany(messages: EmailMessage[]): Promise<BatchItemResult[]> {
              answer(name, messages.length);
              return messages.map(() => ({ ok: true, messageId: `${name}-${++n}`, acceptedAt: new Date(0) }));
            },
          }
        : {}),
      async send() {
        answer(name, 1);
        return { messageId: `${name}-${++n}`, acceptedAt: new Date(0) };
      },
      verify: async () => ({ ok: true, detail: 'test' }),
      close: async () => {},
    };
  },
});

let dir: string;
let ctx: SqliteTestCore;
let sleeps: number[];

function fakeClock(): Clock {
  let t = Date.parse('2026-03-02T07:00:00Z');
  return {
    now: () => new Date(t),
    sleep: async (ms, signal) => {
      if (signal?.aborted) return;
      sleeps.push(ms);
      t += ms;
    },
    random: () => 0.5,
  };
}

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-dispatch-'));
  const storePath = path.join(dir, 'sb.db');
  ctx = { ...sqliteCore(storePath), storePath, clock: fakeClock(), env: { SWITCHBOARD_MASTER_KEY: encodeKey(generateKey()) }, actor: 'test@host' };
  await addTenant(ctx, 'acme', 'Acme');
  scripts.clear();
  calls.clear();
  sleeps = [];
});
afterEach(() => {
  ctx.db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A route: the tenant's provider `a`, and (shape `a+b`) the system default `b`. */
async function route(shape: 'a' | 'a+b', a: Answer[], b: Answer[] = ['ok'], batch = false): Promise<void> {
  scripts.set('a', [...a]);
  scripts.set('b', [...b]);
  await addProvider(ctx, { tenantId: 'acme', channel: 'email', kind: 'test-scripted', name: 'a', priority: 1, settings: { script: 'a', batch: batch ? 'yes' : 'no' }, secrets: {} });
  if (shape === 'a+b') await addProvider(ctx, { tenantId: null, channel: 'email', kind: 'test-scripted', name: 'b', settings: { script: 'b', batch: batch ? 'yes' : 'no' }, secrets: {} });
}

const msg = (to = 'ana@example.com'): EmailMessage => ({ to, subject: 'Hi', text: 'Hello' });
const retry = { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 60_000 };

interface Case {
  name: string;
  shape: 'a' | 'a+b';
  a: Answer[];
  status: 'sent' | 'failed';
  kind?: ProviderErrorKind;
  provider?: string;
  fallback: boolean;
  /** Requests to a and to b. */
  tries: [number, number];
  sleeps: number[];
  /** The pause reason after the message, or null. */
  unavailable: string | null;
}

const CASES: Case[] = [
  { name: 'ok', shape: 'a', a: ['ok'], status: 'sent', provider: 'acme/email/a', fallback: false, tries: [1, 0], sleeps: [], unavailable: null },
  { name: 'recipient, alone', shape: 'a', a: ['recipient'], status: 'failed', kind: 'recipient', fallback: false, tries: [1, 0], sleeps: [], unavailable: null },
  { name: 'recipient, with fallback: never handed on', shape: 'a+b', a: ['recipient'], status: 'failed', kind: 'recipient', fallback: false, tries: [1, 0], sleeps: [], unavailable: null },
  { name: 'auth, alone: circuit open, route down', shape: 'a', a: ['auth'], status: 'failed', kind: 'auth', fallback: false, tries: [1, 0], sleeps: [], unavailable: 'acme/email/a: auth from a' },
  { name: 'auth, with fallback', shape: 'a+b', a: ['auth'], status: 'sent', provider: 'system/email/b', fallback: true, tries: [1, 1], sleeps: [], unavailable: null },
  { name: 'config, alone', shape: 'a', a: ['config'], status: 'failed', kind: 'config', fallback: false, tries: [1, 0], sleeps: [], unavailable: 'acme/email/a: config from a' },
  { name: 'config, with fallback', shape: 'a+b', a: ['config'], status: 'sent', provider: 'system/email/b', fallback: true, tries: [1, 1], sleeps: [], unavailable: null },
  { name: 'transient once, then ok: same provider', shape: 'a', a: ['transient', 'ok'], status: 'sent', provider: 'acme/email/a', fallback: false, tries: [2, 0], sleeps: [100], unavailable: null },
  { name: 'transient always, alone: 3 attempts, circuit open', shape: 'a', a: ['transient'], status: 'failed', kind: 'transient', fallback: false, tries: [3, 0], sleeps: [100, 200], unavailable: 'acme/email/a: transient from a' },
  { name: 'transient always, with fallback', shape: 'a+b', a: ['transient'], status: 'sent', provider: 'system/email/b', fallback: true, tries: [3, 1], sleeps: [100, 200], unavailable: null },
  { name: '429 always: waits Retry-After, then falls back', shape: 'a+b', a: ['rate_limited'], status: 'sent', provider: 'system/email/b', fallback: true, tries: [3, 1], sleeps: [2000, 2000], unavailable: null },
];

describe('Dispatcher.send: error class × route shape', () => {
  test.each(CASES)('$name', async (c) => {
    await route(c.shape, c.a);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    const r = await d.send(msg());
    expect(r.status).toBe(c.status);
    if (c.kind) expect(r.error?.kind).toBe(c.kind);
    if (c.provider) expect(r.provider).toBe(c.provider);
    expect(r.fallback).toBe(c.fallback);
    expect([calls.get('a')?.length ?? 0, calls.get('b')?.length ?? 0]).toEqual(c.tries);
    expect(r.attempts).toHaveLength(c.tries[0] + c.tries[1]);
    expect(sleeps).toEqual(c.sleeps);
    expect(d.unavailable).toBe(c.unavailable);
    // Every attempt is in the message log.
    const logged = ctx.db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number };
    expect(logged.n).toBe(c.tries[0] + c.tries[1]);
    await d.close();
  });
});

describe('circuit and pause', () => {
  test('transient failures spread over messages open the circuit after 3 in a row; a success in between resets the count', async () => {
    await route('a', ['transient', 'ok', 'transient', 'transient', 'transient']);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry: { ...retry, maxAttempts: 1 } });
    const out = [];
    for (let k = 0; k < 5; k++) out.push((await d.send(msg(`u${k}@example.com`))).status);
    expect(out).toEqual(['failed', 'sent', 'failed', 'failed', 'failed']);
    expect(d.unavailable).toBe('acme/email/a: transient from a');
    // Once open, nothing more is tried: the next message comes back at once, not started.
    const next = await d.send(msg('late@example.com'));
    expect(next).toMatchObject({ status: 'failed', started: false });
    expect(calls.get('a')).toHaveLength(5);
  });

  test('every provider down: the reason names each in route order; backoff ends once the route is down', async () => {
    await route('a+b', ['auth'], ['transient']);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    const r = await d.send(msg());
    expect(r).toMatchObject({ status: 'failed', fallback: false });
    expect(d.unavailable).toBe('acme/email/a: auth from a; system/email/b: transient from b');
    expect(sleeps).toEqual([100, 200]);
  });

  test('the gate runs once, in the slot, before the first request; a closed gate sends nothing', async () => {
    await route('a+b', ['transient'], ['ok']);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    let gates = 0;
    const r = await d.send(msg(), {}, async () => {
      gates++;
      return true;
    });
    expect(r.status).toBe('sent');
    expect(gates).toBe(1);
    const shut = await d.send(msg('b@example.com'), {}, async () => false);
    expect(shut).toMatchObject({ status: 'failed', started: false });
    expect(calls.get('b')).toHaveLength(1);
  });

  test('a stopped run starts nothing', async () => {
    await route('a', ['ok']);
    const stop = new AbortController();
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry, signal: stop.signal });
    stop.abort();
    const r = await d.send(msg());
    expect(r).toMatchObject({ status: 'failed', started: false });
    expect(r.error?.message).toMatch(/stopped/);
    expect(calls.get('a')).toBeUndefined();
  });
});

describe('Dispatcher.sendMany: the same loop for a batched request', () => {
  const many = (n: number) => Array.from({ length: n }, (_, k) => msg(`r${k}@example.com`));
  const origins = (n: number) => Array.from({ length: n }, (_, k) => ({ rowNo: k + 1 }));

  test('transient on the batched request: 3 attempts, then row by row on the next provider', async () => {
    await route('a+b', ['transient'], ['ok'], true);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    const rs = await d.sendMany(many(5), origins(5));
    expect(rs.map((r) => [r.status, r.provider, r.fallback])).toEqual(Array.from({ length: 5 }, () => ['sent', 'system/email/b', true]));
    expect(calls.get('a')).toEqual([5, 5, 5]);
    // b can batch too, but the fallback goes row by row (DESIGN §5).
    expect(calls.get('b')).toEqual([1, 1, 1, 1, 1]);
    expect(sleeps).toEqual([100, 200]);
  });

  test('auth on the only provider: every row comes back not its fault, the route down', async () => {
    await route('a', ['auth'], ['ok'], true);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    const rs = await d.sendMany(many(3), origins(3));
    expect(rs.map((r) => r.error?.kind)).toEqual(['auth', 'auth', 'auth']);
    expect(d.unavailable).toBe('acme/email/a: auth from a');
    expect(calls.get('a')).toEqual([3]);
  });

  test('rows are claimed as their requests leave: the whole batched request at once, then row by row after a fallback, never twice', async () => {
    // a batches and answers auth; b (the system default) sends one message per request.
    await route('a', ['auth'], ['ok'], true);
    await addProvider(ctx, { tenantId: null, channel: 'email', kind: 'test-scripted', name: 'b', settings: { script: 'b', batch: 'no' }, secrets: {} });
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    const claims: number[][] = [];
    const gate = async (ks: readonly number[]) => {
      claims.push([...ks]);
      return true;
    };
    // Group 1: the batched request to a leaves (all 4 claimed), a answers auth, the rows go one by one to b
    // (already claimed: nothing claimed again).
    const first = await d.sendMany(many(4), origins(4), gate);
    expect(first.map((r) => r.provider)).toEqual(Array.from({ length: 4 }, () => 'system/email/b'));
    expect(claims).toEqual([[0, 1, 2, 3]]);
    // Group 2: a's circuit is open, b takes the rows one request each: each row is claimed by its own request,
    // in b's slot (before the fix the first row's request claimed all three).
    claims.length = 0;
    const second = await d.sendMany(many(3), origins(3), gate);
    expect(second.map((r) => r.status)).toEqual(['sent', 'sent', 'sent']);
    expect(claims.sort()).toEqual([[0], [1], [2]]);
    expect(calls.get('a')).toEqual([4]);
  });

  test('recipient on the batched request: retried row by row on the same provider', async () => {
    await route('a+b', ['recipient', 'ok'], ['ok'], true);
    const d = await Dispatcher.open(ctx, 'acme', 'email', { retry });
    const rs = await d.sendMany(many(2), origins(2));
    expect(rs.map((r) => [r.status, r.provider])).toEqual([['sent', 'acme/email/a'], ['sent', 'acme/email/a']]);
    expect(calls.get('a')).toEqual([2, 1, 1]);
    expect(calls.get('b')).toBeUndefined();
  });
});
