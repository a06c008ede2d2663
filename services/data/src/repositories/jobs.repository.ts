/** SQL for ingest jobs and their quarantined input. */
import type { Queryable } from '@flywheel/db';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface JobRow {
  id: string;
  dataset_name: string;
  source_uri: string;
  format: string;
  config: Record<string, unknown>;
  status: JobStatus;
  attempts: number;
  progress: Record<string, unknown>;
  error: string | null;
  error_stage: string | null;
  version: string | null;
  owner: string | null;
  /** Trace of the run that last claimed the job. */
  trace_id: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface NewJob {
  id: string;
  datasetName: string;
  sourceUri: string;
  format: string;
  config: Record<string, unknown>;
}

const COLUMNS = `id, dataset_name, source_uri, format, config, status, attempts, progress, error, error_stage,
  version, owner, trace_id, created_at, updated_at`;

export function createJobsRepository(db: Queryable) {
  return {
    /** Inserts a job; a job with the same id already there is returned as it is. */
    async insert(job: NewJob): Promise<{ job: JobRow; created: boolean }> {
      const ins = await db.query<JobRow>(
        `INSERT INTO jobs (id, dataset_name, source_uri, format, config) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
        [job.id, job.datasetName, job.sourceUri, job.format, JSON.stringify(job.config)],
      );
      if (ins.rows[0]) return { job: ins.rows[0], created: true };
      const existing = await this.get(job.id);
      if (!existing) throw new Error(`job ${job.id} vanished`);
      return { job: existing, created: false };
    },

    async get(id: string): Promise<JobRow | undefined> {
      const r = await db.query<JobRow>(`SELECT ${COLUMNS} FROM jobs WHERE id = $1`, [id]);
      return r.rows[0];
    },

    async list(opts: { datasetName?: string; limit: number }): Promise<JobRow[]> {
      const r = await db.query<JobRow>(
        `SELECT ${COLUMNS} FROM jobs WHERE ($1::text IS NULL OR dataset_name = $1)
         ORDER BY created_at DESC LIMIT $2`,
        [opts.datasetName ?? null, opts.limit],
      );
      return r.rows;
    },

    /** An unfinished job for the same source and config, so a repeated request joins it. */
    async findActive(datasetName: string, sourceUri: string, config: Record<string, unknown>): Promise<JobRow | undefined> {
      const r = await db.query<JobRow>(
        `SELECT ${COLUMNS} FROM jobs WHERE dataset_name = $1 AND source_uri = $2 AND config = $3::jsonb
           AND status IN ('queued', 'running') ORDER BY created_at LIMIT 1`,
        [datasetName, sourceUri, JSON.stringify(config)],
      );
      return r.rows[0];
    },

    /**
     * Claims a job for this process. A queued job is taken; a running one only
     * when its owner has stopped beating for `staleMs` (it died: its message
     * came back). Anything else is returned unchanged: finished, or still
     * owned by a live process (`claimed: false`).
     */
    async claim(id: string, owner: string, staleMs: number, traceId: string | null): Promise<{ job: JobRow | undefined; claimed: boolean }> {
      const r = await db.query<JobRow>(
        `UPDATE jobs SET status = 'running', attempts = attempts + 1, owner = $2, heartbeat_at = now(), trace_id = $4,
                error = NULL, error_stage = NULL, updated_at = now()
         WHERE id = $1 AND (status = 'queued'
           OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => $3::double precision / 1000))))
         RETURNING ${COLUMNS}`,
        [id, owner, staleMs, traceId],
      );
      if (r.rows[0]) return { job: r.rows[0], claimed: true };
      return { job: await this.get(id), claimed: false };
    },

    /** Keeps the owner's claim alive. */
    async heartbeat(id: string, owner: string): Promise<void> {
      await db.query(`UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND owner = $2 AND status = 'running'`, [id, owner]);
    },

    async progress(id: string, progress: Record<string, unknown>): Promise<void> {
      await db.query(`UPDATE jobs SET progress = $2, heartbeat_at = now(), updated_at = now() WHERE id = $1 AND status = 'running'`, [
        id,
        JSON.stringify(progress),
      ]);
    },

    async succeed(id: string, version: string, progress: Record<string, unknown>): Promise<void> {
      await db.query(
        `UPDATE jobs SET status = 'succeeded', version = $2, progress = $3, updated_at = now() WHERE id = $1`,
        [id, version, JSON.stringify(progress)],
      );
    },

    async fail(id: string, reason: string, stage: string | null): Promise<void> {
      await db.query(
        `UPDATE jobs SET status = 'failed', error = $2, error_stage = $3, updated_at = now() WHERE id = $1 AND status <> 'succeeded'`,
        [id, reason, stage],
      );
    },

    /** Replaces the job's quarantine entries (a retried job starts its list anew). */
    async replaceQuarantine(jobId: string, entries: { ref: string; reason: string; sample: string }[]): Promise<void> {
      await db.query(`DELETE FROM quarantine WHERE job_id = $1`, [jobId]);
      if (entries.length === 0) return;
      await db.query(
        `INSERT INTO quarantine (job_id, ref, reason, sample)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])`,
        [jobId, entries.map((e) => e.ref), entries.map((e) => e.reason), entries.map((e) => e.sample)],
      );
    },

    async quarantine(jobId: string, limit: number, after = 0) {
      const r = await db.query<{ id: string; ref: string; reason: string; sample: string }>(
        `SELECT id::text, ref, reason, sample FROM quarantine WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
        [jobId, after, limit],
      );
      return r.rows;
    },
  };
}
export type JobsRepository = ReturnType<typeof createJobsRepository>;
