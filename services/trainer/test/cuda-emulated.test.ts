/**
 * A cuda run from the HTTP request to the registered model, with the real
 * worker's GPU path: native/build/fw_worker_emu is fw_worker linked against
 * the CUDA backend built for the CPU emulator (native/tests/emu,
 * docs/cuda.md "The whole backend on the CPU"), so the trainer places the
 * run on a GPU of this host, the worker trains it with the CUDA model loop
 * in bf16 (and fp16 with loss scaling), checkpoints, and writes the model
 * the trainer registers. Skipped when the native build has no emulated
 * worker.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, tinyDataset, tinyRun, type Harness } from './harness.ts';

const EMU_WORKER = resolve(import.meta.dirname, '../../../native/build/fw_worker_emu');
const have = existsSync(EMU_WORKER);

let h: Harness;
let manifestUri: string;

beforeAll(async () => {
  if (!have) return;
  h = await startHarness({ maxRanks: 2, gpus: 1, workerBin: EMU_WORKER });
  manifestUri = await tinyDataset(h.artifacts);
});
afterAll(async () => {
  await h?.close();
});

const read = async (uri: string) => {
  const chunks: Buffer[] = [];
  for await (const c of await h.artifacts.get(uri)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
};

describe.skipIf(!have)('cuda run on the emulated backend', () => {
  for (const precision of ['bf16', 'fp16'] as const) {
    it(`cuda - a ${precision} run trains on the worker's GPU path and registers its model`, async () => {
      const res = await h.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: h.auth,
        payload: tinyRun(manifestUri, {
          device: 'cuda',
          precision,
          hyperparameters: { maxSteps: 12, learningRate: 3e-3, batchSize: 4, seqLen: 32 },
          checkpointInterval: 5,
        }),
      });
      expect(res.statusCode, res.body).toBe(201);
      const id = res.json<{ id: string }>().id;
      const done = await h.waitRun(id, (r) => r.status === 'completed' || r.status === 'failed', 120_000);
      expect(done.status, done.reason ?? '').toBe('completed');
      const completed = h.events('fw.trainer.run.completed').find((e) => e.data.runId === id);
      expect(completed?.data).toMatchObject({ steps: 12, modelUri: done.model_uri });
      // the output is the fp32 master (docs/cuda.md): a full safetensors file and the run's config
      const weights = await read(`${done.model_uri}model.safetensors`);
      expect(weights.length).toBeGreaterThan(1000);
      const cfg = JSON.parse((await read(`${done.model_uri}config.json`)).toString('utf8')) as { hidden_size: number };
      expect(cfg.hidden_size).toBe(32);
    });
  }
});
