/**
 * The trainer process: reads its configuration, connects to Postgres, NATS
 * and the artifact store, applies migrations, reconciles runs an earlier
 * process left running, serves the API and the rendezvous store, and runs the
 * queue until SIGTERM (then the ranks checkpoint and stop; the next start
 * resumes them).
 */
import { stableUuid } from '@flywheel/contracts';
import { mkdir } from 'node:fs/promises';
import { createArtifactStore } from '@flywheel/artifacts';
import { connectBus } from '@flywheel/bus';
import { createDb } from '@flywheel/db';
import { handleShutdownSignals } from '@flywheel/service';
import { createLogger, startTelemetry } from '@flywheel/telemetry';
import { buildTrainerService, migrateTrainerSchema, SERVICE_NAME, SERVICE_VERSION } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { startTrainerConsumers } from './consumer.ts';
import { createKubernetesLauncher } from './launchers/kubernetes.ts';
import { createLocalLauncher } from './launchers/local.ts';
import type { Launcher } from './launchers/types.ts';
import { subjects } from '@flywheel/contracts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`trainer service: configuration error: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  const telemetry = startTelemetry({ serviceName: `flywheel-${SERVICE_NAME}`, serviceVersion: SERVICE_VERSION });
  const logger = createLogger({ name: SERVICE_NAME, level: config.logLevel });
  const db = createDb({ url: config.databaseUrl, schema: config.dbSchema, applicationName: `flywheel-${SERVICE_NAME}` });
  await migrateTrainerSchema(db);
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
  const launchers: Record<string, Launcher> = { local: createLocalLauncher({ maxRanks: config.maxRanks }) };
  if (config.launcher === 'kubernetes')
    launchers['kubernetes'] = createKubernetesLauncher({
      namespace: config.k8sNamespace,
      image: config.k8sImage,
      workVolumeClaim: process.env['FW_K8S_WORK_PVC'] || 'flywheel-work',
      workRoot: config.workRoot,
      maxNodes: Number(process.env['FW_K8S_MAX_NODES'] || 64),
    });
  const svc = await buildTrainerService({
    db,
    bus,
    artifacts,
    logger,
    apiTokens: config.apiTokens,
    launchers,
    defaultLauncher: config.launcher,
    workRoot: config.workRoot,
    workerBin: config.workerBin,
    maxRanks: config.maxRanks,
    threadsPerRank: config.threadsPerRank,
    instanceId: config.instanceId,
    store: { host: config.storeHost, port: config.storePort, advertiseHost: config.storeAdvertiseHost },
    defaultRestartBudget: config.defaultRestartBudget,
    defaultCheckpointInterval: config.defaultCheckpointInterval,
    progressIntervalMs: config.progressIntervalMs,
  });
  const reconciled = await svc.scheduler.reconcile();
  if (reconciled.requeued.length) logger.info(reconciled, 'reconciled runs left by an earlier process');
  const consumers = await startTrainerConsumers(bus, {
    runs: svc.runs,
    catalog: svc.catalog,
    artifacts,
    launchers,
    defaultLauncher: config.launcher,
    defaultRestartBudget: config.defaultRestartBudget,
    defaultCheckpointInterval: config.defaultCheckpointInterval,
    kick: () => void svc.scheduler.kick(),
    publishFailed: async (d, id) => {
      await bus.publish(subjects.trainerRunFailed, d, { id: id || stableUuid(`failed:${d.runId}`) });
    },
  });
  svc.app.addDrainer('consumers', async () => {
    for (const c of consumers) await c.stop();
  });
  svc.app.addDrainer('runs', () => svc.scheduler.stop());
  svc.app.addResource('telemetry', () => telemetry.shutdown());
  svc.app.addResource('postgres', () => db.close());
  svc.app.addResource('bus', () => bus.close());
  svc.app.addResource('rendezvous-store', () => svc.storeServer.close());
  handleShutdownSignals(svc.app);
  await svc.app.listen({ host: config.host, port: config.port });
  void svc.scheduler.kick();
}

main().catch((e: unknown) => {
  console.error('trainer service: failed to start:', e);
  process.exit(1);
});
