// A small HTTP server for provider tests (node:http on 127.0.0.1, a random port): records every request,
// answers through a handler, and can forward a request to another server (e.g. Prism, to check it against the
// provider's OpenAPI spec) and hand back the answer.
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as the stub received it. */
export interface StubRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The raw body, UTF-8. */
  body: string;
  /** When the request arrived (ms since the epoch). */
  receivedAt: number;
}

/** An answer. An object body is sent as JSON (unless a content-type header says otherwise). */
export interface StubReply {
  status: number;
  headers?: Record<string, string>;
  body?: string | object;
}

export interface HttpStub {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  port: number;
  /** Every request received, in order. */
  requests: StubRequest[];
  close(): Promise<void>;
}

/** Starts a stub answering every request with `handler`. A handler that throws answers 500 with the error text. */
export async function startHttpStub(handler: (req: StubRequest) => StubReply | Promise<StubReply>): Promise<HttpStub> {
  const requests: StubRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const request: StubRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), receivedAt: Date.now() };
      requests.push(request);
      Promise.resolve()
        .then(() => handler(request))
        .then(
          (reply) => send(res, reply),
          (err: unknown) => send(res, { status: 500, headers: { 'content-type': 'text/plain' }, body: `stub handler failed: ${String(err)}` }),
        );
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: http.ServerResponse, reply: StubReply): void {
  const headers = { ...(reply.headers ?? {}) };
  let body = '';
  if (typeof reply.body === 'string') body = reply.body;
  else if (reply.body !== undefined) {
    body = JSON.stringify(reply.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  res.writeHead(reply.status, headers);
  res.end(body);
}

/** A forwarded request's answer. */
export interface ForwardedReply {
  status: number;
  headers: Headers;
  body: string;
}

/** Sends `req` (method, path, query, headers, body) to `base` and returns the answer. */
export async function forward(base: string, req: StubRequest): Promise<ForwardedReply> {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || ['host', 'connection', 'content-length', 'accept-encoding'].includes(k)) continue;
    headers.set(k, Array.isArray(v) ? v.join(', ') : v);
  }
  const query = req.query.toString();
  const res = await fetch(`${base}${req.path}${query ? `?${query}` : ''}`, {
    method: req.method,
    headers,
    body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req.body,
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}
