/**
 * The trainer's configuration: read from the environment once, checked and
 * turned into one typed object. A bad value stops start-up naming the variable.
 */
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface TrainerConfig {
  host: string;
  port: number;
  /** Listener of the rendezvous store (separate from the API: the ranks reach it with per-attempt tokens). */
  storeHost: string;
  storePort: number;
  /** Host name the ranks use to reach the store (FW_STORE_URL). */
  storeAdvertiseHost: string;
  natsUrl: string;
  natsUser: string | undefined;
  natsPass: string | undefined;
  busNamespace: string | undefined;
  databaseUrl: string;
  dbSchema: string;
  artifactRoot: string;
  apiTokens: string[];
  workRoot: string;
  workerBin: string;
  /** Ranks running at once on this machine (sum over runs). */
  maxRanks: number;
  /** OMP_NUM_THREADS of each rank. */
  threadsPerRank: number;
  launcher: 'local' | 'kubernetes';
  defaultRestartBudget: number;
  defaultCheckpointInterval: number;
  /** Minimum milliseconds between two fw.trainer.run.progress events of one run. */
  progressIntervalMs: number;
  instanceId: string;
  logLevel: string;
  k8sNamespace: string;
  k8sImage: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
  return n;
}

function url(env: Env, name: string, def: string, schemes: string[]): string {
  const raw = env[name] || def;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL, got "${raw}"`);
  }
  if (!schemes.includes(u.protocol.replace(/:$/, '')))
    throw new ConfigError(`${name} must use ${schemes.join(' or ')}://, got "${raw}"`);
  return raw;
}

/** The worker built by the native CMake project, relative to this file. */
export const DEFAULT_WORKER_BIN = resolve(import.meta.dirname, '../../../native/build/fw_worker');

export function loadConfig(env: Env = process.env): TrainerConfig {
  const tokens = (env['FW_API_TOKENS'] ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  if (tokens.length === 0) throw new ConfigError('FW_API_TOKENS must hold at least one bearer token (comma-separated)');
  if (tokens.some((t) => t.length < 16)) throw new ConfigError('FW_API_TOKENS: every token must be at least 16 characters');
  const artifactRoot = env['FW_ARTIFACT_ROOT'] || `file://${resolve('.fw-data/artifacts')}/`;
  if (!/^(file|s3):\/\//.test(artifactRoot)) throw new ConfigError(`FW_ARTIFACT_ROOT must be a file:// or s3:// URI, got "${artifactRoot}"`);
  const ns = env['FW_BUS_NAMESPACE'] || undefined;
  if (ns !== undefined && !/^[A-Za-z0-9_-]+$/.test(ns)) throw new ConfigError('FW_BUS_NAMESPACE may hold letters, digits, _ and - only');
  const schema = env['FW_TRAINER_DB_SCHEMA'] || 'trainer';
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new ConfigError('FW_TRAINER_DB_SCHEMA must be a lower-case SQL identifier');
  const launcher = env['FW_LAUNCHER'] || 'local';
  if (launcher !== 'local' && launcher !== 'kubernetes') throw new ConfigError(`FW_LAUNCHER must be local or kubernetes, got "${launcher}"`);
  const host = env['HOST'] || '127.0.0.1';
  const threadsPerRank = int(env, 'FW_THREADS_PER_RANK', 1, 1);
  return {
    host,
    port: int(env, 'PORT', 8082, 0),
    storeHost: env['FW_STORE_HOST'] || host,
    storePort: int(env, 'FW_STORE_PORT', 8092, 0),
    storeAdvertiseHost: env['FW_STORE_ADVERTISE_HOST'] || (host === '0.0.0.0' ? hostname() : host),
    natsUrl: url(env, 'NATS_URL', 'nats://127.0.0.1:4222', ['nats', 'tls']),
    natsUser: env['NATS_USER'] || undefined,
    natsPass: env['NATS_PASS'] || undefined,
    busNamespace: ns,
    databaseUrl: url(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres', ['postgres', 'postgresql']),
    dbSchema: schema,
    artifactRoot,
    apiTokens: tokens,
    workRoot: env['FW_WORK_DIR'] || join(tmpdir(), 'flywheel-trainer'),
    workerBin: env['FW_WORKER_BIN'] || DEFAULT_WORKER_BIN,
    // Every rank runs threadsPerRank threads: by default the ranks together use the cores, no more.
    maxRanks: int(env, 'FW_MAX_RANKS', Math.max(1, Math.floor(availableParallelism() / threadsPerRank)), 1),
    threadsPerRank,
    launcher,
    defaultRestartBudget: int(env, 'FW_RESTART_BUDGET', 3, 0),
    defaultCheckpointInterval: int(env, 'FW_CHECKPOINT_INTERVAL', 100, 0),
    progressIntervalMs: int(env, 'FW_PROGRESS_INTERVAL_MS', 2000, 0),
    instanceId: env['FW_INSTANCE_ID'] || `${hostname()}-${process.pid}`,
    logLevel: env['LOG_LEVEL'] || 'info',
    k8sNamespace: env['FW_K8S_NAMESPACE'] || 'default',
    k8sImage: env['FW_K8S_IMAGE'] || 'flywheel/worker:latest',
  };
}
