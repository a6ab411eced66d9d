// A real DNS server for tests: dnsmasq on 127.0.0.1 at a free high port, answering only from a generated
// config (no upstream servers, no /etc/hosts), authoritative-style: unknown names are NXDOMAIN.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Resolver } from 'node:dns/promises';

/** One record to serve. Host names without a trailing dot. */
export type TestRecord =
  | { type: 'CNAME'; host: string; value: string }
  | { type: 'TXT'; host: string; value: string }
  | { type: 'MX'; host: string; value: string; priority?: number };

export interface TestDns {
  port: number;
  /** `127.0.0.1:<port>`, for `--resolver`. */
  server: string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (dnsmasq listens on UDP and TCP at the same port). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** dnsmasq config lines for `records`. CNAME targets get a host-record, since dnsmasq serves a CNAME only to a name it knows. */
export function dnsmasqConfig(records: TestRecord[]): string {
  const lines = ['local=/#/'];
  const known = new Set(records.filter((r) => r.type === 'CNAME').map((r) => r.host));
  const targets = new Set<string>();
  for (const r of records) {
    if (r.type === 'CNAME') {
      lines.push(`cname=${r.host},${r.value}`);
      if (!known.has(r.value)) targets.add(r.value);
    } else if (r.type === 'TXT') {
      lines.push(`txt-record=${r.host},"${r.value.replace(/["\\]/g, (c) => `\\${c}`)}"`);
    } else {
      lines.push(`mx-host=${r.host},${r.value},${r.priority ?? 10}`);
    }
  }
  [...targets].forEach((t, i) => lines.push(`host-record=${t},127.0.0.${(i % 250) + 2}`));
  return lines.join('\n') + '\n';
}

/** Starts dnsmasq serving `records`; rejects if it is not installed or does not answer within 10 s. */
export async function startDnsmasq(records: TestRecord[]): Promise<TestDns> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-dns-'));
  const conf = path.join(dir, 'dnsmasq.conf');
  fs.writeFileSync(conf, dnsmasqConfig(records));
  const port = await freePort();
  const args = [
    '--no-daemon',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    '--user=root', // CI runs as root in a sandbox where dropping to `nobody` is not allowed
    `--pid-file=${path.join(dir, 'pid')}`,
    `--conf-file=${conf}`,
  ];
  // Debian installs it in /usr/sbin, which is not on every user's PATH.
  const bin = fs.existsSync('/usr/sbin/dnsmasq') ? '/usr/sbin/dnsmasq' : 'dnsmasq';
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnError = new Promise<never>((_, reject) => child.once('error', (err) => reject(new Error(`dnsmasq could not start (${err.message}); install it: apt-get install dnsmasq`))));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const ready = (async () => {
    const r = new Resolver({ timeout: 200, tries: 1 });
    r.setServers([`127.0.0.1:${port}`]);
    for (let i = 0; i < 50; i++) {
      if (child.exitCode !== null) throw new Error(`dnsmasq exited with ${child.exitCode}: ${stderr}`);
      try {
        await r.resolveTxt('ready.invalid');
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTFOUND' || (err as NodeJS.ErrnoException).code === 'ENODATA') return;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`dnsmasq did not answer on 127.0.0.1:${port}: ${stderr}`);
  })();
  try {
    await Promise.race([ready, spawnError]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, server: `127.0.0.1:${port}`, stop };
}
