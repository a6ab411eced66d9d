// Drives a command on a real pseudo-terminal through tmux (a private tmux server per session): send keys,
// wait for text on the screen, read the exit code. For the interactive prompts (@inquirer/prompts).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface TtySession {
  /** Sends keys as tmux send-keys does: literal text, or key names such as Enter, Down. */
  keys(...keys: string[]): void;
  /** Types text literally (no key-name interpretation). */
  type(text: string): void;
  /** The visible screen plus scrollback, as text. */
  screen(): string;
  /** Waits until the screen matches `pattern`; throws with the screen after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Waits for the command to end; returns its exit code. */
  exitCode(timeoutMs?: number): Promise<number>;
  stop(): void;
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Starts `argv` with exactly `env` (nothing inherited) on a 200x50 terminal. */
export function startTty(argv: string[], env: Record<string, string>, cwd: string): TtySession {
  if (spawnSync('sh', ['-c', 'command -v tmux']).status !== 0) throw new Error('tmux is not installed (apt-get install -y tmux; see .ci/run)');
  const socket = `sb-test-${randomBytes(4).toString('hex')}`;
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
  const command = `cd ${shq(cwd)} && env -i ${Object.entries(env).map(([k, v]) => shq(`${k}=${v}`)).join(' ')} ${argv.map(shq).join(' ')}; echo "[exit=$?]"; sleep 120`;
  tmux('new-session', '-d', '-s', 'main', '-x', '200', '-y', '50', command);
  const screen = () => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'main');
  const waitFor = async (pattern: RegExp, timeoutMs = 10_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const text = screen();
      if (pattern.test(text)) return text;
      if (Date.now() > until) throw new Error(`timed out waiting for ${pattern} on the terminal:\n${text}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return {
    keys: (...keys) => void tmux('send-keys', '-t', 'main', ...keys),
    type: (text) => void tmux('send-keys', '-t', 'main', '-l', text),
    screen,
    waitFor,
    exitCode: async (timeoutMs = 15_000) => Number(/\[exit=(\d+)\]/.exec(await waitFor(/\[exit=\d+\]/, timeoutMs))![1]),
    stop: () => {
      spawnSync('tmux', ['-L', socket, 'kill-server']);
    },
  };
}
