// e2e: progress of `send batch` as each kind of user sees it: a bar on a terminal (tmux pseudo-terminal), a line
// every 5 s on stderr without one, nothing with --quiet; stdout keeps only the result. `--rate 10` makes the runs
// last long enough to see progress (the outbox provider itself answers at once).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { baseEnv, binPath, repoRoot, describe as show, type Workspace } from '../helpers/cli.js';
import { startTty } from '../helpers/tty.js';
import { outboxWorkspace, readOutbox } from '../helpers/setup.js';

describe('bulk-send progress', () => {
  let ws: Workspace;
  let out: string;
  beforeAll(async () => {
    ({ ws, out } = await outboxWorkspace());
  });
  afterAll(() => ws?.cleanup());

  const batch = (name: string, rows: number) => {
    const csv = ws.file(`${name}.csv`, ['email,name', ...Array.from({ length: rows }, (_, i) => `${name}${i}@example.com,N${i}`)].join('\n') + '\n');
    const tpl = ws.file(`${name}.txt`, 'Hi {{name}}\n');
    return ['send', 'batch', '--tenant', 'acme', '--csv', csv, '--template-file', tpl, '--subject', 'Hi', '--rate', '10', '--new-batch'];
  };

  test('on a terminal: a live bar on stderr with rows done/total, sent, failed, rate and ETA, cleared before the summary', async () => {
    const tty = startTty([process.execPath, binPath, ...batch('tty', 40)], { ...baseEnv(ws.home), ...ws.env }, repoRoot);
    try {
      const screen = await tty.waitFor(/\[#+-+\] \d+% sending: \d+\/40 done, \d+ sent, 0 failed, 0 skipped \(\d+\.\d msg\/s ETA \d+s\)/);
      // (An ETA is shown only while rows are pending: the bar was caught mid-run.)
      expect(Number(/sending: (\d+)\/40 done/.exec(screen)![1])).toBeGreaterThan(0);
      expect(await tty.exitCode(20_000), tty.screen()).toBe(0);
      const end = tty.screen();
      expect(end).toMatch(/Batch b-\S+ finished in \d+\.\d s/);
      expect(end).not.toMatch(/\d+% sending:/); // the bar was cleared
    } finally {
      tty.stop();
    }
    expect((await readOutbox(out)).filter((m) => m.to[0]?.startsWith('tty'))).toHaveLength(40);
  });

  test('without a terminal: a progress line on stderr every 5 s, stdout only the summary; --quiet prints none', async () => {
    const r = await ws.run(batch('pipe', 70), { timeoutMs: 30_000 });
    expect(r.exitCode, show(r)).toBe(0);
    // Each line is dated (ISO 8601, the local zone's offset) for cron logs.
    const lines = r.stderr.split('\n').filter((l) => /sending: \d+\/70 done/.test(l));
    expect(lines.length, r.stderr).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z) sending: \d+\/70 done, \d+ sent, 0 failed, 0 skipped \(\d+\.\d msg\/s ETA \d+s\)$/);
    expect(r.stdout).not.toMatch(/sending:/);
    expect(r.stdout).toMatch(/Batch b-\S+ finished/);

    // As long as the run above (over 5 s), so a progress line would have come.
    const q = await ws.run([...batch('quiet', 70), '--quiet'], { timeoutMs: 30_000 });
    expect(q.exitCode, show(q)).toBe(0);
    expect(q.stderr).not.toMatch(/sending:/);
  });
});
