/**
 * fw.trainer.run.requested: creates a run once per event, and a bad request
 * becomes fw.trainer.run.failed. The device of a request (its resources, or a
 * policy's template) reaches the run request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stableUuid } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';
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

  /** The fw.trainer.run.failed event of `runId`, once it came. */
  async function failedEvent(runId: string) {
    for (let i = 0; i < 100 && !h.events('fw.trainer.run.failed').some((e) => e.data.runId === runId); i++) await new Promise((r) => setTimeout(r, 50));
    return h.events('fw.trainer.run.failed').find((e) => e.data.runId === runId);
  }

  it('consumer - resources.device reaches the run request: a cuda run on a trainer without GPUs is refused', async () => {
    await h.bus.publish('fw.trainer.run.requested', request({ runId: 'req-run-3', resources: { device: 'cuda', nodes: 1, processesPerNode: 2 } }));
    const failed = await failedEvent('req-run-3');
    expect(failed?.data.reason).toBe('device cuda needs 2 GPUs (one per rank); this trainer has FW_GPUS=0');
    expect(failed?.data.stage).toBe('request');
    expect(await h.runs.get('req-run-3')).toBeUndefined();
  });

  it('consumer - device and precision of a policy template pass through to the run request', async () => {
    const ready = { ...validPayloads['fw.data.dataset.ready'], datasetName: 'gpu-policy', manifestUri };
    await h.catalog.setPolicy('gpu-policy', true, { model: { config: TINY_CONFIG }, hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32 }, precision: 'bf16' });
    const cpuId = '6b0c2f0e-0000-4000-8000-000000000003';
    await h.bus.publish('fw.data.dataset.ready', ready, { id: cpuId });
    expect((await failedEvent(stableUuid(`policy:${cpuId}`)))?.data.reason).toBe('precision bf16 needs device cuda: the cpu engine trains in fp32');
    await h.catalog.setPolicy('gpu-policy', true, { model: { config: TINY_CONFIG }, hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32 }, device: 'cuda' });
    const cudaId = '6b0c2f0e-0000-4000-8000-000000000004';
    await h.bus.publish('fw.data.dataset.ready', ready, { id: cudaId });
    expect((await failedEvent(stableUuid(`policy:${cudaId}`)))?.data.reason).toMatch(/^device cuda needs 1 GPU \(one per rank\)/);
  });
});
