/**
 * The bulk-send runner's task slots (`TaskSlots`, src/core/limiter.ts): never more than the limit at once, a slot
 * freed by a task that fails as by one that succeeds, and `onIdle` only once every started task has ended.
 */
import { describe, expect, it } from 'vitest';
import { TaskSlots } from '../../src/core/limiter.js';

/** A task that ends when `finish` is called (with an error: it rejects). */
function controllable(): { task: () => Promise<string>; finish: (err?: Error) => void } {
  let finish!: (err?: Error) => void;
  const done = new Promise<string>((resolve, reject) => {
    finish = (err) => (err ? reject(err) : resolve('ok'));
  });
  return { task: () => done, finish };
}

describe('TaskSlots', () => {
  it('runs at most `limit` tasks at once, as a runner loop that waits for a free slot before each start', async () => {
    const slots = new TaskSlots(3);
    let running = 0;
    let peak = 0;
    const results: number[] = [];
    for (let i = 0; i < 20; i++) {
      await slots.free();
      void slots.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 1 + (i % 4)));
        running--;
        results.push(i);
      });
    }
    await slots.onIdle();
    expect(peak).toBe(3);
    expect(running).toBe(0);
    expect(results.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('a failed task hands its rejection to the caller and frees its slot', async () => {
    const slots = new TaskSlots(1);
    const a = controllable();
    const ran = slots.run(a.task);
    let freed = false;
    const waiting = slots.free().then(() => (freed = true));
    await Promise.resolve();
    expect(freed).toBe(false);
    a.finish(new Error('provider down'));
    await expect(ran).rejects.toThrow('provider down');
    await waiting;
    expect(freed).toBe(true);
  });

  it('onIdle resolves at once with nothing running, else when the last running task ends', async () => {
    const slots = new TaskSlots(2);
    await slots.onIdle();
    const a = controllable();
    const b = controllable();
    void slots.run(a.task);
    void slots.run(b.task).catch(() => undefined);
    let idle = false;
    const whenIdle = slots.onIdle().then(() => (idle = true));
    a.finish();
    await new Promise((r) => setTimeout(r, 5));
    expect(idle).toBe(false);
    b.finish(new Error('x'));
    await whenIdle;
    expect(idle).toBe(true);
  });
});
