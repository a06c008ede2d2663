import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '@flywheel/db/testing';
import { MIGRATIONS_DIR } from '../app.ts';
import { createRunsRepository, type RunSpec } from './runs.repository.ts';

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb({ prefix: 'trainer', migrationsDir: MIGRATIONS_DIR });
});
afterAll(() => t?.drop());

const spec: RunSpec = {
  manifestUri: 'file:///a/manifest.json',
  method: 'full',
  hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32 },
  worldSize: 2,
  checkpointInterval: 5,
  restartBudget: 1,
  seed: 1,
  launcher: 'local',
  device: 'cpu',
  precision: 'fp32',
};
const row = (step: number, over: Record<string, number | null> = {}) => ({
  run_id: 'r1', rank: 0, step, attempt: 0, loss: null, lr: null, grad_norm: null, tokens_per_s: null, val_loss: null, ...over,
});

describe('runs repository', () => {
  it('runs repository - insert is idempotent by id, attempts count restarts, finish happens once', async () => {
    const runs = createRunsRepository(t.db);
    expect((await runs.insert({ id: 'r1', trigger: 'manual', spec, datasetName: null, datasetVersion: null })).created).toBe(true);
    expect((await runs.insert({ id: 'r1', trigger: 'manual', spec, datasetName: null, datasetVersion: null })).created).toBe(false);
    expect(await runs.claim('r1', 'me')).toBe(true);
    expect(await runs.claim('r1', 'other')).toBe(false);
    await runs.beginAttempt('r1', 0, 0);
    await runs.endAttempt('r1', 0, 'failed', 'rank 1 killed by SIGKILL');
    await runs.beginAttempt('r1', 1, 5);
    expect((await runs.get('r1'))!).toMatchObject({ attempt: 1, restarts: 1, world_size: 2, max_steps: 10 });
    expect(await runs.finish('r1', 'completed', { modelUri: 'file:///m/', event: { runId: 'r1' } })).toBe(true);
    expect(await runs.finish('r1', 'failed', { reason: 'late', event: { runId: 'r1', reason: 'late' } })).toBe(false);
    expect((await runs.get('r1'))!).toMatchObject({ status: 'completed', model_uri: 'file:///m/', reason: null, announced: false, final_event: { runId: 'r1' } });
    expect((await runs.unannounced()).map((r) => r.id)).toEqual(['r1']);
    await runs.markAnnounced('r1');
    expect(await runs.unannounced()).toEqual([]);
  });

  it('runs repository - a step and its eval in one batch merge, and a re-run step replaces its row', async () => {
    const runs = createRunsRepository(t.db);
    await runs.recordMetrics([row(1, { loss: 5 }), row(2, { loss: 4, lr: 0.1 }), row(2, { val_loss: 4.5 })]);
    await runs.recordMetrics([row(2, { loss: 3.9, attempt: 1 })]);
    const m = await runs.metrics('r1', 0);
    expect(m.map((x) => [x.step, x.attempt, x.loss, x.lr, x.val_loss])).toEqual([
      [1, 0, 5, null, null],
      [2, 1, 3.9, 0.1, 4.5],
    ]);
  });
});
