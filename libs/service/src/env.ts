/**
 * Reading a service's configuration from the environment: typed readers that
 * fail start-up with a ConfigError naming the variable, and the settings every
 * flywheel service shares (NATS, Postgres, artifact store, API tokens). Each
 * service's config.ts adds its own on top and is read once, in main.ts.
 */
import { resolve } from 'node:path';
import { MIN_TOKEN_LENGTH } from './auth.ts';

export type Env = Record<string, string | undefined>;

/** A bad or missing environment variable; main() prints it and exits 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
export const isConfigError = (e: unknown): e is ConfigError => e instanceof ConfigError;

/** An integer >= `min`, or `def` when unset. */
export function envInt(env: Env, name: string, def: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${name} must be an integer >= ${min}, got "${raw}"`);
  return n;
}

/** A URL with one of `schemes`, or `def` when unset. */
export function envUrl(env: Env, name: string, def: string, schemes: readonly string[]): string {
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

/** Settings every service reads the same way. */
export interface PlatformConfig {
  natsUrl: string;
  natsUser: string | undefined;
  natsPass: string | undefined;
  /** Isolates subjects and streams (tests, shared NATS); none in production. */
  busNamespace: string | undefined;
  databaseUrl: string;
  /** The service's Postgres schema. */
  dbSchema: string;
  /** Root of the artifact store: a file:// folder or an s3:// prefix. */
  artifactRoot: string;
  /** Bearer tokens the API accepts. */
  apiTokens: string[];
  logLevel: string;
}

/**
 * Reads the shared settings. `schemaVar` names the variable of the service's
 * schema (e.g. FW_DATA_DB_SCHEMA), `defaultSchema` its default.
 */
export function loadPlatformConfig(env: Env, schemaVar: string, defaultSchema: string): PlatformConfig {
  const tokens = (env['FW_API_TOKENS'] ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  if (tokens.length === 0) throw new ConfigError('FW_API_TOKENS must hold at least one bearer token (comma-separated)');
  if (tokens.some((t) => t.length < MIN_TOKEN_LENGTH))
    throw new ConfigError(`FW_API_TOKENS: every token must be at least ${MIN_TOKEN_LENGTH} characters`);
  const artifactRoot = env['FW_ARTIFACT_ROOT'] || `file://${resolve('.fw-data/artifacts')}/`;
  if (!/^(file|s3):\/\//.test(artifactRoot)) throw new ConfigError(`FW_ARTIFACT_ROOT must be a file:// or s3:// URI, got "${artifactRoot}"`);
  const ns = env['FW_BUS_NAMESPACE'] || undefined;
  if (ns !== undefined && !/^[A-Za-z0-9_-]+$/.test(ns)) throw new ConfigError('FW_BUS_NAMESPACE may hold letters, digits, _ and - only');
  const schema = env[schemaVar] || defaultSchema;
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new ConfigError(`${schemaVar} must be a lower-case SQL identifier`);
  return {
    natsUrl: envUrl(env, 'NATS_URL', 'nats://127.0.0.1:4222', ['nats', 'tls']),
    natsUser: env['NATS_USER'] || undefined,
    natsPass: env['NATS_PASS'] || undefined,
    busNamespace: ns,
    databaseUrl: envUrl(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres', ['postgres', 'postgresql']),
    dbSchema: schema,
    artifactRoot,
    apiTokens: tokens,
    logLevel: env['LOG_LEVEL'] || 'info',
  };
}
