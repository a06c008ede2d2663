/**
 * The trainer's problem catalogue: stable problem+json types beside the
 * platform-wide ones of @flywheel/service.
 */
import { defineProblem } from '@flywheel/service';

export const trainerProblems = {
  runNotFound: defineProblem('run-not-found', 'No such run', 404),
  datasetNotFound: defineProblem('dataset-not-found', 'No such dataset version', 404),
  invalidRun: defineProblem('invalid-run', 'The run request is invalid', 400),
  cannotPlace: defineProblem('cannot-place', 'The launcher cannot place this world size', 422),
  runFinished: defineProblem('run-finished', 'The run has already finished', 409),
  policyNotFound: defineProblem('policy-not-found', 'No trigger policy for this dataset', 404),
} as const;
