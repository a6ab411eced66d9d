// A real OS keychain for tests: a private D-Bus session bus (dbus-daemon) with gnome-keyring-daemon's Secret
// Service on it, unlocked with a throwaway password, in a fresh folder (notes/keychain.md). Nothing is skipped:
// without the Debian packages (dbus, gnome-keyring, libsecret-tools; .ci/run installs them) startKeyring throws.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestKeyring {
  /** Give these to the CLI so it reaches this keyring (and nothing of the developer's session). */
  env: { DBUS_SESSION_BUS_ADDRESS: string };
  /** secret-tool (libsecret: a second, independent Secret Service client) with this keyring's bus. */
  secretTool(args: string[], input?: string): { status: number | null; stdout: string; stderr: string };
  stop(): Promise<void>;
}

function need(bin: string): void {
  if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) {
    throw new Error(`${bin} is not installed: apt-get install -y --no-install-recommends dbus gnome-keyring libsecret-tools (see .ci/run)`);
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export async function startKeyring(): Promise<TestKeyring> {
  for (const bin of ['dbus-daemon', 'gnome-keyring-daemon', 'secret-tool']) need(bin);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-keyring-'));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    XDG_DATA_HOME: path.join(dir, 'data'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_RUNTIME_DIR: dir,
  };
  fs.mkdirSync(env.XDG_DATA_HOME!, { recursive: true });
  // A session bus without service activation: otherwise the first client call could start a second,
  // locked gnome-keyring-daemon before ours has claimed the Secret Service name.
  const config = path.join(dir, 'bus.conf');
  fs.writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path=${path.join(dir, 'bus')}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>\n`,
  );
  const bus = spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--print-address=1'], {
    env,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const address = await new Promise<string>((resolve, reject) => {
    bus.once('error', reject);
    bus.once('exit', (code) => reject(new Error(`dbus-daemon exited with ${code}`)));
    bus.stdout!.once('data', (d: Buffer) => resolve(String(d).trim()));
  });
  env.DBUS_SESSION_BUS_ADDRESS = address;
  const daemon = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], { env, stdio: ['pipe', 'ignore', 'ignore'] });
  daemon.stdin!.end('ci-throwaway-password');
  const secretTool = (args: string[], input?: string) => {
    const r = spawnSync('secret-tool', args, { env, input: input ?? '', encoding: 'utf8', timeout: 5000 });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };
  const stop = async () => {
    await stopChild(daemon);
    await stopChild(bus);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // `--unlock` can report success without unlocking anything: prove it with a store/lookup round trip.
  for (let i = 0; i < 50; i++) {
    if (secretTool(['store', '--label=sb-probe', 'sb', 'probe'], 'probe').status === 0 && secretTool(['lookup', 'sb', 'probe']).stdout === 'probe') {
      secretTool(['clear', 'sb', 'probe']);
      return { env: { DBUS_SESSION_BUS_ADDRESS: address }, secretTool, stop };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error('gnome-keyring-daemon did not come up unlocked within 5 s');
}

/** A D-Bus address whose socket accepts connections and never answers: a keychain call on it hangs. */
export async function startSilentBus(): Promise<{ address: string; stop(): Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-silent-bus-'));
  const file = path.join(dir, 'bus');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  return {
    address: `unix:path=${file}`,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
