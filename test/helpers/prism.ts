// Prism 5.14.2 (`@stoplight/prism-cli`, devDependency) as an offline mock of a provider's published OpenAPI
// spec from ../shared/contracts (next to the repository): it validates every request against the spec and answers with the
// documented responses (400 with an `sl-violations` header for a request that breaks the spec).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './cli.js';
import { freePort } from './dnsmasq.js';
import { forward, type RecordedRequest, type StubReply } from './http-stub.js';

/** The shared contracts folder (read-only). */
export const CONTRACTS = process.env.SWITCHBOARD_CONTRACTS ?? path.resolve(repoRoot, '..', 'shared', 'contracts');

export interface PrismMock {
  url: string;
  /** Everything Prism printed (validation results), for assertion messages. */
  log(): string;
  close(): Promise<void>;
}

/** Starts `prism mock` for `spec` (a file name in CONTRACTS) on 127.0.0.1; resolves when it listens. */
export async function startPrism(spec: string, timeoutMs = 60_000): Promise<PrismMock> {
  const port = await freePort();
  const bin = path.join(repoRoot, 'node_modules', '.bin', 'prism');
  const child: ChildProcess = spawn(bin, ['mock', '-h', '127.0.0.1', '-p', String(port), path.join(CONTRACTS, spec)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`prism did not start within ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (b: Buffer) => {
      output += b.toString();
      if (/Prism is listening/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`prism exited with ${code}:\n${output}`));
    });
  });
  // Keep collecting its output so it never blocks on a full pipe.
  child.stdout?.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-100_000)));
  child.stderr?.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-100_000)));
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => output,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** A started Prism mock (the name the sms/whatsapp tests use). */
export type PrismServer = PrismMock;

/**
 * Forwards `req` to Prism and returns its answer plus the spec violations it reported: the `sl-violations`
 * header (errors only) and, for a 4xx answer without that header, the `validation` list of its problem body.
 */
export async function checkWithPrism(prism: PrismMock, req: RecordedRequest): Promise<{ reply: StubReply & { body: string }; violations: string[] }> {
  const reply = (await forward(prism.url, req)) as StubReply & { body: string };
  const violations: string[] = [];
  const header = reply.headers?.['sl-violations'];
  if (header) {
    for (const v of JSON.parse(header) as Array<{ severity: string; message: string; location?: string[] }>) {
      if (v.severity === 'Error') violations.push(`${req.method} ${req.path}: ${(v.location ?? []).join('.')}: ${v.message}`);
    }
  }
  if (!header && reply.status >= 400) {
    let problems: Array<{ message: string; location?: string[] }> = [];
    try {
      problems = (JSON.parse(reply.body) as { validation?: typeof problems }).validation ?? [];
    } catch {
      // not a problem document
    }
    violations.push(`${req.method} ${req.path}: HTTP ${reply.status}${problems.length ? `: ${[...new Set(problems.map((p) => `${(p.location ?? []).join('.')}: ${p.message}`))].join('; ')}` : ''}`);
  }
  return { reply, violations };
}
