// Helpers for delivery-status tests: `events serve` as a child process, and payloads signed the way each
// provider signs them, computed here with node:crypto from the providers' documented schemes (independently of
// the SDK code the server uses):
// - SendGrid: ECDSA P-256 / SHA-256 over timestamp + raw body, base64 DER (Signed Event Webhook)
// - Twilio: base64 HMAC-SHA1 (auth token) over the full URL + POST params sorted by name (key + value)
// - Meta: `sha256=` hex HMAC-SHA256 (app secret) of the raw body
// - Amazon SNS: RSA-SHA1 (SignatureVersion 1) or RSA-SHA256 (2) over the documented string to sign, with a
//   certificate generated here and put in the server's --sns-cert-cache under an sns.us-east-1 URL
import { createHmac, generateKeyPairSync, randomBytes, randomUUID, sign, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import selfsigned from 'selfsigned';
import { spawnCli, type Workspace } from './cli.js';

/** Rows of a query on a store file (a read-only connection, so it never blocks the server's writes). */
export function storeRows<T>(store: string, sql: string, ...args: unknown[]): T[] {
  const db = new Database(store, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}

/** The addresses a tenant has suppressed on a channel, sorted. */
export function suppressedAddresses(store: string, tenantId: string, channel = 'email'): string[] {
  return storeRows<{ address: string }>(store, 'SELECT address FROM suppressions WHERE tenant_id = ? AND channel = ? ORDER BY address', tenantId, channel).map((r) => r.address);
}

export interface Serve {
  url: string;
  child: ReturnType<typeof spawnCli>;
  /** stdout so far (one log line per request). */
  log(): string;
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ exitCode: number | undefined; signal: string | undefined }>;
}

/** Starts `switchboard events serve --listen 127.0.0.1:0 …extra` and waits until it listens. */
export async function startServe(ws: Workspace, extra: string[] = [], env: Record<string, string> = {}): Promise<Serve> {
  const child = spawnCli({ ...ws, env: { ...ws.env, ...env } }, ['events', 'serve', '--listen', '127.0.0.1:0', ...extra], 120_000);
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const t0 = Date.now();
  let url: string | undefined;
  while (!url) {
    url = /listening on (http:\/\/[^\s;]+)/.exec(err)?.[1];
    if (url) break;
    if (child.exitCode !== null || Date.now() - t0 > 20_000) {
      child.kill('SIGKILL');
      throw new Error(`events serve did not start:\n${err}\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url,
    child,
    log: () => out,
    stderr: () => err,
    async stop(signal = 'SIGTERM') {
      child.kill(signal);
      const r = await child;
      return { exitCode: r.exitCode, signal: r.signal };
    },
  };
}

/**
 * A POST with node:http that reads an answer the server gives before the body is sent (a 413 for a declared
 * Content-Length over the limit): the headers go first, the body only if no answer came within 500 ms. (Sent
 * at once, the write may fail with EPIPE before the answer is read.)
 */
export function rawPost(url: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    let answered = false;
    const req = http.request(url, { method: 'POST', headers: { 'content-length': String(data.length), ...headers } }, (res) => {
      answered = true;
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => (answered || e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    req.flushHeaders();
    setTimeout(() => (answered ? req.destroy() : req.end(data)), 500);
  });
}

// ------------------------------------------------------------------------------------------------ SendGrid

/** The published test vector of @sendgrid/eventwebhook 8.0.0 (src/eventwebhook.spec.js). */
export const SENDGRID_VECTOR = {
  publicKey: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==',
  signature: 'MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=',
  timestamp: '1600112502',
  payload:
    JSON.stringify([
      {
        email: 'hello@world.com',
        event: 'dropped',
        reason: 'Bounced Address',
        sg_event_id: 'ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA',
        sg_message_id: 'LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0',
        'smtp-id': '<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>',
        timestamp: 1600112492,
      },
    ]) + '\r\n',
};

export interface SendGridSigner {
  /** The base64 SPKI public key, as SendGrid shows it (the config's eventWebhookPublicKey). */
  publicKey: string;
  /** Headers for `body` signed at `timestamp` (default now). */
  headers(body: string, timestamp?: number): Record<string, string>;
}

/** A key pair of our own, signing as SendGrid's Signed Event Webhook does. */
export function sendGridSigner(): SendGridSigner {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    headers(body, timestamp = Math.floor(Date.now() / 1000)) {
      const ts = String(timestamp);
      return {
        'content-type': 'application/json',
        'x-twilio-email-event-webhook-timestamp': ts,
        'x-twilio-email-event-webhook-signature': sign('sha256', Buffer.from(ts + body), privateKey).toString('base64'),
      };
    },
  };
}

/** A SendGrid event with a fresh sg_event_id; `extra` overrides or adds fields (custom args are top-level). */
export function sgEvent(event: string, email: string, messageId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { email, event, timestamp: Math.floor(Date.now() / 1000), sg_event_id: randomBytes(12).toString('base64url'), sg_message_id: `${messageId}.filterdrecv-test-1`, ...extra };
}

// -------------------------------------------------------------------------------------------------- Twilio

/** X-Twilio-Signature of a form POST to `url`. */
export function twilioSignature(authToken: string, url: string, params: Record<string, string>): string {
  const data = url + Object.keys(params).sort().map((k) => k + params[k]).join('');
  return createHmac('sha1', authToken).update(data).digest('base64');
}

/** POSTs form `params` to `base + pathAndQuery`, signed for `publicUrl + pathAndQuery`. */
export function postTwilio(base: string, publicUrl: string, pathAndQuery: string, authToken: string, params: Record<string, string>, signatureToken = authToken) {
  return fetch(base + pathAndQuery, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(signatureToken, publicUrl + pathAndQuery, params) },
    body: new URLSearchParams(params).toString(),
  });
}

// ---------------------------------------------------------------------------------------------------- Meta

/** X-Hub-Signature-256 of a body. */
export function metaSignature(appSecret: string, body: string): string {
  return `sha256=${createHmac('sha256', appSecret).update(body).digest('hex')}`;
}

/** A Meta webhook body with one change for `phoneNumberId` holding `statuses` and/or `messages`. */
export function metaBody(phoneNumberId: string, value: { statuses?: unknown[]; messages?: unknown[] }): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '15550783881', phone_number_id: phoneNumberId }, ...value } }] }],
  });
}

// ----------------------------------------------------------------------------------------------------- SNS

export interface SnsSigner {
  certUrl: string;
  /** Writes the certificate into `dir` under the documented file name. */
  seed(dir: string): void;
  /** A signed SNS message of `type` on `topicArn` (Notification: `message`; confirmations: SubscribeURL). */
  message(type: 'Notification' | 'SubscriptionConfirmation', topicArn: string, message: string, version?: '1' | '2'): Record<string, string>;
}

/** A certificate of our own under an sns.us-east-1.amazonaws.com URL, signing as SNS does. */
export async function snsSigner(): Promise<SnsSigner> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'sns.amazonaws.com' }], { keyType: 'rsa', keySize: 2048, algorithm: 'sha256' });
  const key: KeyObject | string = pems.private;
  const certUrl = `https://sns.us-east-1.amazonaws.com/SimpleNotificationService-${randomBytes(16).toString('hex')}.pem`;
  return {
    certUrl,
    seed(dir) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, certUrl.replace('https://', '').replace(/\//g, '_')), pems.cert);
    },
    message(type, topicArn, message, version = '2') {
      const m: Record<string, string> = { Type: type, MessageId: randomUUID(), TopicArn: topicArn, Message: message, Timestamp: new Date().toISOString(), SignatureVersion: version, SigningCertURL: certUrl };
      const fields = type === 'Notification' ? ['Message', 'MessageId', 'Timestamp', 'TopicArn', 'Type'] : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
      if (type === 'SubscriptionConfirmation') {
        m.Token = randomBytes(32).toString('hex');
        m.SubscribeURL = `https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=${encodeURIComponent(topicArn)}&Token=${m.Token}`;
      }
      const toSign = fields.map((f) => `${f}\n${m[f]}\n`).join('');
      m.Signature = sign(version === '1' ? 'sha1' : 'sha256', Buffer.from(toSign), key).toString('base64');
      return m;
    },
  };
}

/** POSTs an SNS message as SNS does (text/plain JSON, x-amz-sns-message-type). */
export function postSns(url: string, m: Record<string, string>) {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': m.Type!, 'x-amz-sns-message-id': m.MessageId! }, body: JSON.stringify(m) });
}
