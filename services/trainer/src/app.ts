/**
 * Composition of the trainer: given its real clients (database, bus, KV,
 * artifact store) and launchers, builds the HTTP app, the rendezvous store
 * listener, the run supervisor and the queue. main.ts builds the clients
 * from the environment; tests build them against the real NATS and Postgres.
 */
import { stableUuid } from '@flywheel/contracts';
import { fileURLToPath } from 'node:url';
import { subjects } from '@flywheel/contracts';
import type { ArtifactStore } from '@flywheel/artifacts';
import { openKv, type Bus } from '@flywheel/bus';
import type { Db } from '@flywheel/db';
import { migrate } from '@flywheel/db';
import { createApp, platformReadiness, type App } from '@flywheel/service';
import type { Logger } from '@flywheel/telemetry';
import type { Launcher } from './launchers/types.ts';
import { startStoreServer, type StoreServer } from './rendezvous/server.ts';
import { createRendezvousStore, type RendezvousStore } from './rendezvous/store.ts';
import { createCatalogRepository, type CatalogRepository } from './repositories/catalog.repository.ts';
import { createRunsRepository, type RunsRepository } from './repositories/runs.repository.ts';
import { policyRoutes } from './routes/policies.ts';
import { runRoutes } from './routes/runs.ts';
import { createRunHub, type RunHub } from './run/hub.ts';
import { createScheduler, type Scheduler } from './run/scheduler.ts';
import { createSupervisor, type Supervisor } from './run/supervisor.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
export const SERVICE_NAME = 'trainer';
export const SERVICE_VERSION = '0.1.0';
export const RENDEZVOUS_BUCKET = 'trainer-rendezvous';

export interface TrainerServiceDeps {
  db: Db;
  bus: Bus;
  artifacts: ArtifactStore;
  logger?: Logger | false;
  apiTokens: string[];
  launchers: Record<string, Launcher>;
  defaultLauncher: string;
  workRoot: string;
  workerBin: string;
  maxRanks: number;
  threadsPerRank: number;
  instanceId: string;
  store: { host: string; port: number; advertiseHost: string };
  defaultRestartBudget?: number;
  defaultCheckpointInterval?: number;
  progressIntervalMs?: number;
  killGraceMs?: number;
  ssePollMs?: number;
}

export interface TrainerService {
  app: App;
  runs: RunsRepository;
  catalog: CatalogRepository;
  hub: RunHub;
  store: RendezvousStore;
  storeServer: StoreServer;
  supervisor: Supervisor;
  scheduler: Scheduler;
}

export function migrateTrainerSchema(db: Db) {
  return migrate({ db, dir: MIGRATIONS_DIR });
}

export async function buildTrainerService(deps: TrainerServiceDeps): Promise<TrainerService> {
  const runs = createRunsRepository(deps.db);
  const catalog = createCatalogRepository(deps.db);
  const hub = createRunHub();
  const silent = { info: () => undefined, warn: () => undefined };
  const log = deps.logger ? deps.logger : silent;
  const kv = await openKv(deps.bus, RENDEZVOUS_BUCKET, { ttlMs: 7 * 24 * 3600_000 });
  const store = createRendezvousStore(kv);
  const storeServer = await startStoreServer(store, {
    host: deps.store.host,
    port: deps.store.port,
    log: (msg, err) => log.warn({ err }, msg),
  });
  const storeBase = `http://${deps.store.advertiseHost}:${storeServer.port}/v1/rendezvous`;
  const pub = <S extends Parameters<Bus['publish']>[0]>(subject: S, data: Parameters<Bus['publish']>[1], id: string) =>
    deps.bus.publish(subject, data as never, { id }).then(() => undefined);
  const supervisor = createSupervisor({
    runs,
    artifacts: deps.artifacts,
    launchers: deps.launchers,
    store,
    storeUrl: (runId, attempt) => `${storeBase}/${runId}/${attempt}`,
    workRoot: deps.workRoot,
    workerBin: deps.workerBin,
    threadsPerRank: deps.threadsPerRank,
    progressIntervalMs: deps.progressIntervalMs ?? 2000,
    killGraceMs: deps.killGraceMs,
    hub,
    log,
    publish: {
      started: (d) => pub(subjects.trainerRunStarted, d, stableUuid(`started:${d.runId}:${d.attempt}`)),
      progress: (d) => pub(subjects.trainerRunProgress, d, stableUuid(`progress:${d.runId}:${d.step}:${d.elapsedSeconds}`)),
      checkpointed: (d) => pub(subjects.trainerRunCheckpointed, d, stableUuid(`checkpointed:${d.runId}:${d.step}:${d.checkpointUri}`)),
      completed: (d) => pub(subjects.trainerRunCompleted, d, stableUuid(`completed:${d.runId}`)),
      failed: (d) => pub(subjects.trainerRunFailed, d, stableUuid(`failed:${d.runId}`)),
    },
  });
  const scheduler = createScheduler({
    runs,
    supervisor,
    maxRanks: deps.maxRanks,
    // The host's GPUs are those the launchers that hand them out (local: FW_GPUS) have.
    gpus: Math.max(0, ...Object.values(deps.launchers).map((l) => l.maxGpus?.() ?? 0)),
    gpusNeeded: (run) => (run.spec.device === 'cuda' && deps.launchers[run.spec.launcher]?.maxGpus ? run.world_size : 0),
    owner: deps.instanceId,
    workRoot: deps.workRoot,
    log,
  });

  const app = await createApp({
    name: SERVICE_NAME,
    version: SERVICE_VERSION,
    description: 'Turns ready datasets into trained models: queued, supervised, restartable data-parallel runs.',
    auth: { tokens: deps.apiTokens },
    logger: deps.logger ?? false,
    readiness: platformReadiness(deps),
  });
  const requestDeps = {
    catalog,
    artifacts: deps.artifacts,
    launchers: deps.launchers,
    defaultLauncher: deps.defaultLauncher,
    defaultRestartBudget: deps.defaultRestartBudget ?? 3,
    defaultCheckpointInterval: deps.defaultCheckpointInterval ?? 100,
  };
  await app.register(runRoutes, {
    ...requestDeps,
    runs,
    hub,
    kick: () => void scheduler.kick(),
    cancelActive: (id) => supervisor.cancel(id),
    announce: (id) => supervisor.announce(id),
    ssePollMs: deps.ssePollMs,
  });
  await app.register(policyRoutes, { catalog });
  return { app, runs, catalog, hub, store, storeServer, supervisor, scheduler };
}
