/**
 * The ingest queue: every data service replica pulls `fw.data.ingest.requested`
 * from one durable JetStream consumer, so each job runs on exactly one
 * replica at a time; its state lives in Postgres.
 */
import { subjects } from '@flywheel/contracts';
import type { Bus, Subscription } from '@flywheel/bus';
import type { IngestJob } from './jobs/ingest-job.ts';
import type { JobsRepository } from './repositories/jobs.repository.ts';

export const INGEST_DURABLE = 'data-ingest';

export interface IngestConsumerOptions {
  concurrency: number;
  maxDeliver?: number;
  backoffMs?: number[];
}

export function startIngestConsumer(
  bus: Bus,
  deps: { job: IngestJob; jobs: JobsRepository },
  opts: IngestConsumerOptions,
): Promise<Subscription> {
  return bus.consume(
    subjects.dataIngestRequested,
    async (event, delivery) => {
      const req = event.data;
      // A request from another service carries no job yet: the event id names it,
      // so a redelivered request finds the same job.
      const jobId = req.jobId ?? event.id;
      if (!req.jobId)
        await deps.jobs.insert({
          id: jobId,
          datasetName: req.datasetName,
          sourceUri: req.source.uri,
          format: req.format,
          config: req.config ?? {},
        });
      await deps.job.run(jobId, delivery.lastAttempt);
    },
    {
      durable: INGEST_DURABLE,
      concurrency: opts.concurrency,
      maxDeliver: opts.maxDeliver ?? 5,
      backoffMs: opts.backoffMs ?? [1_000, 5_000, 30_000, 120_000],
    },
  );
}
