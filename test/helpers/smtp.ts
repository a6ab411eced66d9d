// A real SMTP server for tests: smtp-server on 127.0.0.1, AUTH PLAIN/LOGIN required,
// STARTTLS with a self-signed certificate generated at test time, every message parsed.
import { simpleParser, type AddressObject } from 'mailparser';
import selfsigned from 'selfsigned';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';

/** The parts of an RFC 5322 message the tests look at (from an SMTP session or an outbox .eml file). */
export interface ParsedMail {
  /** Addresses from the To header, lower-cased. */
  to: string[];
  /** Address from the From header, lower-cased. */
  from: string;
  subject: string;
  text: string;
  html: string | false;
  messageId: string;
  /** The raw message, for byte-level checks. */
  raw: Buffer;
}

/** Parses a raw message with mailparser into {@link ParsedMail}. */
export async function parseMail(raw: Buffer): Promise<ParsedMail> {
  const p = await simpleParser(raw);
  return {
    to: addresses(p.to),
    from: addresses(p.from)[0] ?? '',
    subject: p.subject ?? '',
    text: p.text ?? '',
    html: p.html ?? false,
    messageId: p.messageId ?? '',
    raw,
  };
}

export interface ReceivedMessage extends ParsedMail {
  envelope: { from: string; to: string[] };
  /** Whether the session had been upgraded to TLS. */
  secure: boolean;
  /** The authenticated user. */
  user: string | undefined;
}

export interface StartSmtpOptions {
  /** user → password. AUTH is required; a wrong password gets 535. */
  users: Record<string, string>;
  /** Recipients (lower-cased) answered with `550 5.1.1 mailbox unavailable` at RCPT TO. */
  rejectRecipients?: Set<string>;
  /** Listen on this port (default: a free one), e.g. to bring back a server that was down. */
  port?: number;
  /** Delay (ms) before answering the n-th MAIL FROM (n counts from 0 over the server's life); default none. */
  mailFromDelayMs?: (n: number) => number;
}

export interface TestSmtpServer {
  host: '127.0.0.1';
  port: number;
  /** PEM of the self-signed server certificate; trust it as the provider's `ca`. */
  cert: string;
  messages: ReceivedMessage[];
  /** Number of failed AUTH attempts seen. */
  authFailures: number;
  /** Number of TCP connections accepted so far. */
  connections: number;
  /** Recipients refused at RCPT TO. */
  rejected: string[];
  /** Recipients (lower-cased) accepted at RCPT TO, in order: a request reached the server for each. */
  rcptTo: string[];
  /** When each DATA command arrived (performance.now(), ms), in order: the moment a message reached the server. */
  dataAt: number[];
  close(): Promise<void>;
}

let certCache: Promise<{ cert: string; key: string }> | undefined;

function makeCert(): Promise<{ cert: string; key: string }> {
  certCache ??= selfsigned
    .generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'rsa',
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true },
        { name: 'extKeyUsage', serverAuth: true },
        {
          name: 'subjectAltName',
          altNames: [
            { type: 7, ip: '127.0.0.1' },
            { type: 2, value: 'localhost' },
          ],
        },
      ],
    })
    .then((p) => ({ cert: p.cert, key: p.private }));
  return certCache;
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  if (!a) return [];
  const list = Array.isArray(a) ? a : [a];
  return list.flatMap((o) => o.value.map((v) => (v.address ?? '').toLowerCase()));
}

export async function startSmtpServer(opts: StartSmtpOptions): Promise<TestSmtpServer> {
  const { cert, key } = await makeCert();
  const messages: ReceivedMessage[] = [];
  const rejected: string[] = [];
  const rcptTo: string[] = [];
  const dataAt: number[] = [];
  const state = { authFailures: 0, mailFroms: 0, connections: 0 };
  const pending = new Set<Promise<void>>();

  const server = new SMTPServer({
    secure: false,
    key,
    cert,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: false,
    allowInsecureAuth: false, // AUTH only after STARTTLS
    logger: false,
    disabledCommands: [],
    size: 10 * 1024 * 1024,
    onConnect(_session, callback) {
      state.connections += 1;
      callback();
    },
    onAuth(auth, _session, callback) {
      const expected = auth.username !== undefined ? opts.users[auth.username] : undefined;
      if (expected !== undefined && auth.password === expected) {
        callback(null, { user: auth.username });
        return;
      }
      state.authFailures += 1;
      const err = Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 });
      callback(err);
    },
    onMailFrom(_address, _session, callback) {
      const delay = opts.mailFromDelayMs?.(state.mailFroms++) ?? 0;
      if (delay > 0) setTimeout(() => callback(), delay);
      else callback();
    },
    onRcptTo(address: SMTPServerAddress, _session, callback) {
      if (opts.rejectRecipients?.has(address.address.toLowerCase())) {
        rejected.push(address.address.toLowerCase());
        callback(Object.assign(new Error('5.1.1 mailbox unavailable'), { responseCode: 550 }));
        return;
      }
      rcptTo.push(address.address.toLowerCase());
      callback();
    },
    onData(stream, session, callback) {
      dataAt.push(performance.now());
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (e: Error) => callback(e));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        const envelope = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()),
        };
        const p = parseMail(raw)
          .then((parsed) => {
            messages.push({
              ...parsed,
              envelope,
              secure: session.secure,
              user: typeof session.user === 'string' ? session.user : undefined,
            });
            callback(null, 'OK: queued');
          })
          .catch((e: unknown) => callback(e instanceof Error ? e : new Error(String(e))))
          .finally(() => pending.delete(p));
        pending.add(p);
      });
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Connection-level errors (client hanging up mid-session) must not crash the test process.
  server.on('error', () => undefined);
  const addr = server.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('smtp server has no TCP address');

  return {
    host: '127.0.0.1',
    port: addr.port,
    cert,
    messages,
    rejected,
    rcptTo,
    dataAt,
    get authFailures() {
      return state.authFailures;
    },
    get connections() {
      return state.connections;
    },
    async close() {
      await Promise.allSettled([...pending]);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
