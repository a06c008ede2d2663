/**
 * The data service's configuration: read from the environment once, checked,
 * turned into one typed object. A bad value stops start-up with a message
 * naming the variable.
 */
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, envInt, loadPlatformConfig, type Env, type PlatformConfig } from '@flywheel/service';

export interface DataConfig extends PlatformConfig {
  host: string;
  port: number;
  maxUploadBytes: number;
  maxRecordBytes: number;
  workRoot: string;
  /** Ingest jobs one process runs at once. */
  concurrency: number;
  instanceId: string;
  /** A running job whose owner stopped beating for this long is taken over by another replica. */
  staleAfterMs: number;
  /** Redelivery delays of a failed ingest message (FW_INGEST_BACKOFF_MS, comma-separated). */
  backoffMs: number[] | undefined;
}

export { ConfigError };

function backoff(env: Env, name: string): number[] | undefined {
  const raw = env[name];
  if (!raw) return undefined;
  const list = raw.split(',').map((x) => Number(x.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new ConfigError(`${name} must be comma-separated positive integers (ms), got "${raw}"`);
  return list;
}

export function loadConfig(env: Env = process.env): DataConfig {
  return {
    ...loadPlatformConfig(env, 'FW_DATA_DB_SCHEMA', 'data'),
    host: env['HOST'] || '127.0.0.1',
    port: envInt(env, 'PORT', 8081, 0),
    maxUploadBytes: envInt(env, 'FW_MAX_UPLOAD_BYTES', 4 * 1024 ** 3, 1),
    maxRecordBytes: envInt(env, 'FW_MAX_RECORD_BYTES', 8 * 1024 ** 2, 1024),
    workRoot: env['FW_WORK_DIR'] || join(tmpdir(), 'flywheel-data'),
    concurrency: envInt(env, 'FW_DATA_CONCURRENCY', 1, 1),
    instanceId: env['FW_INSTANCE_ID'] || `${hostname()}-${process.pid}`,
    staleAfterMs: envInt(env, 'FW_JOB_STALE_MS', 30_000, 600),
    backoffMs: backoff(env, 'FW_INGEST_BACKOFF_MS'),
  };
}
