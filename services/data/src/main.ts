/**
 * The data service process: reads its configuration, connects to Postgres,
 * NATS and the artifact store, applies migrations, serves HTTP and takes
 * ingest jobs from the shared JetStream queue until SIGTERM, then drains.
 */
import { addPlatformResources, connectPlatform, handleShutdownSignals, loadConfigOrExit } from '@flywheel/service';
import { buildDataService, migrateDataSchema, SERVICE_NAME, SERVICE_VERSION } from './app.ts';
import { loadConfig } from './config.ts';
import { startIngestConsumer } from './consumer.ts';

async function main(): Promise<void> {
  const config = loadConfigOrExit('data service', loadConfig);
  const platform = await connectPlatform({
    serviceName: SERVICE_NAME,
    serviceVersion: SERVICE_VERSION,
    config,
    migrate: migrateDataSchema,
  });
  const { db, bus, artifacts, logger } = platform;
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
  addPlatformResources(svc.app, platform);
  handleShutdownSignals(svc.app);
  await svc.app.listen({ host: config.host, port: config.port });
}

main().catch((e: unknown) => {
  console.error('data service: failed to start:', e);
  process.exit(1);
});
