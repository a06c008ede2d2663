/** Row -> HTTP view mapping, shared by the routes. */
import type { JobView, VersionView } from '@flywheel/contracts';
import type { JobRow } from '../repositories/jobs.repository.ts';
import type { VersionRow } from '../repositories/datasets.repository.ts';
import type { Manifest } from '../jobs/ingest-job.ts';

export function jobView(j: JobRow): JobView {
  return {
    id: j.id,
    datasetName: j.dataset_name,
    status: j.status,
    format: j.format,
    sourceUri: j.source_uri,
    attempts: j.attempts,
    progress: j.progress,
    ...(j.error ? { error: j.error } : {}),
    ...(j.error_stage ? { errorStage: j.error_stage } : {}),
    ...(j.version ? { version: j.version } : {}),
    createdAt: j.created_at.toISOString(),
    updatedAt: j.updated_at.toISOString(),
  };
}

export function versionView(v: VersionRow): VersionView {
  const m = v.manifest as unknown as Manifest;
  return {
    datasetId: v.dataset_id,
    datasetName: v.dataset_name,
    version: v.version,
    contentSha256: v.content_sha256,
    manifestUri: v.manifest_uri,
    jobId: v.job_id,
    splits: m.splits.map((s) => ({ name: s.name, records: s.records, tokens: s.tokens, shards: s.shards.length })),
    createdAt: v.created_at.toISOString(),
  };
}
