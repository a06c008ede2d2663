/** fw.trainer.run.requested: creates a run once per event, and a bad request becomes fw.trainer.run.failed. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Subscription } from '@flywheel/bus';
import { startTrainerConsumers } from '../src/consumer.ts';
import { createLocalLauncher } from '../src/launchers/local.ts';
import { startHarness, tinyDataset, TINY_CONFIG, type Harness } from './harness.ts';

let h: Harness;
let subs: Subscription[];
let manifestUri: string;

beforeAll(async () => {
  h = await startHarness();
  manifestUri = await tinyDataset(h.artifacts);
  subs = await startTrainerConsumers(h.bus, {
    runs: h.runs,
    catalog: h.catalog,
    artifacts: h.artifacts,
    launchers: { local: createLocalLauncher({ maxRanks: 2 }) },
    defaultLauncher: 'local',
    defaultRestartBudget: 1,
    defaultCheckpointInterval: 5,
    kick: () => void h.scheduler.kick(),
    publishFailed: async (d, id) => {
      await h.bus.publish('fw.trainer.run.failed', d, { id });
    },
  });
});
afterAll(async () => {
  for (const s of subs ?? []) await s.stop();
  await h?.close();
});

const request = (over: Record<string, unknown> = {}) => ({
  trigger: 'manual' as const,
  modelConfig: TINY_CONFIG,
  datasetId: 'tiny',
  manifestUri,
  method: 'full' as const,
  hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32, seed: 5 },
  ...over,
});

describe('consumer', () => {
  it('consumer - a requested run is created once even when the event is published twice, and completes', async () => {
    const runId = 'req-run-1';
    await h.bus.publish('fw.trainer.run.requested', request({ runId }), { id: '6b0c2f0e-0000-4000-8000-000000000001' });
    await h.bus.publish('fw.trainer.run.requested', request({ runId }), { id: '6b0c2f0e-0000-4000-8000-000000000002' });
    const r = await h.waitRun(runId, (x) => x.status === 'completed' || x.status === 'failed');
    expect(r.status, r.reason ?? '').toBe('completed');
    expect((await h.runs.list({ limit: 10 })).filter((x) => x.id === runId)).toHaveLength(1);
  });

  it('consumer - a request naming an unknown dataset is answered with fw.trainer.run.failed, not retried', async () => {
    await h.bus.publish('fw.trainer.run.requested', request({ runId: 'req-run-2', manifestUri: undefined, datasetId: 'no-such-dataset' }));
    for (let i = 0; i < 100 && !h.events('fw.trainer.run.failed').some((e) => e.data.runId === 'req-run-2'); i++) await new Promise((r) => setTimeout(r, 50));
    const failed = h.events('fw.trainer.run.failed').find((e) => e.data.runId === 'req-run-2');
    expect(failed?.data.reason).toMatch(/no-such-dataset@latest is unknown/);
    expect(failed?.data.stage).toBe('request');
    expect(await h.runs.get('req-run-2')).toBeUndefined();
  });
});
