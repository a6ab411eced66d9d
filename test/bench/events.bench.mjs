// Delivery-event ingestion (issue 13), through a real `node bin/switchboard events serve` with its store on disk:
//  sendgrid  SendGrid Event Webhook arrays of 1,000 events (processed/delivered/open, 2 % hard bounces that add a
//            suppression), each array signed (ECDSA P-256, checked with @sendgrid/eventwebhook), posted one after
//            another and 4 at a time: events stored per second (wall clock from the first request to the last answer)
//  twilio    single Twilio status callbacks (HMAC-SHA1 signature checked with the twilio SDK), one at a time and 8
//            at a time: answer time per request, p50 / p99 / max
// Targets (issue 13): ≥ 5,000 events/s for SendGrid arrays; p99 < 50 ms for a single callback.
// Env: EVENTS_BENCH_ARRAYS (default 40), EVENTS_BENCH_CALLBACKS (default 2000); BENCH_QUICK=1 runs 4 and 200.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, URLSearchParams } from 'node:url';
import { Buffer } from 'node:buffer';

const { fetch } = globalThis;

const quick = process.env.BENCH_QUICK === '1';
const ARRAYS = Number(process.env.EVENTS_BENCH_ARRAYS ?? (quick ? 4 : 40));
const CALLBACKS = Number(process.env.EVENTS_BENCH_CALLBACKS ?? (quick ? 200 : 2000));
const PER_ARRAY = 1000;
const PUBLIC = 'https://hooks.bench.test';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'switchboard');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-bench-events-'));
const env = { PATH: process.env.PATH, HOME: dir, SWITCHBOARD_STORE: path.join(dir, 'sb.db'), SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64'), NO_COLOR: '1' };

function sb(args, extraEnv = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`switchboard ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ACCOUNT = `AC${randomBytes(16).toString('hex')}`;
const TOKEN = randomBytes(16).toString('hex');
sb(['tenant', 'add', 'acme', '--name', 'Acme']);
sb(['provider', 'add', '--tenant', 'acme', '--channel', 'email', '--kind', 'sendgrid', '--set', 'from=noreply@acme.test', '--set', `eventWebhookPublicKey=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`, '--secret-env', 'apiKey=K'], { K: 'SG.bench' });
sb(['provider', 'add', '--tenant', 'acme', '--channel', 'sms', '--kind', 'twilio', '--set', `accountSid=${ACCOUNT}`, '--set', 'from=+14155550199', '--secret-env', 'authToken=T'], { T: TOKEN });

const server = spawn(process.execPath, [bin, 'events', 'serve', '--listen', '127.0.0.1:0', '--public-url', PUBLIC], { env, stdio: ['ignore', 'ignore', 'pipe'] });
let err = '';
server.stderr.on('data', (d) => (err += d));
let base;
for (let i = 0; i < 400 && !base; i++) {
  base = /listening on (http:\/\/\S+?);/.exec(err)?.[1];
  if (!base) await new Promise((r) => setTimeout(r, 25));
}
if (!base) throw new Error(`events serve did not start: ${err}`);

let seq = 0;
function sendGridArray() {
  const ts = Math.floor(Date.now() / 1000);
  const events = Array.from({ length: PER_ARRAY }, (_, i) => {
    const n = seq++;
    const kind = i % 50 === 0 ? 'bounce' : ['processed', 'delivered', 'open'][i % 3];
    return {
      email: `r${n}@example.com`, event: kind, timestamp: ts, sg_event_id: `bench-${n}`, sg_message_id: `M${Math.floor(n / 1000)}.filterdrecv-1`, sb_tenant: 'acme',
      ...(kind === 'bounce' ? { type: 'bounce', status: '5.1.1', reason: '550 5.1.1 unknown user' } : {}),
    };
  });
  const body = JSON.stringify(events) + '\r\n';
  const t = String(ts);
  return { body, headers: { 'content-type': 'application/json', 'x-twilio-email-event-webhook-timestamp': t, 'x-twilio-email-event-webhook-signature': sign('sha256', Buffer.from(t + body), privateKey).toString('base64') } };
}

async function post(url, body, headers) {
  const r = await fetch(url, { method: 'POST', headers, body });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status} ${text}`);
  return JSON.parse(text.startsWith('{') ? text : '{}');
}

async function sendGridRun(concurrency) {
  const bodies = Array.from({ length: ARRAYS }, sendGridArray); // signed before the clock starts
  let next = 0;
  let stored = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < bodies.length; i = next++) {
        const r = await post(`${base}/hooks/acme/email/sendgrid`, bodies[i].body, bodies[i].headers);
        stored += r.stored;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  if (stored !== ARRAYS * PER_ARRAY) throw new Error(`stored ${stored} of ${ARRAYS * PER_ARRAY}`);
  return { label: `sendgrid arrays of ${PER_ARRAY}, ${concurrency} at a time`, events: stored, figure: `${Math.round(stored / s).toLocaleString('en')} events/s (${ARRAYS} requests in ${s.toFixed(2)} s)` };
}

function twilioRequest(n) {
  const params = { MessageSid: `SM${n.toString(16).padStart(32, '0')}`, MessageStatus: 'delivered', AccountSid: ACCOUNT, From: '+14155550199', To: `+1415${String(5_000_000 + (n % 1_000_000)).padStart(7, '0')}` };
  const pathAndQuery = '/hooks/acme/sms/twilio?sb_tenant=acme';
  const data = PUBLIC + pathAndQuery + Object.keys(params).sort().map((k) => k + params[k]).join('');
  return { url: base + pathAndQuery, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': createHmac('sha1', TOKEN).update(data).digest('base64') }, body: new URLSearchParams(params).toString() };
}

async function twilioRun(concurrency, offset) {
  const reqs = Array.from({ length: CALLBACKS }, (_, i) => twilioRequest(offset + i));
  const times = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < reqs.length; i = next++) {
        const t = performance.now();
        const r = await fetch(reqs[i].url, { method: 'POST', headers: reqs[i].headers, body: reqs[i].body });
        await r.text();
        if (r.status !== 200) throw new Error(`twilio callback: HTTP ${r.status}`);
        times.push(performance.now() - t);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(1);
  return { label: `twilio single callbacks, ${concurrency} at a time`, events: CALLBACKS, figure: `p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${times.at(-1).toFixed(1)} ms (${Math.round(CALLBACKS / s).toLocaleString('en')} requests/s)` };
}

try {
  const warm = sendGridArray(); // one array first, not timed: lazy imports, JIT, the first key conversion
  await post(`${base}/hooks/acme/email/sendgrid`, warm.body, warm.headers);
  const results = [await sendGridRun(1), await sendGridRun(4), await twilioRun(1, 0), await twilioRun(8, CALLBACKS)];
  console.log(`events serve, store on disk (${env.SWITCHBOARD_STORE}), node ${process.version}, ${os.cpus().length} cores`);
  console.log('| run | events | result |');
  console.log('| --- | ---: | --- |');
  for (const r of results) console.log(`| ${r.label} | ${r.events.toLocaleString('en')} | ${r.figure} |`);
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  fs.rmSync(dir, { recursive: true, force: true });
}
