import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalLauncher, cudaVisibleDevices } from './local.ts';
import { LaunchError } from './types.ts';

let dir: string;
let fake: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fw-local-launcher-'));
  fake = join(dir, 'fake_worker');
  // Prints what a rank sees, then waits like a training step that never ends.
  await writeFile(
    fake,
    '#!/bin/sh\necho "{\\"rank\\":\\"$RANK\\",\\"world\\":\\"$WORLD_SIZE\\",\\"local\\":\\"$LOCAL_RANK\\",\\"localWorld\\":\\"$LOCAL_WORLD_SIZE\\",\\"store\\":\\"$FW_STORE_URL\\",\\"token\\":\\"$FW_STORE_TOKEN\\",\\"omp\\":\\"$OMP_NUM_THREADS\\",\\"spec\\":\\"$1\\"}"\nexec sleep 60\n',
  );
  await chmod(fake, 0o755);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const pgrp = async (pid: number) => Number((await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')[2]);

describe('local launcher', () => {
  it('local - ranks get the torchrun environment and share one process group, which one signal stops', async () => {
    const launcher = createLocalLauncher({ maxRanks: 4 });
    const attempt = await launcher.launch({
      runId: 'r1',
      attempt: 0,
      worldSize: 3,
      workerBin: fake,
      specPath: join(dir, 'job.json'),
      workDir: dir,
      env: { FW_STORE_URL: 'http://127.0.0.1:1/v1/rendezvous/r1/0', FW_STORE_TOKEN: 'tok' },
      threadsPerRank: 2,
      device: 'cpu',
    });
    const seen = await Promise.all(attempt.ranks.map((r) => new Promise<Record<string, string>>((res) => r.onLine((l) => res(JSON.parse(l) as Record<string, string>)))));
    expect(seen.map((s) => [s['rank'], s['world'], s['local'], s['localWorld'], s['omp']])).toEqual([
      ['0', '3', '0', '3', '2'],
      ['1', '3', '1', '3', '2'],
      ['2', '3', '2', '3', '2'],
    ]);
    expect(seen.every((s) => s['store'] === 'http://127.0.0.1:1/v1/rendezvous/r1/0' && s['token'] === 'tok' && s['spec'] === join(dir, 'job.json'))).toBe(true);
    const leader = attempt.ranks[0]!.pid!;
    for (const r of attempt.ranks) expect(await pgrp(r.pid!)).toBe(leader);
    attempt.signal('SIGKILL');
    const exits = await Promise.all(attempt.ranks.map((r) => r.exited));
    expect(exits.every((e) => e.signal === 'SIGKILL')).toBe(true);
  });

  it('local - lines a rank writes before the callback is set are delivered, in order', async () => {
    const early = join(dir, 'early_worker');
    await writeFile(early, '#!/bin/sh\necho one\necho two\nexec sleep 60\n');
    await chmod(early, 0o755);
    const attempt = await createLocalLauncher({ maxRanks: 1 }).launch({
      runId: 'r2', attempt: 0, worldSize: 1, workerBin: early, specPath: 'x', workDir: dir, env: {}, threadsPerRank: 1, device: 'cpu',
    });
    await new Promise((r) => setTimeout(r, 300));
    const got: string[] = [];
    attempt.ranks[0]!.onLine((l) => got.push(l));
    expect(got).toEqual(['one', 'two']);
    attempt.signal('SIGKILL');
    expect((await attempt.ranks[0]!.exited).signal).toBe('SIGKILL');
  });

  it('local - the ranks of a cuda run see only the GPUs the run was given, LOCAL_RANK picking one of them', async () => {
    const gpuWorker = join(dir, 'gpu_worker');
    await writeFile(gpuWorker, '#!/bin/sh\necho "$LOCAL_RANK $CUDA_VISIBLE_DEVICES"\nexec sleep 60\n');
    await chmod(gpuWorker, 0o755);
    // The trainer itself was given GPUs 4-7: the run's GPUs 1 and 3 are the host's 5 and 7.
    const launcher = createLocalLauncher({ maxRanks: 4, gpus: 4, env: { CUDA_VISIBLE_DEVICES: '4,5,6,7' } });
    expect(launcher.maxGpus!()).toBe(4);
    const req = { runId: 'r3', attempt: 0, worldSize: 2, workerBin: gpuWorker, specPath: 'x', workDir: dir, env: {}, threadsPerRank: 1 };
    const lines = async (a: Awaited<ReturnType<typeof launcher.launch>>) => {
      const got = await Promise.all(a.ranks.map((r) => new Promise<string>((res) => r.onLine(res))));
      a.signal('SIGKILL');
      await Promise.all(a.ranks.map((r) => r.exited));
      return got;
    };
    expect(await lines(await launcher.launch({ ...req, device: 'cuda', gpus: [1, 3] }))).toEqual(['0 5,7', '1 5,7']);
    // A cpu run's environment is left as the trainer's.
    expect(await lines(await launcher.launch({ ...req, device: 'cpu' }))).toEqual(['0 4,5,6,7', '1 4,5,6,7']);
    expect(cudaVisibleDevices([0, 2], undefined)).toBe('0,2');
    expect(() => cudaVisibleDevices([2], '0,1')).toThrow(/GPU 2 is not among the trainer's CUDA_VISIBLE_DEVICES=0,1/);
    expect(createLocalLauncher({ maxRanks: 1 }).maxGpus!()).toBe(0);
  });

  it('local - a missing or non-executable worker binary is a LaunchError naming it', async () => {
    const launcher = createLocalLauncher({ maxRanks: 1 });
    const req = { runId: 'r', attempt: 0, worldSize: 1, specPath: 'x', workDir: dir, env: {}, threadsPerRank: 1, device: 'cpu' as const };
    await expect(launcher.launch({ ...req, workerBin: join(dir, 'nope') })).rejects.toThrow(LaunchError);
    await expect(launcher.launch({ ...req, workerBin: join(dir, 'nope') })).rejects.toThrow(/nope is missing or not executable/);
    expect(launcher.maxWorldSize()).toBe(1);
  });
});
