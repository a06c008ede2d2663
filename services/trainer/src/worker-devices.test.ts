import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isConfigError } from '@flywheel/service';
import { checkWorkerForGpus, probeWorker } from './worker-devices.ts';

const REAL_WORKER = new URL('../../../native/build/fw_worker', import.meta.url).pathname;

describe('worker devices', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fw-worker-devices-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function script(name: string, body: string): Promise<string> {
    const p = join(dir, name);
    await writeFile(p, `#!/bin/sh\n${body}\n`);
    await chmod(p, 0o755);
    return p;
  }

  it('worker devices - the built fw_worker reports its engine version and the devices it trains on', async () => {
    const info = await probeWorker(REAL_WORKER);
    expect(info).toBeDefined();
    expect(info!.devices[0]).toBe('cpu');
    expect(info!.engineVersion).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('worker devices - GPUs for a worker without the CUDA backend are a configuration error; with it, or without GPUs, fine', async () => {
    const cpuOnly = await probeWorker(await script('cpu', `echo '{"engine_version":"0.1.0","devices":["cpu"]}'`));
    const withCuda = await probeWorker(await script('cuda', `echo '{"engine_version":"0.1.0","devices":["cpu","cuda"]}'`));
    const old = await probeWorker(await script('old', `echo '{"engine_version":"0.0.9"}'`));
    expect(old?.devices).toEqual(['cpu']); // before the devices field: cpu only
    expect(() => checkWorkerForGpus('/w', cpuOnly, 0)).not.toThrow();
    expect(() => checkWorkerForGpus('/w', withCuda, 2)).not.toThrow();
    let err: unknown;
    try {
      checkWorkerForGpus('/w', cpuOnly, 2);
    } catch (e) {
      err = e;
    }
    expect(isConfigError(err)).toBe(true);
    expect((err as Error).message).toMatch(/FW_GPUS=2 but the worker \/w was built without the CUDA backend \(its --version lists devices: cpu\)/);
    // a missing binary is not decided here (each run then fails with the reason)
    expect(await probeWorker(join(dir, 'nope'))).toBeUndefined();
    expect(() => checkWorkerForGpus('/w', undefined, 2)).not.toThrow();
  });

  it('worker devices - a binary that fails or prints no JSON is a configuration error', async () => {
    await expect(probeWorker(await script('fails', 'exit 3'))).rejects.toSatisfy(isConfigError);
    await expect(probeWorker(await script('text', 'echo hello'))).rejects.toThrow(/did not print JSON/);
  });
});
