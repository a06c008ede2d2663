/**
 * Device and precision of a run: the requests the engines cannot train are
 * refused, and cuda runs hold GPUs of this host, so a run waits while its
 * GPUs are in use. No GPU is needed: the ranks are a stand-in script that
 * notes the GPUs it sees and trains until SIGTERM.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cudaVisibleDevices } from '../src/launchers/local.ts';
import { startHarness, tinyDataset, tinyRun, type Harness } from './harness.ts';

let h: Harness;
let manifestUri: string;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fw-devices-'));
  const fake = join(dir, 'fake_cuda_worker');
  // Like fw_worker on SIGTERM: exit 143.
  await writeFile(fake, '#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES" > "gpus-$RANK.txt"\ntrap \'exit 143\' TERM\nwhile :; do sleep 0.1; done\n');
  await chmod(fake, 0o755);
  h = await startHarness({ maxRanks: 4, gpus: 2, workerBin: fake, killGraceMs: 1000 });
  manifestUri = await tinyDataset(h.artifacts);
});
afterAll(async () => {
  await h?.close();
  await rm(dir, { recursive: true, force: true });
});

const post = (url: string, payload?: unknown) => h.app.inject({ method: 'POST', url, headers: h.auth, ...(payload !== undefined ? { payload: payload as object } : {}) });
const long = (over: Record<string, unknown>) => tinyRun(manifestUri, { hyperparameters: { maxSteps: 100_000, learningRate: 1e-3, batchSize: 4, seqLen: 32 }, ...over });

/** What a rank of the run wrote: the GPUs it sees. */
async function seenGpus(workRoot: string, runId: string, rank: number): Promise<string> {
  const file = join(workRoot, runId, `gpus-${rank}.txt`);
  for (let i = 0; i < 200; i++) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text) return text.trim();
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`rank ${rank} of run ${runId} never wrote ${file}`);
}

describe('devices', () => {
  it('devices - precision defaults to the device, and what the engines cannot train is refused with a clear detail', async () => {
    const cases: [Record<string, unknown>, number, string, RegExp][] = [
      [{ precision: 'bf16' }, 400, 'invalid-run', /precision bf16 needs device cuda/],
      [{ device: 'cpu', precision: 'bf16' }, 400, 'invalid-run', /precision bf16 needs device cuda/],
      [{ device: 'cuda', worldSize: 3 }, 422, 'cannot-place', /device cuda needs 3 GPUs \(one per rank\); this trainer has FW_GPUS=2/],
      [{ device: 'tpu' }, 400, 'validation-failed', /device/],
      [{ device: 'cpu', precision: 'fp16' }, 400, 'invalid-run', /precision fp16 needs device cuda/],
      [{ hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32, zero1: true } }, 400, 'invalid-run', /zero1 needs device cuda/],
      [{ device: 'cuda', precision: 'int8' }, 400, 'validation-failed', /precision/],
    ];
    for (const [over, status, slug, detail] of cases) {
      const res = await post('/v1/runs', tinyRun(manifestUri, over));
      expect(res.statusCode, res.body).toBe(status);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      const p = res.json<{ type: string; detail: string }>();
      expect(p.type).toBe(`urn:flywheel:problem:${slug}`);
      expect(JSON.stringify(p)).toMatch(detail);
    }
    expect(await h.runs.list({ limit: 100 })).toHaveLength(0);
  });

  it('devices - a cuda run waits while its GPUs are in use, each run sees only its own GPUs, and run.started names the device', async () => {
    const visible = (gpus: number[]) => cudaVisibleDevices(gpus, process.env['CUDA_VISIBLE_DEVICES']);
    const a = (await post('/v1/runs', long({ device: 'cuda' }))).json<{ id: string; spec: Record<string, unknown> }>();
    expect(a.spec).toMatchObject({ device: 'cuda', precision: 'bf16' });
    await h.waitRun(a.id, (r) => r.status === 'running');
    expect(await seenGpus(h.workRoot, a.id, 0)).toBe(visible([0]));

    // Two ranks are free, but one GPU: the 2-GPU run waits.
    const b = (await post('/v1/runs', long({ device: 'cuda', precision: 'fp32', worldSize: 2 }))).json<{ id: string }>().id;
    await new Promise((r) => setTimeout(r, 500));
    expect((await h.runs.get(b))!.status).toBe('queued');
    expect(h.scheduler.usedRanks()).toBe(1);
    expect(h.scheduler.heldGpus()).toEqual(new Map([[a.id, [0]]]));

    expect((await post(`/v1/runs/${a.id}/cancel`)).statusCode).toBe(202);
    await h.waitRun(a.id, (r) => r.status === 'cancelled');
    await h.waitRun(b, (r) => r.status === 'running');
    expect([await seenGpus(h.workRoot, b, 0), await seenGpus(h.workRoot, b, 1)]).toEqual([visible([0, 1]), visible([0, 1])]);
    expect(h.scheduler.heldGpus()).toEqual(new Map([[b, [0, 1]]]));
    const job = JSON.parse(await readFile(join(h.workRoot, b, 'job.json'), 'utf8')) as Record<string, unknown>;
    expect(job).toMatchObject({ device: 'cuda', precision: 'fp32' });

    for (let i = 0; i < 100 && h.events('fw.trainer.run.started').filter((e) => e.data.runId === b).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const started = h.events('fw.trainer.run.started').filter((e) => e.data.runId === a.id || e.data.runId === b);
    expect(started.map((e) => [e.data.runId, e.data.device, e.data.worldSize])).toEqual([
      [a.id, 'cuda', 1],
      [b, 'cuda', 2],
    ]);

    expect((await post(`/v1/runs/${b}/cancel`)).statusCode).toBe(202);
    await h.waitRun(b, (r) => r.status === 'cancelled');
    expect(h.scheduler.heldGpus().size).toBe(0);
  }, 60_000);

  it('devices - a LoRA run with distillation, recomputation and ZeRO-1 trains on cuda: its job.json carries them all', async () => {
    await h.artifacts.put('models/base/config.json', Buffer.from('{"model_type":"llama"}'), { overwrite: true });
    const baseUri = `${h.artifacts.rootUri}models/base/`;
    const res = await post(
      '/v1/runs',
      long({
        device: 'cuda',
        precision: 'fp16',
        method: 'lora',
        lora: { rank: 4, alpha: 8 },
        model: { baseUri },
        distillation: { teacherUri: baseUri, temperature: 2, alpha: 0.5 },
        hyperparameters: { maxSteps: 100_000, learningRate: 1e-3, batchSize: 4, seqLen: 32, recompute: true, zero1: true },
      }),
    );
    expect(res.statusCode, res.body).toBe(201);
    const run = res.json<{ id: string; spec: Record<string, unknown> }>();
    expect(run.spec).toMatchObject({ device: 'cuda', precision: 'fp16', method: 'lora' });
    await h.waitRun(run.id, (r) => r.status === 'running');
    // A run is 'running' from the moment it is claimed; job.json is written
    // after its data and models are in place, before rank 0 starts.
    await seenGpus(h.workRoot, run.id, 0);
    const job = JSON.parse(await readFile(join(h.workRoot, run.id, 'job.json'), 'utf8')) as Record<string, unknown>;
    expect(job).toMatchObject({
      device: 'cuda',
      precision: 'fp16',
      lora: { r: 4, alpha: 8 },
      distill: { alpha: 0.5, temperature: 2 },
      train: { recompute: true, zero1: true },
    });
    expect((await post(`/v1/runs/${run.id}/cancel`)).statusCode).toBe(202);
    await h.waitRun(run.id, (r) => r.status === 'cancelled');
    expect(h.scheduler.heldGpus().size).toBe(0);
  }, 30_000);
});
