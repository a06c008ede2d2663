/**
 * The trainer process: reads its configuration, connects to Postgres, NATS
 * and the artifact store, applies migrations, reconciles runs an earlier
 * process left running, serves the API and the rendezvous store, and runs the
 * queue until SIGTERM (then the ranks checkpoint and stop; the next start
 * resumes them).
 */
import { stableUuid } from '@flywheel/contracts';
import { addPlatformResources, checkConfigOrExit, connectPlatform, handleShutdownSignals, loadConfigOrExit } from '@flywheel/service';
import { buildTrainerService, migrateTrainerSchema, SERVICE_NAME, SERVICE_VERSION } from './app.ts';
import { loadConfig } from './config.ts';
import { startTrainerConsumers } from './consumer.ts';
import { createKubernetesLauncher } from './launchers/kubernetes.ts';
import { createLocalLauncher } from './launchers/local.ts';
import type { Launcher } from './launchers/types.ts';
import { checkWorkerForGpus, probeWorker } from './worker-devices.ts';
import { subjects } from '@flywheel/contracts';

async function main(): Promise<void> {
  const config = loadConfigOrExit('trainer service', loadConfig);
  // The worker's devices: GPUs configured for a cpu-only worker is a configuration error.
  const worker = await checkConfigOrExit('trainer service', async () => {
    const info = await probeWorker(config.workerBin);
    checkWorkerForGpus(config.workerBin, info, config.gpus);
    return info;
  });
  const platform = await connectPlatform({
    serviceName: SERVICE_NAME,
    serviceVersion: SERVICE_VERSION,
    config,
    migrate: migrateTrainerSchema,
  });
  const { db, bus, artifacts, logger } = platform;
  const launchers: Record<string, Launcher> = { local: createLocalLauncher({ maxRanks: config.maxRanks, gpus: config.gpus }) };
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
  if (worker) logger.info({ workerBin: config.workerBin, ...worker, gpus: config.gpus }, 'worker binary');
  else logger.warn({ workerBin: config.workerBin }, 'worker binary not found: runs will fail until it exists');
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
  addPlatformResources(svc.app, platform);
  svc.app.addResource('rendezvous-store', () => svc.storeServer.close());
  handleShutdownSignals(svc.app);
  await svc.app.listen({ host: config.host, port: config.port });
  void svc.scheduler.kick();
}

main().catch((e: unknown) => {
  console.error('trainer service: failed to start:', e);
  process.exit(1);
});
