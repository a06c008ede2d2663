// The registry: subject -> current schema version, payload schema, and who
// emits and consumes it. docs/events.md is rendered from this table (and a
// test fails when the two differ), so this is the one source of truth.
import type { Static, TSchema } from '@sinclair/typebox';
import { subjects } from './subjects.ts';
import type { Subject } from './subjects.ts';
import { DatasetFailedV1, DatasetReadyV1, IngestRequestedV1 } from './events/data.ts';
import {
  RunCheckpointedV1,
  RunCompletedV1,
  RunFailedV1,
  RunProgressV1,
  RunRequestedV1,
  RunStartedV1,
} from './events/trainer.ts';
import { DriftDetectedV1, EvalCompletedV1, ModelPromotedV1 } from './events/evaluation.ts';
import { ServingSampleV1 } from './events/serving.ts';

/** One catalogue entry. */
export interface EventDefinition<S extends TSchema = TSchema> {
  /** Current payload schema version; an envelope with another version is rejected. */
  readonly version: number;
  /** Payload (`envelope.data`) schema. */
  readonly schema: S;
  /** One line on what the event means. */
  readonly summary: string;
  readonly emittedBy: readonly string[];
  readonly consumedBy: readonly string[];
}

function define<S extends TSchema>(def: EventDefinition<S>): EventDefinition<S> {
  return def;
}

/** Every catalogued event, keyed by subject. */
export const eventRegistry = {
  [subjects.dataIngestRequested]: define({
    version: 1,
    schema: IngestRequestedV1,
    summary: 'Ingest raw data at a URI as a new version of a dataset.',
    emittedBy: ['data (HTTP API)', 'operators'],
    consumedBy: ['data'],
  }),
  [subjects.dataDatasetReady]: define({
    version: 1,
    schema: DatasetReadyV1,
    summary: 'A dataset version is cleaned, deduplicated, tokenised, sharded and stored.',
    emittedBy: ['data'],
    consumedBy: ['trainer (by policy)'],
  }),
  [subjects.dataDatasetFailed]: define({
    version: 1,
    schema: DatasetFailedV1,
    summary: 'An ingest job failed; nothing of it was published as a version.',
    emittedBy: ['data'],
    consumedBy: [],
  }),
  [subjects.trainerRunRequested]: define({
    version: 1,
    schema: RunRequestedV1,
    summary: 'Fine-tune a base model on a dataset version.',
    emittedBy: ['trainer (HTTP API, retraining policy)', 'operators'],
    consumedBy: ['trainer'],
  }),
  [subjects.trainerRunStarted]: define({
    version: 1,
    schema: RunStartedV1,
    summary: 'All ranks of a run are up; attempt > 0 after a restart from a checkpoint.',
    emittedBy: ['trainer'],
    consumedBy: [],
  }),
  [subjects.trainerRunProgress]: define({
    version: 1,
    schema: RunProgressV1,
    summary: 'Periodic training metrics of a run.',
    emittedBy: ['trainer'],
    consumedBy: [],
  }),
  [subjects.trainerRunCheckpointed]: define({
    version: 1,
    schema: RunCheckpointedV1,
    summary: 'A complete checkpoint of a run is durable.',
    emittedBy: ['trainer'],
    consumedBy: [],
  }),
  [subjects.trainerRunCompleted]: define({
    version: 1,
    schema: RunCompletedV1,
    summary: 'A run finished and its model is stored.',
    emittedBy: ['trainer'],
    consumedBy: ['eval'],
  }),
  [subjects.trainerRunFailed]: define({
    version: 1,
    schema: RunFailedV1,
    summary: 'A run stopped for good (fatal error or restart budget spent).',
    emittedBy: ['trainer'],
    consumedBy: [],
  }),
  [subjects.evalCompleted]: define({
    version: 1,
    schema: EvalCompletedV1,
    summary: 'A candidate model was evaluated and gated against the champion.',
    emittedBy: ['eval'],
    consumedBy: [],
  }),
  [subjects.modelPromoted]: define({
    version: 1,
    schema: ModelPromotedV1,
    summary: 'A model became the champion; serving hot-swaps to it.',
    emittedBy: ['eval'],
    consumedBy: ['serving'],
  }),
  [subjects.driftDetected]: define({
    version: 1,
    schema: DriftDetectedV1,
    summary: "Live traffic drifted from the champion's reference distribution.",
    emittedBy: ['eval'],
    consumedBy: ['trainer (by policy)'],
  }),
  [subjects.servingSample]: define({
    version: 1,
    schema: ServingSampleV1,
    summary: 'Features of one sampled served request (no text).',
    emittedBy: ['serving'],
    consumedBy: ['eval'],
  }),
} as const satisfies Record<Subject, EventDefinition>;

/** The payload type of the event on subject `S`. */
export type EventData<S extends Subject> = Static<(typeof eventRegistry)[S]['schema']>;

/** Registry entry of a subject, or undefined for an unknown subject. */
export function eventDefinition(subject: string): EventDefinition | undefined {
  return Object.hasOwn(eventRegistry, subject) ? eventRegistry[subject as Subject] : undefined;
}
