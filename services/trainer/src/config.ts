/**
 * The trainer's configuration: read from the environment once, checked and
 * turned into one typed object. A bad value stops start-up naming the variable.
 */
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, envInt, loadPlatformConfig, type Env, type PlatformConfig } from '@flywheel/service';

export interface TrainerConfig extends PlatformConfig {
  host: string;
  port: number;
  /** Listener of the rendezvous store (separate from the API: the ranks reach it with per-attempt tokens). */
  storeHost: string;
  storePort: number;
  /** Host name the ranks use to reach the store (FW_STORE_URL). */
  storeAdvertiseHost: string;
  workRoot: string;
  workerBin: string;
  /** Ranks running at once on this machine (sum over runs). */
  maxRanks: number;
  /** OMP_NUM_THREADS of each rank. */
  threadsPerRank: number;
  /** GPUs the local launcher hands to cuda runs, one per rank (FW_GPUS; 0: cuda runs are refused). */
  gpus: number;
  launcher: 'local' | 'kubernetes';
  defaultRestartBudget: number;
  defaultCheckpointInterval: number;
  /** Minimum milliseconds between two fw.trainer.run.progress events of one run. */
  progressIntervalMs: number;
  instanceId: string;
  k8sNamespace: string;
  k8sImage: string;
}

export { ConfigError };

/** The worker built by the native CMake project, relative to this file. */
export const DEFAULT_WORKER_BIN = resolve(import.meta.dirname, '../../../native/build/fw_worker');

export function loadConfig(env: Env = process.env): TrainerConfig {
  const launcher = env['FW_LAUNCHER'] || 'local';
  if (launcher !== 'local' && launcher !== 'kubernetes') throw new ConfigError(`FW_LAUNCHER must be local or kubernetes, got "${launcher}"`);
  const host = env['HOST'] || '127.0.0.1';
  const threadsPerRank = envInt(env, 'FW_THREADS_PER_RANK', 1, 1);
  return {
    ...loadPlatformConfig(env, 'FW_TRAINER_DB_SCHEMA', 'trainer'),
    host,
    port: envInt(env, 'PORT', 8082, 0),
    storeHost: env['FW_STORE_HOST'] || host,
    storePort: envInt(env, 'FW_STORE_PORT', 8092, 0),
    storeAdvertiseHost: env['FW_STORE_ADVERTISE_HOST'] || (host === '0.0.0.0' ? hostname() : host),
    workRoot: env['FW_WORK_DIR'] || join(tmpdir(), 'flywheel-trainer'),
    workerBin: env['FW_WORKER_BIN'] || DEFAULT_WORKER_BIN,
    // Every rank runs threadsPerRank threads: by default the ranks together use the cores, no more.
    maxRanks: envInt(env, 'FW_MAX_RANKS', Math.max(1, Math.floor(availableParallelism() / threadsPerRank)), 1),
    threadsPerRank,
    gpus: envInt(env, 'FW_GPUS', 0, 0),
    launcher,
    defaultRestartBudget: envInt(env, 'FW_RESTART_BUDGET', 3, 0),
    defaultCheckpointInterval: envInt(env, 'FW_CHECKPOINT_INTERVAL', 100, 0),
    progressIntervalMs: envInt(env, 'FW_PROGRESS_INTERVAL_MS', 2000, 0),
    instanceId: env['FW_INSTANCE_ID'] || `${hostname()}-${process.pid}`,
    k8sNamespace: env['FW_K8S_NAMESPACE'] || 'default',
    k8sImage: env['FW_K8S_IMAGE'] || 'flywheel/worker:latest',
  };
}
