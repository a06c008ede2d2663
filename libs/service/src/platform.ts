/**
 * What every flywheel service process does the same way at start-up: read its
 * configuration (exit 2 on a bad value), start telemetry and the logger,
 * connect Postgres (and migrate its schema), the artifact store and NATS;
 * then the readiness checks over those three and their closing order on
 * shutdown. A service's main.ts keeps only what is its own.
 */
import { mkdir } from 'node:fs/promises';
import { createArtifactStore } from '@flywheel/artifacts';
import type { ArtifactStore } from '@flywheel/artifacts';
import { connectBus } from '@flywheel/bus';
import type { Bus } from '@flywheel/bus';
import { createDb } from '@flywheel/db';
import type { Db } from '@flywheel/db';
import { createLogger, startTelemetry } from '@flywheel/telemetry';
import type { Logger, Telemetry } from '@flywheel/telemetry';
import type { App } from './app.ts';
import { ConfigError } from './env.ts';
import type { PlatformConfig } from './env.ts';
import type { ReadinessCheck } from './health.ts';

function exitOnConfigError(label: string, e: unknown): never {
  if (e instanceof ConfigError) {
    console.error(`${label}: configuration error: ${e.message}`);
    process.exit(2);
  }
  throw e;
}

/** The configuration loader's result, or exit 2 with the reason on a ConfigError. */
export function loadConfigOrExit<C>(label: string, load: () => C): C {
  try {
    return load();
  } catch (e) {
    exitOnConfigError(label, e);
  }
}

/** The same for a check that has to wait (a probe of a binary, a file): exit 2 on a ConfigError. */
export async function checkConfigOrExit<C>(label: string, check: () => Promise<C>): Promise<C> {
  try {
    return await check();
  } catch (e) {
    exitOnConfigError(label, e);
  }
}

export interface PlatformClients {
  telemetry: Telemetry;
  logger: Logger;
  db: Db;
  artifacts: ArtifactStore;
  bus: Bus;
}

export interface ConnectPlatformOptions {
  serviceName: string;
  serviceVersion: string;
  config: PlatformConfig & { workRoot: string; instanceId: string };
  /** Applies the service's migrations before anything else touches its schema. */
  migrate: (db: Db) => Promise<unknown>;
}

/** Telemetry, logger, migrated Postgres, a reachable artifact store, the work folder and NATS. */
export async function connectPlatform(opts: ConnectPlatformOptions): Promise<PlatformClients> {
  const { serviceName: name, config } = opts;
  const telemetry = startTelemetry({ serviceName: `flywheel-${name}`, serviceVersion: opts.serviceVersion });
  const logger = createLogger({ name, level: config.logLevel });
  const db = createDb({ url: config.databaseUrl, schema: config.dbSchema, applicationName: `flywheel-${name}` });
  await opts.migrate(db);
  const artifacts = createArtifactStore(config.artifactRoot);
  await artifacts.ping();
  await mkdir(config.workRoot, { recursive: true });
  const bus = await connectBus({
    servers: config.natsUrl,
    name: `${name}-${config.instanceId}`,
    source: name,
    namespace: config.busNamespace,
    user: config.natsUser,
    pass: config.natsPass,
  });
  return { telemetry, logger, db, artifacts, bus };
}

/** /readyz checks for the three shared dependencies. */
export function platformReadiness(deps: { db: Db; bus: Bus; artifacts: ArtifactStore }): ReadinessCheck[] {
  return [
    { name: 'postgres', check: () => deps.db.ping() },
    { name: 'nats', check: () => deps.bus.nc.flush() },
    { name: 'artifacts', check: () => deps.artifacts.ping() },
  ];
}

/** Close telemetry, Postgres and NATS on shutdown (resources close in reverse order of adding). */
export function addPlatformResources(app: App, clients: Pick<PlatformClients, 'telemetry' | 'db' | 'bus'>): void {
  app.addResource('telemetry', () => clients.telemetry.shutdown());
  app.addResource('postgres', () => clients.db.close());
  app.addResource('bus', () => clients.bus.close());
}
