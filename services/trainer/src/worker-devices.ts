/**
 * What the worker binary can train on: `fw_worker --version` prints
 * {"engine_version", "devices": ["cpu", "cuda"]} (docs/worker.md). The
 * trainer asks once at start, so that a host configured with GPUs
 * (FW_GPUS > 0) but a worker built without the CUDA backend is a
 * configuration error at start, not a failed run later.
 */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { ConfigError } from '@flywheel/service';

export interface WorkerInfo {
  engineVersion: string;
  devices: string[];
}

/** The worker's `--version` answer; undefined when the binary is missing (runs then fail with that reason). */
export async function probeWorker(bin: string, timeoutMs = 10_000): Promise<WorkerInfo | undefined> {
  try {
    await access(bin, constants.X_OK);
  } catch {
    return undefined;
  }
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(bin, ['--version'], { timeout: timeoutMs }, (err, out) => (err ? reject(new ConfigError(`${bin} --version failed: ${err.message}`)) : resolve(out))),
  );
  let info: unknown;
  try {
    info = JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch {
    throw new ConfigError(`${bin} --version did not print JSON: ${stdout.slice(0, 200)}`);
  }
  const o = info as { engine_version?: unknown; devices?: unknown };
  // Workers older than the devices field train on the cpu only.
  const devices = Array.isArray(o.devices) && o.devices.every((d) => typeof d === 'string') ? (o.devices as string[]) : ['cpu'];
  return { engineVersion: typeof o.engine_version === 'string' ? o.engine_version : 'unknown', devices };
}

/** Throws a ConfigError when GPUs are configured but the worker cannot use them. */
export function checkWorkerForGpus(bin: string, info: WorkerInfo | undefined, gpus: number): void {
  if (gpus > 0 && info && !info.devices.includes('cuda'))
    throw new ConfigError(
      `FW_GPUS=${gpus} but the worker ${bin} was built without the CUDA backend (its --version lists devices: ${info.devices.join(', ')}); ` +
        'build native/ with the CUDA toolkit and cuBLAS (docs/cuda.md) or set FW_GPUS=0',
    );
}
