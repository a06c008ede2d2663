/**
 * World size 2 on this machine (Gloo over loopback, rendezvous through the
 * trainer's store): a rank SIGKILLed mid-run, a rank frozen with SIGSTOP in
 * the middle of the all-reduces, and a rank that never arrives.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_WORKER_BIN } from '../src/config.ts';
import { startHarness, tinyDataset, tinyRun, type Harness } from './harness.ts';

let h: Harness;
let manifestUri: string;

beforeAll(async () => {
  h = await startHarness({ maxRanks: 2, killGraceMs: 2000 });
  manifestUri = await tinyDataset(h.artifacts);
});
afterAll(() => h?.close());

const running = async (pid: number) => {
  const st = await readFile(`/proc/${pid}/stat`, 'utf8').then((s) => s.split(') ')[1]!.split(' ')[0], () => 'gone');
  return !['gone', 'Z', 'X'].includes(st!);
};

async function create(body: Record<string, unknown>): Promise<string> {
  const res = await h.app.inject({ method: 'POST', url: '/v1/runs', headers: h.auth, payload: body });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ id: string }>().id;
}

/** Calls `fn(pid of rank, step)` once rank 0 of attempt 0 reports `atStep`. */
function atStep(runId: string, atStep: number, rank: number, fn: (pid: number) => void): Promise<number> {
  return new Promise((resolve) => {
    let done = false;
    const off = h.hub.subscribe(runId, {
      metric: (m) => {
        if (done || m.rank !== 0 || m.attempt !== 0 || m.step < atStep) return;
        done = true;
        void h.runs.ranks(runId, 0).then((ranks) => {
          const pid = ranks.find((r) => r.rank === rank)!.pid!;
          fn(pid);
          off();
          resolve(pid);
        });
      },
      status: () => undefined,
    });
  });
}

const final = (id: string, ms = 120_000) => h.waitRun(id, (r) => r.status === 'completed' || r.status === 'failed', ms);

describe('distributed', () => {
  it('distributed - 2 ranks, one SIGKILLed at a random step: every rank stops, the run resumes and ends bit-identical to an uninterrupted 2-rank run', async () => {
    const body = tinyRun(manifestUri, { worldSize: 2, hyperparameters: { maxSteps: 80, learningRate: 1e-3, batchSize: 4, seqLen: 32 } });
    const clean = await create(body);
    const cleanRun = await final(clean);
    expect(cleanRun.status, cleanRun.reason ?? '').toBe('completed');
    const killed = await create(body);
    const victim = Math.random() < 0.5 ? 0 : 1;
    await atStep(killed, 10 + Math.floor(Math.random() * 50), victim, (pid) => process.kill(pid, 'SIGKILL'));
    const r = await final(killed);
    expect(r.status, r.reason ?? '').toBe('completed');
    expect(r.restarts).toBe(1);
    const ranks = await h.runs.ranks(killed, 0);
    expect(ranks.find((x) => x.rank === victim)!.signal).toBe('SIGKILL');
    expect(ranks.every((x) => x.exit_code !== null || x.signal !== null)).toBe(true);
    const w = (id: string) => readFile(join(h.workRoot, id, 'model', 'model.safetensors'));
    expect(Buffer.compare(await w(clean), await w(killed))).toBe(0);
  }, 240_000);

  it('distributed - a rank frozen with SIGSTOP: the other exits with a timeout within the collective timeout + 10 s, the run fails, no process is left', async () => {
    const id = await create(
      tinyRun(manifestUri, { worldSize: 2, restartBudget: 0, collectiveTimeoutMs: 2000, hyperparameters: { maxSteps: 100_000, learningRate: 1e-3, batchSize: 4, seqLen: 32 } }),
    );
    let stoppedAt = 0;
    const frozen = await atStep(id, 5, 1, (pid) => {
      process.kill(pid, 'SIGSTOP');
      stoppedAt = Date.now();
    });
    const r = await final(id, 60_000);
    const rank0 = (await h.runs.ranks(id, 0)).find((x) => x.rank === 0)!;
    expect(r.status).toBe('failed');
    expect(rank0.exit_code).toBe(7);
    expect(Date.now() - stoppedAt).toBeLessThan(2000 + 10_000 + 5000);
    expect(await running(frozen)).toBe(false);
    expect(await running(rank0.pid!)).toBe(false);
  }, 120_000);

  it('distributed - fewer ranks than the world size arrive: rank 0 exits with a rendezvous timeout within the join timeout + 10 s and the run fails', async () => {
    // A worker wrapper: rank 1 never starts the worker.
    const wrapper = join(h.root, 'rank1-absent.sh');
    await writeFile(wrapper, `#!/bin/sh\nif [ "$RANK" = 1 ]; then exec sleep 600; fi\nexec ${DEFAULT_WORKER_BIN} "$@"\n`);
    await chmod(wrapper, 0o755);
    const other = await startHarness({ maxRanks: 2, killGraceMs: 1000, workerBin: wrapper });
    try {
      const uri = await tinyDataset(other.artifacts);
      const res = await other.app.inject({
        method: 'POST',
        url: '/v1/runs',
        headers: other.auth,
        payload: tinyRun(uri, { worldSize: 2, restartBudget: 0, joinTimeoutMs: 2000 }),
      });
      const t0 = Date.now();
      const id = res.json<{ id: string }>().id;
      const r = await other.waitRun(id, (x) => x.status === 'failed', 60_000);
      expect(Date.now() - t0).toBeLessThan(2000 + 10_000 + 5000);
      const ranks = await other.runs.ranks(id, 0);
      expect(ranks.find((x) => x.rank === 0)!.exit_code).toBe(6);
      expect(r.reason).toMatch(/rendezvous|join/i);
      for (const k of ranks) expect(await running(k.pid!)).toBe(false);
    } finally {
      await other.close();
    }
  }, 120_000);
});
