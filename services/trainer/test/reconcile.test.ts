/**
 * Reconciliation at start-up, with a real orphaned worker (as left by a
 * trainer that died while its ranks kept running) and an unrelated process
 * whose pid a stale row names: the orphan is killed, the stranger is not,
 * and the run is requeued and finishes from its checkpoint.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_WORKER_BIN } from '../src/config.ts';
import { buildJobSpec } from '../src/run/job-spec.ts';
import { materialise } from '../src/run/materialise.ts';
import type { RunSpec } from '../src/repositories/runs.repository.ts';
import { startHarness, tinyDataset, TINY_CONFIG, type Harness } from './harness.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('reconcile', () => {
  it('reconcile - kills the orphaned worker of a run, spares a stranger with a recorded pid, requeues and resumes the run', async () => {
    const manifestUri = await tinyDataset(h.artifacts);
    const id = randomUUID();
    const spec: RunSpec = {
      manifestUri,
      modelConfig: TINY_CONFIG,
      method: 'full',
      hyperparameters: { maxSteps: 800, learningRate: 1e-3, batchSize: 4, seqLen: 32 },
      worldSize: 1,
      checkpointInterval: 10,
      restartBudget: 2,
      seed: 3,
      launcher: 'local',
      device: 'cpu',
      precision: 'fp32',
    };
    await h.runs.insert({ id, trigger: 'manual', spec, datasetName: null, datasetVersion: null });
    expect(await h.runs.claim(id, 'a-trainer-that-died')).toBe(true);
    await h.runs.beginAttempt(id, 0, 0);
    // What the dead trainer had launched: a worker that outlives it (stdout not a pipe).
    const workDir = join(h.workRoot, id);
    await mkdir(workDir, { recursive: true });
    const m = await materialise(h.artifacts, workDir, { manifestUri });
    const specPath = join(workDir, 'job.json');
    await writeFile(specPath, JSON.stringify(buildJobSpec(spec, m, workDir)));
    const orphan = spawn(DEFAULT_WORKER_BIN, [specPath], { cwd: workDir, detached: true, stdio: 'ignore', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
    await h.runs.rankStarted(id, 0, 0, orphan.pid!, 'localhost');
    await h.runs.rankStarted(id, 0, 1, stranger.pid!, 'localhost');
    await new Promise((r) => setTimeout(r, 500)); // let it train and checkpoint a little

    const result = await h.scheduler.reconcile();
    expect(result).toEqual({ requeued: [id], orphansKilled: 1, announced: 0 });
    expect(alive(orphan.pid!)).toBe(false);
    expect(alive(stranger.pid!)).toBe(true);
    stranger.kill('SIGKILL');
    expect((await h.runs.get(id))!.status).toBe('queued');

    await h.scheduler.kick();
    const r = await h.waitRun(id, (x) => x.status === 'completed' || x.status === 'failed', 90_000);
    expect(r.status, r.reason ?? '').toBe('completed');
    expect(r.restarts).toBe(1);
    const attempts = await h.runs.attempts(id);
    expect(attempts[1]!.resumed_from_step).toBeGreaterThan(0);
  }, 120_000);

  it('reconcile - a final event the bus never acked (trainer died in between) is published at the next start', async () => {
    const id = randomUUID();
    const spec: RunSpec = {
      manifestUri: 'file:///x/manifest.json',
      method: 'full',
      hyperparameters: { maxSteps: 5, learningRate: 1e-3, batchSize: 4, seqLen: 32 },
      worldSize: 1,
      checkpointInterval: 0,
      restartBudget: 0,
      seed: 1,
      launcher: 'local',
      device: 'cpu',
      precision: 'fp32',
    };
    await h.runs.insert({ id, trigger: 'manual', spec, datasetName: null, datasetVersion: null });
    await h.runs.claim(id, 'a-trainer-that-died');
    await h.runs.finish(id, 'failed', { reason: 'rank 0 exited with code 2', stage: 'train', event: { runId: id, reason: 'rank 0 exited with code 2', stage: 'train', restarts: 0 } });
    const result = await h.scheduler.reconcile();
    expect(result.announced).toBe(1);
    for (let i = 0; i < 100 && !h.events('fw.trainer.run.failed').some((e) => e.data.runId === id); i++) await new Promise((r) => setTimeout(r, 50));
    expect(h.events('fw.trainer.run.failed').find((e) => e.data.runId === id)?.data).toMatchObject({ reason: 'rank 0 exited with code 2', stage: 'train' });
    expect((await h.runs.get(id))!.announced).toBe(true);
    expect((await h.scheduler.reconcile()).announced).toBe(0);
  });

  it('reconcile - a missing worker binary fails the run with the reason', async () => {
    const other = await startHarness({ workerBin: '/nonexistent/fw_worker' });
    try {
      const manifestUri = await tinyDataset(other.artifacts);
      const res = await other.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: other.auth,
        payload: { dataset: { manifestUri }, model: { config: TINY_CONFIG }, hyperparameters: { maxSteps: 5, learningRate: 1e-3, batchSize: 4, seqLen: 32 } },
      });
      const r = await other.waitRun(res.json<{ id: string }>().id, (x) => x.status === 'failed');
      expect(r.reason).toMatch(/worker binary \/nonexistent\/fw_worker is missing/);
      expect(r.stage).toBe('launch');
      expect(r.restarts).toBe(0);
    } finally {
      await other.close();
    }
  });
});
