// Small shared pieces for local provider test servers: a JSON HTTP server on 127.0.0.1 that records what it
// received, and Prism (offline) as a validating proxy in front of it, checking requests and responses against
// a provider's published OpenAPI spec in ../shared/contracts.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { repoRoot } from './cli.js';
import { freePort } from './dnsmasq.js';

export interface StubRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface StubReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface JsonStub {
  url: string;
  requests: StubRequest[];
  stop(): Promise<void>;
}

/** Starts a JSON server on 127.0.0.1; `handle` answers each request (its body parsed as JSON when there is one). */
export async function startJsonStub(handle: (req: StubRequest) => StubReply | Promise<StubReply>): Promise<JsonStub> {
  const requests: StubRequest[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      let body: unknown = undefined;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = raw;
      }
      const r: StubRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, body };
      requests.push(r);
      Promise.resolve(handle(r)).then(
        (reply) => {
          const text = reply.body === undefined ? '' : JSON.stringify(reply.body);
          res.writeHead(reply.status, { ...(text ? { 'content-type': 'application/json' } : {}), ...reply.headers });
          res.end(text);
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ errors: [{ message: `stub error: ${err.message}` }] }));
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
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
