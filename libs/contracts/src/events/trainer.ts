// Events of the trainer: a run is requested (by a person, a new dataset or a
// drift alarm), then reports started -> progress* -> checkpointed* ->
// completed | failed. `runId` ties them together; `attempt` counts restarts
// from a checkpoint after a rank died.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Id, NonNegativeInt, OpaqueObject, PositiveInt, Reason, Sha256Hex, Timestamp, Uri } from '../common.ts';

export const RunTrigger = Type.Union([
  Type.Literal('manual'),
  Type.Literal('dataset'),
  Type.Literal('drift'),
  Type.Literal('schedule'),
]);

export const Device = Type.Union([Type.Literal('cpu'), Type.Literal('cuda')]);

export const LoraConfig = Type.Object(
  {
    rank: PositiveInt,
    alpha: Type.Number({ exclusiveMinimum: 0 }),
    dropout: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    /** HF module names to adapt, e.g. `q_proj`, `v_proj`. */
    targetModules: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  },
  { additionalProperties: false },
);

export const Hyperparameters = Type.Object(
  {
    maxSteps: PositiveInt,
    learningRate: Type.Number({ exclusiveMinimum: 0 }),
    /** Sequences per optimizer step per rank. */
    batchSize: PositiveInt,
    seqLen: PositiveInt,
    gradAccumSteps: Type.Optional(PositiveInt),
    warmupSteps: Type.Optional(NonNegativeInt),
    weightDecay: Type.Optional(Type.Number({ minimum: 0 })),
    schedule: Type.Optional(Type.Union([Type.Literal('cosine'), Type.Literal('linear'), Type.Literal('constant')])),
    seed: Type.Optional(NonNegativeInt),
  },
  { additionalProperties: false },
);

/** Knowledge distillation from a teacher (the current champion) during retraining. */
export const Distillation = Type.Object(
  {
    teacherModelId: Id,
    teacherUri: Uri,
    temperature: Type.Number({ exclusiveMinimum: 0 }),
    /** Weight of the KL term; the cross-entropy term gets `1 - alpha`. */
    alpha: Type.Number({ minimum: 0, maximum: 1 }),
  },
  { additionalProperties: false },
);

/** Replay of earlier datasets mixed into the new one so the model does not forget. */
export const Replay = Type.Object(
  {
    datasetIds: Type.Array(Id, { minItems: 1 }),
    fraction: Type.Number({ minimum: 0, maximum: 1 }),
  },
  { additionalProperties: false },
);

export const Resources = Type.Object(
  {
    device: Device,
    nodes: PositiveInt,
    processesPerNode: PositiveInt,
  },
  { additionalProperties: false },
);

/** `fw.trainer.run.requested` v1: fine-tune `baseModelUri` on a dataset version. */
export const RunRequestedV1 = Type.Object(
  {
    runId: Type.Optional(Id),
    trigger: RunTrigger,
    requestedBy: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    /** Model folder (config.json, model.safetensors, tokenizer.json); absent with `modelConfig`. */
    baseModelUri: Type.Optional(Uri),
    /** A HF config.json object to train from scratch instead of `baseModelUri`. */
    modelConfig: Type.Optional(OpaqueObject),
    /** The dataset's id or name, as in `fw.data.dataset.ready`. */
    datasetId: Id,
    datasetVersion: Type.Optional(Type.String({ pattern: '^[0-9a-f]{8,64}$' })),
    /** The version's manifest; when set it wins over `datasetId`/`datasetVersion`. */
    manifestUri: Type.Optional(Uri),
    restartBudget: Type.Optional(NonNegativeInt),
    method: Type.Union([Type.Literal('full'), Type.Literal('lora')]),
    lora: Type.Optional(LoraConfig),
    hyperparameters: Hyperparameters,
    distillation: Type.Optional(Distillation),
    replay: Type.Optional(Replay),
    resources: Type.Optional(Resources),
    checkpointEvery: Type.Optional(PositiveInt),
    /** The `fw.drift.detected` event id that caused this run, when trigger is `drift`. */
    causeEventId: Type.Optional(Id),
  },
  { additionalProperties: false },
);

/** `fw.trainer.run.started` v1: ranks are up (again, when attempt > 0). */
export const RunStartedV1 = Type.Object(
  {
    runId: Id,
    attempt: NonNegativeInt,
    worldSize: PositiveInt,
    device: Device,
    startedAt: Timestamp,
    /** Step the run resumes from (0 on a fresh start). */
    resumedFromStep: NonNegativeInt,
  },
  { additionalProperties: false },
);

/** `fw.trainer.run.progress` v1: periodic metrics (rank 0's view). */
export const RunProgressV1 = Type.Object(
  {
    runId: Id,
    step: NonNegativeInt,
    maxSteps: PositiveInt,
    loss: Type.Number(),
    learningRate: Type.Number({ minimum: 0 }),
    gradNorm: Type.Optional(Type.Number({ minimum: 0 })),
    tokensPerSecond: Type.Optional(Type.Number({ minimum: 0 })),
    elapsedSeconds: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** `fw.trainer.run.checkpointed` v1: a complete checkpoint is durable at `checkpointUri`. */
export const RunCheckpointedV1 = Type.Object(
  {
    runId: Id,
    step: NonNegativeInt,
    checkpointUri: Uri,
    sha256: Type.Optional(Sha256Hex),
    bytes: Type.Optional(NonNegativeInt),
  },
  { additionalProperties: false },
);

/** `fw.trainer.run.completed` v1: the run finished; `modelUri` is a loadable HF folder. */
export const RunCompletedV1 = Type.Object(
  {
    runId: Id,
    /** Absent for a run trained from scratch. */
    baseModelUri: Type.Optional(Uri),
    /** Merged model folder, or the base model when only an adapter was trained. */
    modelUri: Uri,
    /** PEFT adapter folder, for LoRA runs. */
    adapterUri: Type.Optional(Uri),
    datasetId: Id,
    steps: PositiveInt,
    finalLoss: Type.Number(),
    durationSeconds: Type.Number({ minimum: 0 }),
    restarts: NonNegativeInt,
  },
  { additionalProperties: false },
);

/** `fw.trainer.run.failed` v1: the run stopped for good (restart budget spent or fatal error). */
export const RunFailedV1 = Type.Object(
  {
    runId: Id,
    reason: Reason,
    stage: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9_-]*$' })),
    restarts: NonNegativeInt,
    lastStep: Type.Optional(NonNegativeInt),
    lastCheckpointUri: Type.Optional(Uri),
  },
  { additionalProperties: false },
);

export type RunTrigger = Static<typeof RunTrigger>;
export type Device = Static<typeof Device>;
export type LoraConfig = Static<typeof LoraConfig>;
export type Hyperparameters = Static<typeof Hyperparameters>;
export type RunRequested = Static<typeof RunRequestedV1>;
export type RunStarted = Static<typeof RunStartedV1>;
export type RunProgress = Static<typeof RunProgressV1>;
export type RunCheckpointed = Static<typeof RunCheckpointedV1>;
export type RunCompleted = Static<typeof RunCompletedV1>;
export type RunFailed = Static<typeof RunFailedV1>;
