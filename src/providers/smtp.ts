/**
 * SMTP adapter (nodemailer, pooled connections).
 * Settings: host, port, tls (starttls | tls | none), user, from, fromName, ca, timeout (ms). Secret: password.
 * Reply codes: RFC 5321 §4.2 (https://www.rfc-editor.org/rfc/rfc5321#section-4.2) and enhanced status codes,
 * RFC 3463 (https://www.rfc-editor.org/rfc/rfc3463).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import nodemailer from 'nodemailer';
import type { AdapterConfig, EmailMessage, EmailProvider, SendResult, VerifyResult } from './types.js';
import { ProviderError } from './types.js';
import { formatFrom } from './address.js';
import { oneLine } from './http.js';
import { emailHeaders } from './tracking.js';

/** Fields nodemailer puts on its errors (see nodemailer `errors.js`). */
interface NodemailerError extends Error {
  code?: string;
  responseCode?: number;
  command?: string;
  response?: string;
}

const DEFAULT_PORT: Record<string, number> = { starttls: 587, tls: 465, none: 25 };

/**
 * Classifies a nodemailer/SMTP failure into a DESIGN §5 kind:
 * - EAUTH, ENOAUTH, replies 530/534/535/538 → `auth`
 * - 5xx at RCPT TO (550 mailbox unavailable, 551, 553, 5.1.x) → `recipient`
 * - 5xx at MAIL FROM (sender not allowed), ETLS, ECONFIG → `config`
 * - 421/450/451/452 and other 4xx, ECONNECTION, ETIMEDOUT, ESOCKET, EDNS, connection refused → `transient`
 * - any other 5xx (e.g. 554 at DATA) → `config` (another provider may accept the message)
 */
export function classifySmtpError(err: unknown): ProviderError {
  const e = err as NodemailerError;
  const code = e.responseCode;
  const command = (e.command ?? '').toUpperCase();
  const text = oneLine(e.response ?? e.message ?? String(err));
  const details = { code: code ? String(code) : e.code, cause: err };
  if (e.code === 'EAUTH' || e.code === 'ENOAUTH' || (code !== undefined && [530, 534, 535, 538].includes(code))) {
    return new ProviderError('auth', `SMTP authentication failed: ${text}`, details);
  }
  if (code !== undefined && code >= 500 && command.startsWith('RCPT')) {
    return new ProviderError('recipient', `recipient rejected: ${text}`, details);
  }
  if (code !== undefined && code >= 400 && code < 500) {
    return new ProviderError('transient', `temporary SMTP failure: ${text}`, details);
  }
  if (code !== undefined && code >= 500) {
    return new ProviderError('config', `SMTP server refused the message${command ? ` at ${command}` : ''}: ${text}`, details);
  }
  if (e.code === 'ETLS' || e.code === 'ECONFIG' || e.code === 'EREQUIRETLS') {
    return new ProviderError('config', `SMTP TLS or configuration error: ${text}`, details);
  }
  return new ProviderError('transient', `SMTP connection failed: ${text}`, details);
}

/**
 * Opens a TCP connection with Nagle's algorithm off; calls back once with the connected socket, or with the
 * error (code ETIMEDOUT after `timeoutMs`), which {@link classifySmtpError} classes as transient.
 */
function connectNoDelay(host: string, port: number, timeoutMs: number, callback: (err: Error | null, socket?: { connection: net.Socket }) => void): void {
  const socket = net.connect({ host, port, noDelay: true });
  const fail = (err: Error) => {
    socket.destroy();
    callback(err);
  };
  socket.setTimeout(timeoutMs, () => fail(Object.assign(new Error(`connection to ${host}:${port} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
  socket.once('error', fail);
  socket.once('connect', () => {
    socket.setTimeout(0);
    socket.off('error', fail);
    callback(null, { connection: socket });
  });
}

/** Random bytes handed out from a buffer refilled 4 KiB at a time (one system call for hundreds of messages). */
class RandomPool {
  private buf = Buffer.alloc(0);
  private at = 0;
  /** `n` fresh random bytes (n ≤ 4096) as lowercase hex. */
  hex(n: number): string {
    if (this.at + n > this.buf.length) {
      this.buf = randomBytes(4096);
      this.at = 0;
    }
    this.at += n;
    return this.buf.toString('hex', this.at - n, this.at);
  }
}

/**
 * The Message-ID and MIME boundary base nodemailer would make (random, UUID-like; RFC 5322 §3.6.4), drawn from
 * a {@link RandomPool}: nodemailer's own makes six `randomBytes` calls and parses the addresses once more per
 * message (about 5 % of the CPU of a bulk send). Left to nodemailer when the message sets its own Message-ID.
 */
function messageIdentity(pool: RandomPool, domain: string, headers: Record<string, string> | undefined): { messageId?: string; baseBoundary: string } {
  const baseBoundary = pool.hex(8);
  if (headers && Object.keys(headers).some((h) => h.toLowerCase() === 'message-id')) return { baseBoundary };
  const r = pool.hex(16);
  return { messageId: `<${r.slice(0, 8)}-${r.slice(8, 12)}-${r.slice(12, 16)}-${r.slice(16, 20)}-${r.slice(20)}@${domain}>`, baseBoundary };
}

/**
 * Builds an SMTP adapter from a decrypted config. Reads the `ca` file once, here.
 * @throws ProviderError `config` when a `user` is set but the `password` secret is not (e.g. dropped by
 *   `key reset`): the config says to log in, so it is never tried without AUTH.
 */
export function createSmtpProvider(config: AdapterConfig): EmailProvider {
  const s = config.settings;
  const tls = String(s.tls ?? 'starttls');
  const timeout = Number(s.timeout ?? 30_000);
  const password = config.secrets.password;
  if (s.user && password === undefined) throw new ProviderError('config', `${config.ref}: secret password is not set`);
  const host = String(s.host);
  const port = Number(s.port ?? DEFAULT_PORT[tls] ?? 587);
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: Math.max(1, Math.min(config.maxConcurrency, 20)),
    host,
    port,
    secure: tls === 'tls',
    requireTLS: tls === 'starttls',
    ignoreTLS: tls === 'none',
    auth: password !== undefined ? { user: String(s.user ?? ''), pass: password } : undefined,
    tls: s.ca ? { ca: fs.readFileSync(String(s.ca)) } : undefined,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    // Each pooled connection is opened here with TCP_NODELAY (nodemailer does not set it): nodemailer writes a
    // message and its closing "\r\n.\r\n" separately, and with Nagle's algorithm that small last write waits
    // for the server's delayed ACK (40 ms on Linux) on every message. nodemailer then runs the session on this
    // socket as on its own (greeting, implicit TLS or STARTTLS, AUTH; see `connection` in smtp-connection).
    getSocket: (_opts: unknown, callback: (err: Error | null, socket?: { connection: net.Socket }) => void) => connectNoDelay(host, port, timeout, callback),
  });
  const from = formatFrom(String(s.from), s.fromName === undefined ? undefined : String(s.fromName));
  const mailto = s.unsubscribeMailto === undefined ? undefined : String(s.unsubscribeMailto);
  // The Message-ID's right part: the sender's domain, as nodemailer takes it.
  const idDomain = String(s.from).split('@').pop()!.replace(/[>\s]/g, '') || 'localhost';
  const pool = new RandomPool();

  return {
    channel: 'email',
    async send(message: EmailMessage): Promise<SendResult> {
      try {
        const headers = emailHeaders(message, mailto);
        const info = await transport.sendMail({
          ...messageIdentity(pool, idDomain, headers),
          from,
          to: message.to,
          subject: message.subject,
          text: message.text,
          html: message.html,
          headers,
        });
        if (info.rejected.length > 0) {
          throw new ProviderError('recipient', `recipient rejected: ${oneLine(info.response ?? '')}`);
        }
        return { messageId: info.messageId, acceptedAt: new Date() };
      } catch (err) {
        if (err instanceof ProviderError) throw err;
        throw classifySmtpError(err);
      }
    },
    async verify(): Promise<VerifyResult> {
      try {
        await transport.verify();
        return { ok: true, detail: password !== undefined ? 'connected and authenticated' : 'connected (no AUTH configured)' };
      } catch (err) {
        const e = classifySmtpError(err);
        return { ok: false, detail: `${e.kind}: ${e.message}` };
      }
    },
    async close(): Promise<void> {
      transport.close();
    },
  };
}
