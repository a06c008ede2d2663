/**
 * The run queue: queued runs start oldest first while the ranks of running
 * runs fit in `maxRanks` and the GPUs of running cuda runs in `gpus` (a run
 * never oversubscribes the machine; a big run at the head waits rather than
 * being overtaken forever). A cuda run holds particular GPUs, 0..gpus-1, one
 * per rank, until it ends; its launcher shows its ranks only those. At start-up,
 * `reconcile` settles what an earlier trainer process left `running`: its
 * worker processes are killed and the run goes back to the queue, to resume
 * from its last checkpoint (or fail when its restart budget is spent).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunRow, RunsRepository } from '../repositories/runs.repository.ts';
import type { Supervisor } from './supervisor.ts';

export interface SchedulerDeps {
  runs: RunsRepository;
  supervisor: Supervisor;
  maxRanks: number;
  /** GPUs of this host for cuda runs (FW_GPUS). */
  gpus: number;
  /** GPUs a run holds while it runs: one per rank for a cuda run whose launcher hands out this host's GPUs, else 0. */
  gpusNeeded(run: RunRow): number;
  owner: string;
  workRoot: string;
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** True when `pid` is a worker of this run (its command line names the run's job spec), so a recycled pid is never killed. */
async function isWorkerOf(pid: number, specPath: string): Promise<boolean> {
  const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmd.split('\0').includes(specPath);
}

export function createScheduler(deps: SchedulerDeps) {
  const running = new Map<string, { ranks: number; gpus: number[]; done: Promise<void> }>();
  let kicking: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  async function fill(): Promise<void> {
    let used = [...running.values()].reduce((n, r) => n + r.ranks, 0);
    const held = new Set([...running.values()].flatMap((r) => r.gpus));
    const free = Array.from({ length: deps.gpus }, (_, i) => i).filter((g) => !held.has(g));
    for (const q of await deps.runs.queued()) {
      if (stopped) return;
      if (running.has(q.id)) continue;
      const needGpus = deps.gpusNeeded(q);
      if (q.world_size > deps.maxRanks - used || needGpus > free.length) return; // head of line waits for room
      if (!(await deps.runs.claim(q.id, deps.owner))) continue;
      const run = (await deps.runs.get(q.id))!;
      used += run.world_size;
      const gpus = free.splice(0, needGpus);
      const done = deps.supervisor
        .run(run, needGpus > 0 ? { gpus } : {})
        .catch((e: unknown) => deps.log.warn({ err: e, runId: run.id }, 'run ended with an error'))
        .finally(() => {
          running.delete(run.id);
          void kick();
        });
      running.set(run.id, { ranks: run.world_size, gpus, done });
    }
  }

  /** Looks at the queue again (serialised; a kick during a pass runs one more pass). */
  function kick(): Promise<void> {
    if (stopped) return Promise.resolve();
    if (kicking) {
      again = true;
      return kicking;
    }
    kicking = (async () => {
      do {
        again = false;
        await fill().catch((e: unknown) => deps.log.warn({ err: e }, 'queue pass failed'));
      } while (again && !stopped);
      kicking = undefined;
    })();
    return kicking;
  }

  async function killOrphans(run: RunRow): Promise<number> {
    const specPath = join(deps.workRoot, run.id, 'job.json');
    let killed = 0;
    for (const r of await deps.runs.liveRanks(run.id)) {
      if (r.pid !== null && alive(r.pid) && (await isWorkerOf(r.pid, specPath))) {
        try {
          process.kill(-r.pid, 'SIGKILL');
        } catch {
          /* not a group leader */
        }
        try {
          process.kill(r.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
        killed++;
        for (let i = 0; i < 100 && alive(r.pid) && (await isWorkerOf(r.pid, specPath)); i++) await new Promise((res) => setTimeout(res, 50));
      }
      await deps.runs.rankExited(run.id, r.attempt, r.rank, null, 'ORPHANED');
    }
    return killed;
  }

  return {
    kick,
    /** Settles runs an earlier process left running; call once before the first kick. */
    async reconcile(): Promise<{ requeued: string[]; orphansKilled: number; announced: number }> {
      const announced = await deps.supervisor.announcePending();
      const requeued: string[] = [];
      let orphansKilled = 0;
      for (const run of await deps.runs.running()) {
        if (running.has(run.id)) continue;
        orphansKilled += await killOrphans(run);
        await deps.runs.endAttempt(run.id, run.attempt, 'failed', 'the trainer stopped while the attempt ran');
        await deps.runs.requeue(run.id, 'requeued after a trainer restart');
        requeued.push(run.id);
        deps.log.info({ runId: run.id }, 'run found running after a restart: orphans stopped, requeued');
      }
      return { requeued, orphansKilled, announced };
    },
    usedRanks: () => [...running.values()].reduce((n, r) => n + r.ranks, 0),
    /** The GPUs (indices) held by each run this process runs. */
    heldGpus: () => new Map([...running].filter(([, r]) => r.gpus.length > 0).map(([id, r]) => [id, r.gpus])),
    /** Stops taking runs; the supervised ones are asked to checkpoint and stop, and awaited. */
    async stop(): Promise<void> {
      stopped = true;
      await kicking;
      deps.supervisor.stopAll('SIGTERM');
      await Promise.all([...running.values()].map((r) => r.done));
    },
  };
}

export type Scheduler = ReturnType<typeof createScheduler>;
