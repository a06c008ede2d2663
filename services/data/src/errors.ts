/**
 * The data service's problem catalogue: stable problem+json types beside the
 * platform-wide ones of @flywheel/service. Thrown as ProblemError; the one
 * error handler of the app factory renders them.
 */
import { defineProblem } from '@flywheel/service';

export const dataProblems = {
  invalidSourceUri: defineProblem('invalid-source-uri', 'The source URI is not an address inside the artifact store', 400),
  sourceNotFound: defineProblem('source-not-found', 'No artifact at the source URI', 404),
  invalidPipelineConfig: defineProblem('invalid-pipeline-config', 'The pipeline configuration is invalid', 400),
  datasetNotFound: defineProblem('dataset-not-found', 'No such dataset', 404),
  versionNotFound: defineProblem('version-not-found', 'No such dataset version', 404),
  jobNotFound: defineProblem('job-not-found', 'No such ingest job', 404),
  emptyUpload: defineProblem('empty-upload', 'The upload is empty', 400),
  enqueueFailed: defineProblem('enqueue-failed', 'The ingest job could not be queued', 503),
} as const;
