// e2e: events are committed before the 2xx answer and applied once per provider identity. A client posts 1,000
// signed Twilio status callbacks (16 at a time), retrying each on any non-2xx answer or connection error, as
// Twilio does; `events serve` is killed with SIGKILL after 300 answers and started again on the same port. In
// the end every event is stored exactly once and applied once (each message's delivery counts one event).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeWorkspace, type Workspace } from '../helpers/cli.js';
import { addTenant, expectExit } from '../helpers/setup.js';
import { freePort } from '../helpers/dnsmasq.js';
import { postTwilio, startServe, storeRows, type Serve } from '../helpers/events.js';

const PUBLIC = 'https://hooks.acme.test';
const ACCOUNT = `AC${randomBytes(16).toString('hex')}`;
const TOKEN = randomBytes(16).toString('hex');
const FROM = '+14155550199';
const EVENTS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let ws: Workspace;
let serve: Serve | undefined;

beforeAll(async () => {
  ws = makeWorkspace();
  await addTenant(ws, 'acme');
  expectExit(
    await ws.run(['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'twilio', '--set', `accountSid=${ACCOUNT}`, '--set', `from=${FROM}`, '--secret-env', 'authToken=T'], { env: { T: TOKEN } }),
    0,
    'provider add twilio',
  );
});
afterAll(async () => {
  if (serve?.child.exitCode === null) await serve.stop('SIGKILL');
  ws?.cleanup();
});

describe('SIGKILL while events arrive', () => {
  test(`${EVENTS} callbacks with retries, the server killed mid-stream: each stored exactly once`, async () => {
    const port = await freePort();
    const args = ['--listen', `127.0.0.1:${port}`, '--public-url', PUBLIC];
    serve = await startServe(ws, args);
    const base = `http://127.0.0.1:${port}`;
    const sids = Array.from({ length: EVENTS }, () => `SM${randomBytes(16).toString('hex')}`);
    let next = 0;
    let acked = 0;
    let retries = 0;
    const worker = async () => {
      for (let i = next++; i < EVENTS; i = next++) {
        const params = { MessageSid: sids[i]!, MessageStatus: 'delivered', AccountSid: ACCOUNT, From: FROM, To: `+1415${String(5_550_000 + i).padStart(7, '0')}` };
        for (;;) {
          try {
            const r = await postTwilio(base, PUBLIC, '/hooks/acme/sms/twilio', TOKEN, params);
            await r.arrayBuffer();
            if (r.ok) break;
          } catch {
            // connection refused or reset while the server is down
          }
          retries++;
          await sleep(20);
        }
        acked++;
      }
    };
    const killer = (async () => {
      while (acked < 300) await sleep(5);
      const killed = await serve!.stop('SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      serve = await startServe(ws, args);
    })();
    await Promise.all([...Array.from({ length: 16 }, worker), killer]);
    expect(acked).toBe(EVENTS);
    expect(retries, 'the kill landed while requests were in flight').toBeGreaterThan(0);

    const stored = storeRows<{ key: string }>(ws.store, "SELECT event_key AS key FROM events WHERE provider = 'acme/sms/twilio'");
    expect(stored).toHaveLength(EVENTS);
    expect(new Set(stored.map((s) => s.key))).toEqual(new Set(sids.map((s) => `twilio:${s}:delivered`)));
    // Applied once: each message's delivery status counts exactly one event.
    expect(storeRows(ws.store, 'SELECT count(*) AS n, min(events) AS lo, max(events) AS hi FROM deliveries')).toEqual([{ n: EVENTS, lo: 1, hi: 1 }]);
    expect((await serve!.stop('SIGTERM')).exitCode).toBe(0);
    // Requests committed by the first server whose answer the kill cut off came again: the restarted one saw them as duplicates.
    const seenTwice = [...serve!.log().matchAll(/duplicates (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    console.log(`events crash test: ${EVENTS} events, SIGKILL after 300 answers, ${retries} retries, stored ${stored.length} once each, ${seenTwice} delivered again after the restart and applied 0 times`);
  });
});
