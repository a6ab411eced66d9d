/**
 * Workers of one batch on a PostgreSQL store (issue 14, DESIGN §6): several processes (on one host or several)
 * work one batch, each under a lease of its own (`batch_workers`), renewed every third of {@link LEASE_MS}.
 * A worker that joins, renews or leaves also ends the leases of workers that died (lease expired, or a process of
 * this host that is gone): their rows
 * left `sending` become `unknown` exactly as after a crash, and the rows reserved to them go back to the others.
 * The last worker to leave records the batch's end (done, paused or interrupted). On SQLite a batch keeps one
 * run under the batch's lease (`ledger.ts`).
 */
import { randomBytes } from 'node:crypto';
import type { CoreContext } from '../context.js';
import { LockedError, NotFoundError } from '../../errors.js';
import {
  countBatchWorkers,
  endBatchWorkers,
  joinBatchWorker,
  leaveBatchWorker,
  lockBatchRow,
  reapBatchWorkers,
  renewBatchWorker,
  selectBatchRowsLeft,
  takeBatchLease,
} from '../../store/repos/batches.js';
import { endRateGrants } from '../../store/rate-pg.js';
import { LEASE_MS, liveStats, type RunEnd } from './ledger.js';
import type { BatchStats } from './types.js';

/** A worker id: the process's lease owner (`pid@host`) and a random part, `pid@host/1a2b3c4d`. */
export function newWorkerId(owner: string): string {
  return `${owner}/${randomBytes(4).toString('hex')}`;
}

/** Whether the process of a lease owner (`pid@host`) lives (see `LeaseHolder.ownerAlive`). */
export type OwnerAlive = (owner: string) => boolean;

/** Whether a worker (`pid@host/random`) lives: its process, when it runs on this host; else until its lease expires. */
function workerAlive(alive: OwnerAlive): (worker: string) => boolean {
  return (worker) => alive(worker.split('/')[0]!);
}

/**
 * Registers `worker` on the batch: the first worker (no live one left) takes the batch as a lease-taker does on
 * SQLite (rows left `sending` become `unknown`, the batch `running`); a later one joins the running batch.
 * With `retryUnknown` every `unknown` row becomes `pending`. While another live process still loads the batch,
 * waits for it (until `signal` aborts).
 * @throws NotFoundError; LockedError when the batch's loader died before it finished, or `signal` aborted first.
 */
export async function joinWorkers(ctx: CoreContext, batchId: string, worker: string, retryUnknown: boolean, alive: OwnerAlive, signal?: AbortSignal): Promise<void> {
  // A batch another process is still loading (two hosts started the same cron line at once): wait for it.
  while ((await joinOnce(ctx, batchId, worker, retryUnknown, alive)) === 'loading') {
    if (signal?.aborted) throw new LockedError(`batch ${batchId} is still being loaded by another process; stopped before joining`);
    await ctx.clock.sleep(LOAD_POLL_MS, signal).catch(() => undefined);
  }
}

/** How often a worker waiting for another process to finish loading a batch looks again, in ms. */
const LOAD_POLL_MS = 250;

async function joinOnce(ctx: CoreContext, batchId: string, worker: string, retryUnknown: boolean, alive: OwnerAlive): Promise<'joined' | 'loading'> {
  return ctx.sql.tx(async (t) => {
    const b = await lockBatchRow(t, batchId);
    if (!b) throw new NotFoundError(`no batch ${batchId} in store ${ctx.storePath} (see \`switchboard batch list\`)`);
    const now = ctx.clock.now();
    const at = now.toISOString();
    if (b.status === 'loading') {
      const loader = b.lease_owner;
      if (loader && b.lease_expires_at && Date.parse(b.lease_expires_at) > now.getTime() && alive(loader)) return 'loading';
      throw new LockedError(`batch ${batchId} never finished loading (its loader is gone); run the same \`send batch\` again`);
    }
    await reapBatchWorkers(t, batchId, at, workerAlive(alive));
    const until = new Date(now.getTime() + LEASE_MS).toISOString();
    if ((await countBatchWorkers(t, batchId)) === 0) {
      await takeBatchLease(t, batchId, worker, at, until, retryUnknown);
      await joinBatchWorker(t, batchId, worker, at, until, false);
    } else {
      await joinBatchWorker(t, batchId, worker, at, until, retryUnknown);
    }
    return 'joined';
  });
}

/** Extends the worker's lease and ends the leases of dead workers. @returns false when the worker's lease was ended. */
export function renewWorker(ctx: CoreContext, batchId: string, worker: string, alive: OwnerAlive): Promise<boolean> {
  return ctx.sql.tx(async (t) => {
    const now = ctx.clock.now();
    if (!(await lockBatchRow(t, batchId))) return false;
    if (!(await renewBatchWorker(t, batchId, worker, new Date(now.getTime() + LEASE_MS).toISOString()))) return false;
    await reapBatchWorkers(t, batchId, now.toISOString(), workerAlive(alive));
    return true;
  });
}

/**
 * The rows left to the worker: `free` (pending, reserved to no worker: page again) and `held` (reserved or
 * being sent by other live workers: wait for them). Dead workers' leases are ended first.
 */
export function rowsLeft(ctx: CoreContext, batchId: string, worker: string, alive: OwnerAlive): Promise<{ free: number; held: number }> {
  return ctx.sql.tx(async (t) => {
    await lockBatchRow(t, batchId);
    await reapBatchWorkers(t, batchId, ctx.clock.now().toISOString(), workerAlive(alive));
    return selectBatchRowsLeft(t, batchId, worker);
  });
}

/** How a worker left its batch. */
export type WorkerLeft =
  /** Its lease had been ended by another worker (it stopped past its lease). */
  | { lost: true }
  /** `last`: it was the last worker and recorded `stats` and the batch's end; else others still work. */
  | { lost: false; last: boolean; stats: BatchStats; abandoned: number };

/**
 * Ends the worker's lease: when `stopped`, its rows still `sending` become `unknown`; its reserved pending rows go
 * back. The last worker records the batch's end: `done` when no row is pending or sending and nothing was
 * abandoned, else `end(stats, abandoned)` (interrupted or paused, with the reason).
 */
export function leaveWorkers(
  ctx: CoreContext,
  batchId: string,
  worker: string,
  alive: OwnerAlive,
  stopped: boolean,
  end: (stats: BatchStats, abandoned: number) => RunEnd,
): Promise<WorkerLeft> {
  return ctx.sql.tx(async (t) => {
    await lockBatchRow(t, batchId);
    const now = ctx.clock.now().toISOString();
    const abandoned = await leaveBatchWorker(t, batchId, worker, stopped ? 'no answer before the run was stopped; outcome unknown' : null, now);
    if (abandoned === null) return { lost: true };
    // Its grants of shared rates count one more second from now (requests it abandoned may still arrive).
    await endRateGrants(t, batchId, worker);
    await reapBatchWorkers(t, batchId, now, workerAlive(alive));
    const stats = await liveStats(ctx, batchId, t);
    if ((await countBatchWorkers(t, batchId)) > 0) return { lost: false, last: false, stats, abandoned };
    const e = end(stats, abandoned);
    await endBatchWorkers(t, batchId, { status: e.status, stats: JSON.stringify(stats), pausedReason: e.pausedReason ?? null }, now);
    return { lost: false, last: true, stats, abandoned };
  });
}
