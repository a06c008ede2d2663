/** The HTTP API: auth on every route, bad input as problem+json, list/get, cancel, the queue, live metrics. */
import { listRoutes, exampleUrl } from '@flywheel/service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, tinyDataset, tinyRun, type Harness } from './harness.ts';

let h: Harness;
let manifestUri: string;

beforeAll(async () => {
  h = await startHarness({ maxRanks: 2 });
  manifestUri = await tinyDataset(h.artifacts);
});
afterAll(() => h?.close());

const post = (url: string, payload?: unknown) => h.app.inject({ method: 'POST', url, headers: h.auth, ...(payload !== undefined ? { payload: payload as object } : {}) });
const get = (url: string) => h.app.inject({ method: 'GET', url, headers: h.auth });
const long = () => tinyRun(manifestUri, { hyperparameters: { maxSteps: 100_000, learningRate: 1e-3, batchSize: 4, seqLen: 32 }, checkpointInterval: 50 });

describe('api', () => {
  it('api - every non-public route refuses a missing or wrong token', async () => {
    const routes = listRoutes(h.app).filter((r) => !r.public && r.method !== 'HEAD' && r.method !== 'OPTIONS');
    expect(routes.length).toBeGreaterThan(6);
    for (const r of routes) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token-wrong-token' }]) {
        const res = await h.app.inject({ method: r.method as 'GET', url: exampleUrl(r.url), headers });
        expect(res.statusCode, `${r.method} ${r.url}`).toBe(401);
      }
    }
  });

  it('api - bad input is a clear problem+json', async () => {
    const cases: [unknown, number, string][] = [
      [{ ...tinyRun(manifestUri), dataset: { name: 'nope', version: 'latest' } }, 404, 'dataset-not-found'],
      [{ ...tinyRun(manifestUri), dataset: { manifestUri: `${h.artifacts.rootUri}missing/manifest.json` } }, 404, 'dataset-not-found'],
      [{ ...tinyRun(manifestUri), dataset: { manifestUri: 'file:///etc/passwd' } }, 400, 'invalid-run'],
      [tinyRun(manifestUri, { hyperparameters: { maxSteps: 0, learningRate: 1e-3, batchSize: 4, seqLen: 32 } }), 400, 'validation-failed'],
      [tinyRun(manifestUri, { hyperparameters: { maxSteps: 10, learningRate: -1, batchSize: 4, seqLen: 32 } }), 400, 'validation-failed'],
      [tinyRun(manifestUri, { hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32, gradAccumSteps: 3 } }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32, warmupSteps: 11 } }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32, typo: 1 } }), 400, 'validation-failed'],
      [tinyRun(manifestUri, { worldSize: 3 }), 422, 'cannot-place'],
      [tinyRun(manifestUri, { launcher: 'slurm' }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { model: {} }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { model: { baseUri: `${h.artifacts.rootUri}models/none/` } }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { method: 'lora' }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { precision: 'bf16' }), 400, 'invalid-run'],
      [tinyRun(manifestUri, { device: 'cuda' }), 422, 'cannot-place'],
    ];
    for (const [body, status, slug] of cases) {
      const res = await post('/v1/runs', body);
      expect(res.statusCode, res.body).toBe(status);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json<{ type: string }>().type).toBe(`urn:flywheel:problem:${slug}`);
    }
    expect((await get('/v1/runs/does-not-exist')).json<{ type: string }>().type).toBe('urn:flywheel:problem:run-not-found');
    expect((await h.runs.list({ limit: 100 })).length).toBe(0); // nothing stored for a refused request
  });

  it('api - a shard whose bytes do not match the manifest fails the run at stage dataset', async () => {
    const uri = await tinyDataset(h.artifacts, 'tampered');
    await h.artifacts.put('datasets/tampered/v1/train-00000.bin', Buffer.from('FWSHARD1 but not the bytes the manifest names'), { overwrite: true });
    const id = (await post('/v1/runs', tinyRun(uri))).json<{ id: string }>().id;
    const r = await h.waitRun(id, (x) => x.status === 'failed');
    expect(r.stage).toBe('dataset');
    expect(r.reason).toMatch(/train-00000\.bin: sha256 [0-9a-f]{64} does not match the manifest/);
    expect(await h.runs.attempts(id)).toHaveLength(0);
  });

  it('api - runs wait in the queue rather than oversubscribe, and cancel stops them (ranks checkpoint on SIGTERM)', async () => {
    const a = (await post('/v1/runs', long())).json<{ id: string }>().id;
    const b = (await post('/v1/runs', long())).json<{ id: string }>().id;
    const c = (await post('/v1/runs', long())).json<{ id: string }>().id;
    await h.waitRun(a, (r) => r.status === 'running' && r.last_step > 60);
    await h.waitRun(b, (r) => r.status === 'running' && r.last_step > 0);
    expect((await h.runs.get(c))!.status).toBe('queued');
    expect(h.scheduler.usedRanks()).toBe(2);

    expect((await post(`/v1/runs/${a}/cancel`)).statusCode).toBe(202);
    const ra = await h.waitRun(a, (r) => r.status === 'cancelled');
    expect(ra.reason).toBe('cancelled on request');
    const cks = await h.runs.checkpoints(a);
    expect(cks.at(-1)!.reason).toBe('signal');
    expect((await h.runs.ranks(a))[0]!.exit_code).toBe(143);
    await h.waitRun(c, (r) => r.status === 'running');

    const list = (await get('/v1/runs?status=running')).json<{ runs: { id: string }[] }>().runs.map((r) => r.id).sort();
    expect(list).toEqual([b, c].sort());
    for (const id of [b, c]) expect((await post(`/v1/runs/${id}/cancel`)).statusCode).toBe(202);
    for (const id of [b, c]) await h.waitRun(id, (r) => r.status === 'cancelled');
    expect((await post(`/v1/runs/${a}/cancel`)).statusCode).toBe(409);
  }, 60_000);

  it('api - the metrics stream sends the series, status and an end event', async () => {
    const id = (await post('/v1/runs', tinyRun(manifestUri, { hyperparameters: { maxSteps: 30, learningRate: 1e-3, batchSize: 4, seqLen: 32 } }))).json<{ id: string }>().id;
    const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
    const res = await fetch(`${address}/v1/runs/${id}/metrics`, { headers: h.auth });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    const events = text.split('\n\n').filter((b) => b.startsWith('event:')).map((b) => ({ event: b.split('\n')[0]!.slice(7), data: JSON.parse(b.split('\n')[1]!.slice(6)) as Record<string, unknown> }));
    const steps = events.filter((e) => e.event === 'metric' && e.data['loss'] !== null && e.data['valLoss'] === null).map((e) => e.data['step']);
    expect(steps).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(events.some((e) => e.event === 'status')).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: 'end', data: { status: 'completed' } });
    const run = (await get(`/v1/runs/${id}`)).json<{ modelUri: string; checkpoints: unknown[]; attempts: unknown[]; spec: Record<string, unknown> }>();
    expect(run.spec).toMatchObject({ device: 'cpu', precision: 'fp32' });
    const started = () => h.events('fw.trainer.run.started').find((e) => e.data.runId === id);
    for (let i = 0; i < 100 && !started(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(started()?.data.device).toBe('cpu');
    expect(run.modelUri).toMatch(/models\//);
    expect(run.checkpoints.length).toBeGreaterThan(0);
    expect(run.attempts).toHaveLength(1);
  }, 60_000);
});
