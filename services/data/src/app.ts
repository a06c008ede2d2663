/**
 * Composition of the data service: given its real clients (database, bus,
 * artifact store), builds the HTTP app and the ingest job runner. main.ts
 * builds the clients from the environment; tests build them against the real
 * NATS and Postgres with unique names.
 */
import { stableUuid } from '@flywheel/contracts';
import { fileURLToPath } from 'node:url';
import { subjects } from '@flywheel/contracts';
import type { ArtifactStore } from '@flywheel/artifacts';
import type { Bus } from '@flywheel/bus';
import type { Db } from '@flywheel/db';
import { migrate } from '@flywheel/db';
import { createApp, platformReadiness, type App } from '@flywheel/service';
import type { Logger } from '@flywheel/telemetry';
import { createIngestJob, type IngestJob } from './jobs/ingest-job.ts';
import { createDatasetsRepository } from './repositories/datasets.repository.ts';
import { createJobsRepository } from './repositories/jobs.repository.ts';
import { datasetRoutes } from './routes/datasets.ts';
import { ingestRoutes } from './routes/ingest.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
export const SERVICE_NAME = 'data';
export const SERVICE_VERSION = '0.1.0';

export interface DataServiceDeps {
  db: Db;
  bus: Bus;
  artifacts: ArtifactStore;
  logger?: Logger | false;
  apiTokens: string[];
  maxUploadBytes: number;
  maxRecordBytes: number;
  workRoot: string;
  instanceId: string;
  staleAfterMs?: number;
}

export interface DataService {
  app: App;
  job: IngestJob;
  jobs: ReturnType<typeof createJobsRepository>;
  datasets: ReturnType<typeof createDatasetsRepository>;
}

/** Applies the service's migrations (idempotent; safe with several replicas starting at once). */
export function migrateDataSchema(db: Db) {
  return migrate({ db, dir: MIGRATIONS_DIR });
}

export async function buildDataService(deps: DataServiceDeps): Promise<DataService> {
  const jobs = createJobsRepository(deps.db);
  const datasets = createDatasetsRepository(deps.db);
  const silent = { info: () => undefined, warn: () => undefined };
  const job = createIngestJob({
    db: deps.db,
    artifacts: deps.artifacts,
    workRoot: deps.workRoot,
    owner: deps.instanceId,
    maxRecordBytes: deps.maxRecordBytes,
    staleAfterMs: deps.staleAfterMs,
    log: deps.logger ? deps.logger : silent,
    publishReady: async (data, id) => {
      await deps.bus.publish(subjects.dataDatasetReady, data, { id });
    },
    publishFailed: async (data, id) => {
      await deps.bus.publish(subjects.dataDatasetFailed, data, { id });
    },
  });

  const app = await createApp({
    name: SERVICE_NAME,
    version: SERVICE_VERSION,
    description: 'Ingests raw text, cleans it and turns it into versioned, tokenised datasets.',
    auth: { tokens: deps.apiTokens },
    logger: deps.logger ?? false,
    readiness: platformReadiness(deps),
  });
  await app.register(ingestRoutes, {
    artifacts: deps.artifacts,
    jobs,
    maxUploadBytes: deps.maxUploadBytes,
    enqueue: async (j) => {
      await deps.bus.publish(
        subjects.dataIngestRequested,
        { jobId: j.id, datasetName: j.datasetName, source: { uri: j.sourceUri }, format: j.format, config: j.config },
        { id: stableUuid(`ingest:${j.id}`) },
      );
    },
  });
  await app.register(datasetRoutes, { artifacts: deps.artifacts, datasets, jobs });
  return { app, job, jobs, datasets };
}
