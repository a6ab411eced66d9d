// Local provider test servers: a small HTTP server of our own (node:http on 127.0.0.1, a free port) that
// records every request and answers through a handler the test supplies (and may swap between steps); a JSON
// flavour of it; forwarding to another server; and Prism (offline) as a validating proxy that checks requests
// and responses against a provider's published OpenAPI spec in ../shared/contracts.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { repoRoot } from './cli.js';
import { freePort } from './dnsmasq.js';

/** One request as the stub received it. `at` is the arrival time in ms since the epoch. */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/v3/mail/send?x=1`. */
  url: string;
  /** Path without the query, e.g. `/v3/mail/send`. */
  path: string;
  query: URLSearchParams;
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
      const u = new URL(req.url ?? '/', 'http://127.0.0.1');
      const rec: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        path: u.pathname,
        query: u.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
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
    if (v !== undefined && !['host', 'connection', 'content-length', 'accept-encoding'].includes(k)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  const res = await fetch(base + req.url, { method: req.method, headers, ...(req.body ? { body: req.body } : {}) });
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (!['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date'].includes(k)) out[k] = v;
  });
  return { status: res.status, headers: out, body: await res.text() };
}

/** A request to a JSON stub: the path (with query) and the body parsed as JSON (the raw text if it is not JSON). */
export interface JsonRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface JsonStub {
  url: string;
  requests: JsonRequest[];
  stop(): Promise<void>;
}

/** {@link startHttpStub} for JSON APIs: `handle` gets each request with its body parsed. */
export async function startJsonStub(handle: (req: JsonRequest) => StubReply | Promise<StubReply>): Promise<JsonStub> {
  const requests: JsonRequest[] = [];
  const stub = await startHttpStub((r) => {
    let body: unknown = undefined;
    try {
      body = r.body ? JSON.parse(r.body) : undefined;
    } catch {
      body = r.body;
    }
    const req: JsonRequest = { method: r.method, path: r.url, headers: r.headers, body };
    requests.push(req);
    return handle(req);
  });
  return { url: stub.url, requests, stop: stub.close };
}

export interface PrismProxy {
  url: string;
  /** Prism's log (violations appear here). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts `prism proxy --errors <spec> <upstream>` on 127.0.0.1: a request or response that violates the spec
 * gets an error answer instead of passing through. `spec` is a file name in ../shared/contracts.
 */
export async function startPrismProxy(spec: string, upstream: string): Promise<PrismProxy> {
  const port = await freePort();
  const specPath = path.resolve(repoRoot, '..', 'shared', 'contracts', spec);
  const bin = path.join(repoRoot, 'node_modules', '.bin', 'prism');
  const child: ChildProcess = spawn(bin, ['proxy', '-h', '127.0.0.1', '-p', String(port), '--errors', specPath, upstream], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  for (let i = 0; i < 150; i++) {
    if (child.exitCode !== null) throw new Error(`prism exited with ${child.exitCode}:\n${log}`);
    if (/Prism is listening/.test(log)) return { url: `http://127.0.0.1:${port}`, log: () => log, stop };
    await new Promise((res) => setTimeout(res, 100));
  }
  await stop();
  throw new Error(`prism did not start within 15 s:\n${log}`);
}
