/**
 * The trainer process itself killed with SIGKILL mid-run and started again:
 * it reconciles what it finds in Postgres (no worker of the old process left,
 * the run requeued and resumed from its checkpoint, not duplicated) and the
 * run ends with the weights of an uninterrupted run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createArtifactStore } from '@flywheel/artifacts';
import { createTestBus, freePort, type TestBus } from '@flywheel/bus/testing';
import { createTestDb, type TestDb } from '@flywheel/db/testing';
import { MIGRATIONS_DIR } from '../src/app.ts';
import { createRunsRepository } from '../src/repositories/runs.repository.ts';
import { tinyDataset, tinyRun } from './harness.ts';
import { DEFAULT_WORKER_BIN } from '../src/config.ts';
import { probeWorker } from '../src/worker-devices.ts';

const MAIN = new URL('../src/main.ts', import.meta.url).pathname;
let tdb: TestDb;
let tbus: TestBus;
let root: string;
let port: number;
let env: Record<string, string>;
const token = randomBytes(20).toString('hex');
const procs: ChildProcess[] = [];

beforeAll(async () => {
  tdb = await createTestDb({ prefix: 'trainer', migrationsDir: MIGRATIONS_DIR });
  tbus = await createTestBus({ source: 'trainer-test' });
  root = await mkdtemp(join(tmpdir(), 'fw-trainer-restart-'));
  port = await freePort();
  env = {
    ...(process.env as Record<string, string>),
    FW_API_TOKENS: token,
    FW_TRAINER_DB_SCHEMA: tdb.schema,
    FW_BUS_NAMESPACE: tbus.namespace,
    FW_ARTIFACT_ROOT: `file://${root}/artifacts/`,
    FW_WORK_DIR: join(root, 'work'),
    PORT: String(port),
    FW_STORE_PORT: '0',
    FW_MAX_RANKS: '2',
    FW_PROGRESS_INTERVAL_MS: '0',
    LOG_LEVEL: 'warn',
  };
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await tbus?.cleanup();
  await tdb?.drop();
  await rm(root, { recursive: true, force: true });
});

async function startTrainer(): Promise<ChildProcess> {
  const p = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(p);
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
    if (ok) return p;
    if (p.exitCode !== null) throw new Error(`trainer exited with ${p.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('trainer did not become ready');
}

describe('trainer restart', () => {
  it('restart - a trainer killed mid-run leaves no orphan, and its successor resumes the run from the checkpoint', async () => {
    const runs = createRunsRepository(tdb.db);
    const manifestUri = await tinyDataset(createArtifactStore(env['FW_ARTIFACT_ROOT']!));
    const body = tinyRun(manifestUri, { hyperparameters: { maxSteps: 500, learningRate: 1e-3, batchSize: 4, seqLen: 32 } });
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });

    const first = await startTrainer();
    const id = ((await (await api('/v1/runs', { method: 'POST', body: JSON.stringify(body) })).json()) as { id: string }).id;
    let pid = 0;
    for (let i = 0; i < 400 && !pid; i++) {
      const r = await runs.get(id);
      const rank = (await runs.ranks(id))[0];
      if (r && r.last_step >= 40 && rank?.pid) pid = rank.pid;
      else await new Promise((res) => setTimeout(res, 25));
    }
    expect(pid).toBeGreaterThan(0);
    first.kill('SIGKILL');
    await new Promise((res) => first.once('exit', res));

    await startTrainer();
    // Gone, or a zombie waiting for init to reap it: either way not running.
    const state = await readFile(`/proc/${pid}/stat`, 'utf8').then((s) => s.split(') ')[1]!.split(' ')[0], () => 'gone');
    expect(['gone', 'Z', 'X']).toContain(state);
    let r = await runs.get(id);
    for (let i = 0; i < 600 && r!.status !== 'completed' && r!.status !== 'failed'; i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await runs.get(id);
    }
    expect(r!.status, r!.reason ?? '').toBe('completed');
    expect(r!.restarts).toBe(1);
    const attempts = await runs.attempts(id);
    expect(attempts.map((a) => a.status)).toEqual(['failed', 'succeeded']);
    expect(attempts[0]!.reason).toMatch(/trainer stopped/);
    expect(attempts[1]!.resumed_from_step).toBeGreaterThanOrEqual(40);
    expect((await runs.list({ limit: 10 })).length).toBe(1);

    // The same request without interruption reaches the same bytes.
    const clean = ((await (await api('/v1/runs', { method: 'POST', body: JSON.stringify(body) })).json()) as { id: string }).id;
    let c = await runs.get(clean);
    for (let i = 0; i < 600 && c!.status !== 'completed' && c!.status !== 'failed'; i++) {
      await new Promise((res) => setTimeout(res, 100));
      c = await runs.get(clean);
    }
    expect(c!.status).toBe('completed');
    const w = (run: string) => readFile(join(root, 'work', run, 'model', 'model.safetensors'));
    expect(Buffer.compare(await w(id), await w(clean))).toBe(0);
  }, 120_000);

  it('restart - SIGTERM to the trainer: ranks checkpoint and stop, the process exits 0, the next one resumes the run', async () => {
    const runs = createRunsRepository(tdb.db);
    const manifestUri = (await runs.list({ limit: 1 }))[0]!.manifest_uri;
    const body = tinyRun(manifestUri, { hyperparameters: { maxSteps: 400, learningRate: 1e-3, batchSize: 4, seqLen: 32 }, checkpointInterval: 1000 });
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    const trainer = await startTrainer();
    const res = await fetch(`http://127.0.0.1:${port}/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const id = ((await res.json()) as { id: string }).id;
    for (let i = 0; i < 400 && ((await runs.get(id))?.last_step ?? 0) < 20; i++) await new Promise((r) => setTimeout(r, 25));
    trainer.kill('SIGTERM');
    const code = await new Promise((r) => trainer.once('exit', r));
    expect(code).toBe(0);
    const stopped = await runs.get(id);
    expect(stopped!.status).toBe('running'); // left for the next process
    const ranks = await runs.ranks(id, 0);
    expect(ranks[0]!.exit_code).toBe(143); // checkpointed on SIGTERM (no interval checkpoint before step 400)
    const cks = await runs.checkpoints(id);
    expect(cks.at(-1)!.reason).toBe('signal');

    await startTrainer();
    let r = await runs.get(id);
    for (let i = 0; i < 600 && r!.status !== 'completed' && r!.status !== 'failed'; i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await runs.get(id);
    }
    expect(r!.status, r!.reason ?? '').toBe('completed');
    const attempts = await runs.attempts(id);
    expect(attempts.map((a) => a.reason)).toEqual(['trainer shut down', null]);
    expect(attempts[1]!.resumed_from_step).toBe(cks.at(-1)!.step);
  }, 120_000);

  it('restart - FW_GPUS with a worker built without the CUDA backend: the trainer refuses to start (exit 2) and says why', async (ctx) => {
    const info = await probeWorker(env['FW_WORKER_BIN'] || DEFAULT_WORKER_BIN);
    if (!info || info.devices.includes('cuda')) ctx.skip(); // needs the cpu-only worker this machine builds
    const p = spawn(process.execPath, [MAIN], { env: { ...env, FW_GPUS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    procs.push(p);
    let stderr = '';
    p.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise((r) => p.once('exit', r));
    expect(code).toBe(2);
    expect(stderr).toMatch(/configuration error: FW_GPUS=1 but the worker .*fw_worker was built without the CUDA backend/);
  }, 30_000);
});
