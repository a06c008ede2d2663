/**
 * The data service process: reads its configuration, connects to Postgres,
 * NATS and the artifact store, applies migrations, serves HTTP and takes
 * ingest jobs from the shared JetStream queue until SIGTERM, then drains.
 */
import { mkdir } from 'node:fs/promises';
import { createArtifactStore } from '@flywheel/artifacts';
import { connectBus } from '@flywheel/bus';
import { createDb } from '@flywheel/db';
import { handleShutdownSignals } from '@flywheel/service';
import { createLogger, startTelemetry } from '@flywheel/telemetry';
import { buildDataService, migrateDataSchema, SERVICE_NAME, SERVICE_VERSION } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { startIngestConsumer } from './consumer.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`data service: configuration error: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  const telemetry = startTelemetry({ serviceName: `flywheel-${SERVICE_NAME}`, serviceVersion: SERVICE_VERSION });
  const logger = createLogger({ name: SERVICE_NAME, level: config.logLevel });
  const db = createDb({ url: config.databaseUrl, schema: config.dbSchema, applicationName: `flywheel-${SERVICE_NAME}` });
  await migrateDataSchema(db);
  const artifacts = createArtifactStore(config.artifactRoot);
  await artifacts.ping();
  await mkdir(config.workRoot, { recursive: true });
  const bus = await connectBus({
    servers: config.natsUrl,
    name: `${SERVICE_NAME}-${config.instanceId}`,
    source: SERVICE_NAME,
    namespace: config.busNamespace,
    user: config.natsUser,
    pass: config.natsPass,
  });
  const svc = await buildDataService({
    db,
    bus,
    artifacts,
    logger,
    apiTokens: config.apiTokens,
    maxUploadBytes: config.maxUploadBytes,
    maxRecordBytes: config.maxRecordBytes,
    workRoot: config.workRoot,
    instanceId: config.instanceId,
    staleAfterMs: config.staleAfterMs,
  });
  const consumer = await startIngestConsumer(bus, { job: svc.job, jobs: svc.jobs }, { concurrency: config.concurrency, backoffMs: config.backoffMs });
  // Shutdown: stop taking jobs and finish the ones in flight (a drainer), let
  // HTTP requests finish, then close the clients (resources, in reverse order).
  svc.app.addDrainer('ingest-consumer', () => consumer.stop());
  svc.app.addResource('telemetry', () => telemetry.shutdown());
  svc.app.addResource('postgres', () => db.close());
  svc.app.addResource('bus', () => bus.close());
  handleShutdownSignals(svc.app);
  await svc.app.listen({ host: config.host, port: config.port });
}

main().catch((e: unknown) => {
  console.error('data service: failed to start:', e);
  process.exit(1);
});
