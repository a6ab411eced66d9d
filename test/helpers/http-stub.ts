// A small HTTP server of our own for provider tests: node:http on 127.0.0.1 (a free port), every request
// recorded with its body, answered by a handler the test supplies (and may swap between steps).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as the stub received it. `at` is the arrival time in ms since the epoch. */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/v3/mail/send`. */
  url: string;
  /** Lower-cased header names (node:http). */
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/** What a handler returns: status, headers and a body (an object is sent as JSON). */
export interface StubReply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export type StubHandler = (req: RecordedRequest) => StubReply | Promise<StubReply>;

export interface HttpStub {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  url: string;
  requests: RecordedRequest[];
  /** Replaces the handler for later requests. */
  handle(handler: StubHandler): void;
  close(): Promise<void>;
}

/** Starts a stub; a handler that throws answers 500 with the error text. */
export async function startHttpStub(handler: StubHandler): Promise<HttpStub> {
  let current = handler;
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      requests.push(rec);
      Promise.resolve()
        .then(() => current(rec))
        .then(
          (reply) => {
            const isText = typeof reply.body === 'string' || reply.body === undefined;
            const body = reply.body === undefined ? '' : isText ? String(reply.body) : JSON.stringify(reply.body);
            res.writeHead(reply.status, { ...(isText ? {} : { 'content-type': 'application/json' }), ...reply.headers });
            res.end(body);
          },
          (err: unknown) => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end(`stub handler failed: ${(err as Error).message}`);
          },
        );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    handle: (h) => (current = h),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Forwards a recorded request to `base` (e.g. a Prism mock) and returns its answer as a reply. */
export async function forward(base: string, req: RecordedRequest): Promise<StubReply> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined && !['host', 'connection', 'content-length'].includes(k)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  const res = await fetch(base + req.url, { method: req.method, headers, ...(req.body ? { body: req.body } : {}) });
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (!['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date'].includes(k)) out[k] = v;
  });
  return { status: res.status, headers: out, body: await res.text() };
}
