// Every subject on the bus, in one place. Subjects follow
// `fw.<service>.<entity>.<verb>`; dead letters live under `fw.dlq.>`.

/** The subject of every event in the catalogue, keyed by a short camelCase name. */
export const subjects = {
  dataIngestRequested: 'fw.data.ingest.requested',
  dataDatasetReady: 'fw.data.dataset.ready',
  dataDatasetFailed: 'fw.data.dataset.failed',
  trainerRunRequested: 'fw.trainer.run.requested',
  trainerRunStarted: 'fw.trainer.run.started',
  trainerRunProgress: 'fw.trainer.run.progress',
  trainerRunCheckpointed: 'fw.trainer.run.checkpointed',
  trainerRunCompleted: 'fw.trainer.run.completed',
  trainerRunFailed: 'fw.trainer.run.failed',
  evalCompleted: 'fw.eval.completed',
  modelPromoted: 'fw.model.promoted',
  driftDetected: 'fw.drift.detected',
  servingSample: 'fw.serving.sample',
} as const;

/** Union of every catalogued subject string. */
export type Subject = (typeof subjects)[keyof typeof subjects];

/** Prefix of dead-letter subjects: a failed `fw.x.y.z` lands on `fw.dlq.fw.x.y.z`. */
export const DLQ_PREFIX = 'fw.dlq.';

/** The dead-letter subject for an original subject. */
export function dlqSubject(subject: string): string {
  return `${DLQ_PREFIX}${subject}`;
}

const known: ReadonlySet<string> = new Set(Object.values(subjects));

/** True when `s` is one of the catalogued subjects. */
export function isSubject(s: string): s is Subject {
  return known.has(s);
}
