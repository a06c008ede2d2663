/**
 * Fault tolerance with real worker processes on a tiny model: a rank killed
 * with SIGKILL mid-run, a worker that exits with a non-retriable code, a
 * restart budget that runs out, a missing worker binary.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, tinyDataset, tinyRun, TINY_CONFIG, type Harness } from './harness.ts';

let h: Harness;
let manifestUri: string;
/** The uninterrupted run of the first test, the reference for bit-identical weights. */
let cleanRun: string;

beforeAll(async () => {
  h = await startHarness({ maxRanks: 2 });
  manifestUri = await tinyDataset(h.artifacts);
});
afterAll(() => h?.close());

async function create(body: Record<string, unknown>): Promise<string> {
  const res = await h.app.inject({ method: 'POST', url: '/v1/runs', headers: h.auth, payload: body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ id: string }>().id;
}

/** SIGKILLs rank 0 of the run's current attempt once it reports `atStep` (or later). */
function killAt(runId: string, atStep: number, times = 1): Promise<number[]> {
  return new Promise((resolve) => {
    const killedAt: number[] = [];
    let busy = false;
    const off = h.hub.subscribe(runId, {
      metric: (m) => {
        if (busy || m.rank !== 0 || m.step < atStep || killedAt.length >= times) return;
        busy = true;
        void h.runs.ranks(runId, m.attempt).then((ranks) => {
          const pid = ranks.find((r) => r.rank === 0 && r.exit_code === null && r.signal === null)?.pid;
          if (pid && m.attempt === killedAt.length) {
            process.kill(pid, 'SIGKILL');
            killedAt.push(m.step);
          }
          busy = false;
          if (killedAt.length >= times) {
            off();
            resolve(killedAt);
          }
        });
      },
      status: () => undefined,
    });
  });
}

const weights = (runId: string) => readFile(join(h.workRoot, runId, 'model', 'model.safetensors'));

describe('faults', () => {
  it('faults - a rank killed with SIGKILL at a random step: the run restarts from its checkpoint and ends bit-identical to an uninterrupted run', async () => {
    const body = tinyRun(manifestUri, { hyperparameters: { maxSteps: 120, learningRate: 1e-3, batchSize: 4, seqLen: 32 } });
    const clean = await create(body);
    cleanRun = clean;
    const killed = await create(body);
    const at = 10 + Math.floor(Math.random() * 50);
    const killedAt = await killAt(killed, at);
    const a = await h.waitRun(clean, (r) => r.status !== 'running' && r.status !== 'queued', 90_000);
    const b = await h.waitRun(killed, (r) => r.status !== 'running' && r.status !== 'queued', 90_000);
    expect(a.status, a.reason ?? '').toBe('completed');
    expect(b.status, b.reason ?? '').toBe('completed');
    expect(b.restarts).toBe(1);
    expect(Buffer.compare(await weights(clean), await weights(killed))).toBe(0);

    const view = (await h.app.inject({ method: 'GET', url: `/v1/runs/${killed}`, headers: h.auth })).json<{
      attempts: { attempt: number; status: string; reason: string; resumedFromStep: number; ranks: { signal: string | null }[] }[];
      modelUri: string;
    }>();
    expect(view.attempts.map((x) => x.status)).toEqual(['failed', 'succeeded']);
    expect(view.attempts[0]!.reason).toMatch(/rank 0 killed by SIGKILL/);
    expect(view.attempts[0]!.ranks[0]!.signal).toBe('SIGKILL');
    expect(view.attempts[1]!.resumedFromStep).toBeGreaterThan(0);
    // A checkpoint at or after the step the kill was aimed at (the worker runs on while the signal travels), before the end.
    expect(view.attempts[1]!.resumedFromStep % 5).toBe(0);
    expect(view.attempts[1]!.resumedFromStep).toBeGreaterThanOrEqual(killedAt[0]! - 5);
    expect(view.attempts[1]!.resumedFromStep).toBeLessThan(120);
    // The uploaded model folder holds the same bytes.
    const uploaded = await h.artifacts.get(`${view.modelUri}model.safetensors`);
    const chunks: Buffer[] = [];
    for await (const c of uploaded) chunks.push(c as Buffer);
    expect(Buffer.compare(Buffer.concat(chunks), await weights(killed))).toBe(0);
    for (let i = 0; i < 100 && !h.events('fw.trainer.run.completed').some((e) => e.data.runId === killed); i++) await new Promise((res) => setTimeout(res, 50));
    expect(h.events('fw.trainer.run.completed').some((e) => e.data.runId === killed && e.data.restarts === 1)).toBe(true);
    // The rendezvous stores of both attempts are gone.
    for (const attempt of [0, 1]) await expect(h.store.authorize(killed, attempt, 'x')).rejects.toMatchObject({ status: 410 });
  }, 120_000);

  it('faults - a corrupt latest checkpoint is refused, set aside, and the run falls back to the one before and still ends bit-identical', async () => {
    const body = tinyRun(manifestUri, { hyperparameters: { maxSteps: 120, learningRate: 1e-3, batchSize: 4, seqLen: 32 } });
    const id = await create(body);
    const ckptDir = join(h.workRoot, id, 'ckpt');
    const corrupted = await new Promise<string>((resolve) => {
      let done = false;
      const off = h.hub.subscribe(id, {
        metric: (m) => {
          if (done || m.rank !== 0 || m.step < 30) return;
          done = true;
          void (async () => {
            const pid = (await h.runs.ranks(id, 0))[0]!.pid!;
            process.kill(pid, 'SIGSTOP'); // frozen: it cannot write a newer checkpoint
            const latest = (await readdir(ckptDir)).filter((n) => /^step_\d{10}$/.test(n)).sort().at(-1)!;
            const f = join(ckptDir, latest, 'optim.safetensors');
            const b = await readFile(f);
            b[b.length >> 1]! ^= 0x01;
            await writeFile(f, b);
            process.kill(pid, 'SIGKILL');
            off();
            resolve(latest);
          })();
        },
        status: () => undefined,
      });
    });
    const r = await h.waitRun(id, (x) => x.status === 'completed' || x.status === 'failed', 90_000);
    expect(r.status, r.reason ?? '').toBe('completed');
    const attempts = await h.runs.attempts(id);
    expect(attempts.map((a) => a.status)).toEqual(['failed', 'failed', 'succeeded']);
    expect(attempts[1]!.reason).toMatch(/exited with code 4.*sha256 does not match/);
    expect(attempts[2]!.resumed_from_step).toBeLessThan(Number(corrupted.slice(5)));
    expect((await readdir(ckptDir)).some((n) => n.startsWith(`corrupt-${corrupted}`))).toBe(true);
    expect(Buffer.compare(await weights(cleanRun), await weights(id))).toBe(0);
  }, 120_000);

  it('faults - a worker exiting with code 2 (bad config) fails the run without restarts', async () => {
    const id = await create(tinyRun(manifestUri, { model: { config: { ...TINY_CONFIG, num_attention_heads: 5 } } }));
    const r = await h.waitRun(id, (x) => x.status === 'failed');
    expect(r.reason).toMatch(/exited with code 2/);
    expect(r.restarts).toBe(0);
    expect(await h.runs.attempts(id)).toHaveLength(1);
  });

  it('faults - a rank killed again and again is retried up to the restart budget and no further', async () => {
    const id = await create(tinyRun(manifestUri, { restartBudget: 2, hyperparameters: { maxSteps: 400, learningRate: 1e-3, batchSize: 4, seqLen: 32 } }));
    await killAt(id, 2, 3);
    const r = await h.waitRun(id, (x) => x.status === 'failed', 90_000);
    expect(r.restarts).toBe(2);
    expect(r.reason).toMatch(/restart budget of 2 spent/);
    expect(await h.runs.attempts(id)).toHaveLength(3);
  }, 120_000);
});
