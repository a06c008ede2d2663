/**
 * The data service's configuration: read from the environment once, checked,
 * turned into one typed object. A bad value stops start-up with a message
 * naming the variable.
 */
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface DataConfig {
  host: string;
  port: number;
  natsUrl: string;
  natsUser: string | undefined;
  natsPass: string | undefined;
  /** Isolates subjects and streams (tests, shared NATS); empty in production. */
  busNamespace: string | undefined;
  databaseUrl: string;
  /** Postgres schema of this service. */
  dbSchema: string;
  /** Root of the artifact store: a file:// folder or an s3:// prefix. */
  artifactRoot: string;
  /** Bearer tokens accepted by the API. */
  apiTokens: string[];
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
  logLevel: string;
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

function backoff(env: Env, name: string): number[] | undefined {
  const raw = env[name];
  if (!raw) return undefined;
  const list = raw.split(',').map((x) => Number(x.trim()));
  if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new ConfigError(`${name} must be comma-separated positive integers (ms), got "${raw}"`);
  return list;
}

export function loadConfig(env: Env = process.env): DataConfig {
  const tokens = (env['FW_API_TOKENS'] ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  if (tokens.length === 0) throw new ConfigError('FW_API_TOKENS must hold at least one bearer token (comma-separated)');
  if (tokens.some((t) => t.length < 16)) throw new ConfigError('FW_API_TOKENS: every token must be at least 16 characters');
  const artifactRoot = env['FW_ARTIFACT_ROOT'] || `file://${resolve('.fw-data/artifacts')}/`;
  if (!/^(file|s3):\/\//.test(artifactRoot)) throw new ConfigError(`FW_ARTIFACT_ROOT must be a file:// or s3:// URI, got "${artifactRoot}"`);
  const ns = env['FW_BUS_NAMESPACE'] || undefined;
  if (ns !== undefined && !/^[A-Za-z0-9_-]+$/.test(ns)) throw new ConfigError(`FW_BUS_NAMESPACE may hold letters, digits, _ and - only`);
  const schema = env['FW_DATA_DB_SCHEMA'] || 'data';
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new ConfigError(`FW_DATA_DB_SCHEMA must be a lower-case SQL identifier`);
  return {
    host: env['HOST'] || '127.0.0.1',
    port: int(env, 'PORT', 8081, 0),
    natsUrl: url(env, 'NATS_URL', 'nats://127.0.0.1:4222', ['nats', 'tls']),
    natsUser: env['NATS_USER'] || undefined,
    natsPass: env['NATS_PASS'] || undefined,
    busNamespace: ns,
    databaseUrl: url(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres', ['postgres', 'postgresql']),
    dbSchema: schema,
    artifactRoot,
    apiTokens: tokens,
    maxUploadBytes: int(env, 'FW_MAX_UPLOAD_BYTES', 4 * 1024 ** 3, 1),
    maxRecordBytes: int(env, 'FW_MAX_RECORD_BYTES', 8 * 1024 ** 2, 1024),
    workRoot: env['FW_WORK_DIR'] || join(tmpdir(), 'flywheel-data'),
    concurrency: int(env, 'FW_DATA_CONCURRENCY', 1, 1),
    instanceId: env['FW_INSTANCE_ID'] || `${hostname()}-${process.pid}`,
    staleAfterMs: int(env, 'FW_JOB_STALE_MS', 30_000, 600),
    backoffMs: backoff(env, 'FW_INGEST_BACKOFF_MS'),
    logLevel: env['LOG_LEVEL'] || 'info',
  };
}
