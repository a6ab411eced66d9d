// Prism (@stoplight/prism-cli 5.14.2, offline) as a request validator: `prism mock` on 127.0.0.1 for one of the
// provider specs in /work/shared/contracts. A request that breaks the spec gets a 4xx answer and/or an
// `sl-violations` header naming the rule; `checkWithPrism` turns those into readable violation strings.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { repoRoot } from './cli.js';
import { forward, type ForwardedReply, type StubRequest } from './http-stub.js';

/** Folder of the providers' published OpenAPI specs (read-only). */
export const CONTRACTS = process.env.SWITCHBOARD_CONTRACTS ?? '/work/shared/contracts';

export interface PrismServer {
  url: string;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `prism mock` for `spec` (a file name in {@link CONTRACTS}) and waits until it listens (≤ 60 s). */
export async function startPrism(spec: string): Promise<PrismServer> {
  const port = await freePort();
  const cli = path.join(repoRoot, 'node_modules', '@stoplight', 'prism-cli', 'dist', 'index.js');
  const child: ChildProcess = spawn(process.execPath, [cli, 'mock', '-h', '127.0.0.1', '-p', String(port), path.join(CONTRACTS, spec)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`prism did not start for ${spec} within 60 s:\n${log.slice(-2000)}`)), 60_000);
    const onData = (d: Buffer) => {
      log += d.toString();
      if (/Prism is listening/.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`prism exited (${code}) for ${spec}:\n${log.slice(-2000)}`));
    });
  });
  // Keep draining its output so it never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * Forwards `req` to Prism and returns its answer plus the spec violations it reported: the `sl-violations`
 * header (errors only) and, for a 4xx answer without that header, the `validation` list of its problem body.
 */
export async function checkWithPrism(prism: PrismServer, req: StubRequest): Promise<{ reply: ForwardedReply; violations: string[] }> {
  const reply = await forward(prism.url, req);
  const violations: string[] = [];
  const header = reply.headers.get('sl-violations');
  if (header) {
    for (const v of JSON.parse(header) as Array<{ severity: string; message: string; location?: string[] }>) {
      if (v.severity === 'Error') violations.push(`${req.method} ${req.path}: ${(v.location ?? []).join('.')}: ${v.message}`);
    }
  }
  if (!header && reply.status >= 400) {
    let problems: Array<{ message: string; location?: string[] }> = [];
    try {
      problems = ((JSON.parse(reply.body) as { validation?: typeof problems }).validation ?? []);
    } catch {
      // not a problem document
    }
    violations.push(`${req.method} ${req.path}: HTTP ${reply.status}${problems.length ? `: ${[...new Set(problems.map((p) => `${(p.location ?? []).join('.')}: ${p.message}`))].join('; ')}` : ''}`);
  }
  return { reply, violations };
}
