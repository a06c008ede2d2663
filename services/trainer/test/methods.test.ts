/**
 * Fine-tuning from a model folder in the artifact store: a LoRA run with the
 * merged model (adapter and merged folder uploaded and announced), and a
 * distillation run with a teacher folder. The base model is the output of a
 * from-scratch run, so the whole loop stays inside the platform.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, tinyDataset, tinyRun, type Harness } from './harness.ts';

let h: Harness;
let manifestUri: string;
let baseUri: string;

beforeAll(async () => {
  h = await startHarness();
  manifestUri = await tinyDataset(h.artifacts);
  const res = await h.app.inject({ method: 'POST', url: '/v1/runs', headers: h.auth, payload: tinyRun(manifestUri, { hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32 } }) });
  const base = await h.waitRun(res.json<{ id: string }>().id, (r) => r.status === 'completed' || r.status === 'failed');
  expect(base.status, base.reason ?? '').toBe('completed');
  baseUri = base.model_uri!;
});
afterAll(() => h?.close());

const exists = (uri: string) => h.artifacts.exists(uri);

describe('methods', () => {
  it('methods - a LoRA run on a base model folder uploads the adapter and the merged model and announces both', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: h.auth,
      payload: {
        dataset: { manifestUri },
        model: { baseUri },
        lora: { rank: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'], merge: true },
        hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32 },
        checkpointInterval: 5,
      },
    });
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json<{ id: string }>().id;
    const r = await h.waitRun(id, (x) => x.status === 'completed' || x.status === 'failed');
    expect(r.status, r.reason ?? '').toBe('completed');
    expect(r.model_uri).toMatch(/\/merged\/$/);
    expect(await exists(`${r.model_uri}model.safetensors`)).toBe(true);
    const adapter = r.model_uri!.replace(/merged\/$/, '');
    expect(await exists(`${adapter}adapter_model.safetensors`)).toBe(true);
    expect(await exists(`${adapter}adapter_config.json`)).toBe(true);
    for (let i = 0; i < 100 && !h.events('fw.trainer.run.completed').some((e) => e.data.runId === id); i++) await new Promise((res) => setTimeout(res, 50));
    const ev = h.events('fw.trainer.run.completed').find((e) => e.data.runId === id);
    expect(ev?.data).toMatchObject({ baseModelUri: baseUri, adapterUri: adapter, modelUri: r.model_uri });
  });

  it('methods - a distillation run reads its teacher folder and reports finite losses', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/runs',
      headers: h.auth,
      payload: {
        dataset: { manifestUri },
        model: { baseUri },
        distillation: { teacherUri: baseUri, temperature: 2, alpha: 0.5 },
        hyperparameters: { maxSteps: 8, learningRate: 1e-3, batchSize: 4, seqLen: 32 },
      },
    });
    expect(res.statusCode, res.body).toBe(201);
    const r = await h.waitRun(res.json<{ id: string }>().id, (x) => x.status === 'completed' || x.status === 'failed');
    expect(r.status, r.reason ?? '').toBe('completed');
    expect(Number.isFinite(r.last_loss)).toBe(true);
  });
});
