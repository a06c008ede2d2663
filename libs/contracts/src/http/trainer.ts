// HTTP bodies of the trainer service (services/trainer), version 1 of its API
// (`/v1/runs`, `/v1/policies`). The service validates requests with these
// schemas; the `flywheel` CLI reads the same types.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Id, Name, NonNegativeInt, OpaqueObject, PositiveInt, Uri } from '../common.ts';
import { Device, LoraConfig } from '../events/trainer.ts';

/** Which data to train on: a dataset version announced by the data service, or a manifest URI. */
export const RunDataset = Type.Object(
  {
    name: Type.Optional(Name),
    /** A version hash, or `latest` (the newest version the trainer has seen). */
    version: Type.Optional(Type.String({ pattern: '^(latest|[0-9a-f]{8,64})$' })),
    manifestUri: Type.Optional(Uri),
  },
  { additionalProperties: false },
);

/** The model to start from: a HF folder in the artifact store, or a config to train from scratch. */
export const RunModel = Type.Object(
  {
    baseUri: Type.Optional(Uri),
    /** A HF `config.json` object (llama family); the weights get a seeded init. */
    config: Type.Optional(OpaqueObject),
    initSeed: Type.Optional(NonNegativeInt),
  },
  { additionalProperties: false },
);

export const RunHyperparameters = Type.Object(
  {
    maxSteps: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
    learningRate: Type.Number({ exclusiveMinimum: 0, maximum: 10 }),
    minLearningRate: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
    /** Sequences per optimizer step per rank. */
    batchSize: Type.Integer({ minimum: 1, maximum: 65536 }),
    seqLen: Type.Integer({ minimum: 2, maximum: 131072 }),
    gradAccumSteps: Type.Optional(PositiveInt),
    warmupSteps: Type.Optional(NonNegativeInt),
    weightDecay: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
    gradClip: Type.Optional(Type.Number({ maximum: 1e6 })),
    beta1: Type.Optional(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
    beta2: Type.Optional(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
    eps: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    recompute: Type.Optional(Type.Boolean()),
    /** cuda only: shard the AdamW moments and fp32 master weights over the ranks (ZeRO-1). */
    zero1: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

/** LoRA options; `merge` also writes the merged full model. */
export const RunLora = Type.Object(
  { ...LoraConfig.properties, merge: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const RunDistillation = Type.Object(
  {
    teacherUri: Uri,
    temperature: Type.Number({ exclusiveMinimum: 0, maximum: 100 }),
    alpha: Type.Number({ minimum: 0, maximum: 1 }),
  },
  { additionalProperties: false },
);

/**
 * Training precision of the worker: `bf16` and `fp16` are mixed precision (16-bit compute, fp32 master
 * weights; `fp16` with dynamic loss scaling).
 */
export const Precision = Type.Union([Type.Literal('fp32'), Type.Literal('bf16'), Type.Literal('fp16')]);

/** `POST /v1/runs` request. */
export const CreateRunBody = Type.Object(
  {
    dataset: RunDataset,
    model: RunModel,
    method: Type.Optional(Type.Union([Type.Literal('full'), Type.Literal('lora')])),
    lora: Type.Optional(RunLora),
    distillation: Type.Optional(RunDistillation),
    hyperparameters: RunHyperparameters,
    worldSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096 })),
    checkpointInterval: Type.Optional(NonNegativeInt),
    restartBudget: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    seed: Type.Optional(NonNegativeInt),
    /** One collective call may take this long before the ranks give up (FW_COLLECTIVE_TIMEOUT_MS). */
    collectiveTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
    /** Every rank must have joined the rendezvous within this (FW_JOIN_TIMEOUT_MS). */
    joinTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
    /** Launcher name (`local`, `kubernetes`); default: the service's. */
    launcher: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' })),
    /** `cpu` (default) or `cuda`: one GPU per rank (LOCAL_RANK), gradients summed with NCCL. */
    device: Type.Optional(Device),
    /** `fp32`, `bf16` or `fp16` (mixed precision, cuda only); default `bf16` on cuda, `fp32` on cpu. */
    precision: Type.Optional(Precision),
  },
  { additionalProperties: false },
);

export const RunParams = Type.Object({ id: Id }, { additionalProperties: false });
export const RunListQuery = Type.Object(
  {
    status: Type.Optional(Type.String({ pattern: '^(queued|running|completed|failed|cancelled)$' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);
export const MetricsQuery = Type.Object(
  {
    /** Send the series from this step on before following live (default 0: all of it). */
    fromStep: Type.Optional(NonNegativeInt),
    /** Close the stream once the run is finished (default true). */
    follow: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const RunStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('completed'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);

export const RankView = Type.Object({
  rank: NonNegativeInt,
  pid: Type.Union([Type.Integer(), Type.Null()]),
  host: Type.Union([Type.String(), Type.Null()]),
  exitCode: Type.Union([Type.Integer(), Type.Null()]),
  signal: Type.Union([Type.String(), Type.Null()]),
});

export const AttemptView = Type.Object({
  attempt: NonNegativeInt,
  status: Type.String(),
  resumedFromStep: NonNegativeInt,
  reason: Type.Union([Type.String(), Type.Null()]),
  startedAt: Type.String(),
  endedAt: Type.Union([Type.String(), Type.Null()]),
  ranks: Type.Array(RankView),
});

export const RunView = Type.Object({
  id: Id,
  status: RunStatus,
  trigger: Type.String(),
  datasetName: Type.Union([Type.String(), Type.Null()]),
  datasetVersion: Type.Union([Type.String(), Type.Null()]),
  manifestUri: Type.String(),
  worldSize: PositiveInt,
  maxSteps: PositiveInt,
  step: NonNegativeInt,
  loss: Type.Union([Type.Number(), Type.Null()]),
  restartBudget: NonNegativeInt,
  restarts: NonNegativeInt,
  attempt: NonNegativeInt,
  modelUri: Type.Union([Type.String(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
  stage: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  spec: OpaqueObject,
  attempts: Type.Optional(Type.Array(AttemptView)),
  checkpoints: Type.Optional(Type.Array(Type.Object({ step: NonNegativeInt, attempt: NonNegativeInt, reason: Type.String() }))),
});

export const RunList = Type.Object({ runs: Type.Array(RunView) });

/** One point of the metric series, as sent in the `metric` server-sent event. */
export const MetricPoint = Type.Object({
  step: NonNegativeInt,
  rank: NonNegativeInt,
  attempt: NonNegativeInt,
  loss: Type.Union([Type.Number(), Type.Null()]),
  lr: Type.Union([Type.Number(), Type.Null()]),
  gradNorm: Type.Union([Type.Number(), Type.Null()]),
  tokensPerSecond: Type.Union([Type.Number(), Type.Null()]),
  valLoss: Type.Union([Type.Number(), Type.Null()]),
});

/** `PUT /v1/policies/:datasetName`: start a run from `template` when the dataset gets a new version. */
export const PolicyParams = Type.Object({ datasetName: Name }, { additionalProperties: false });
export const PolicyBody = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean()),
    /** A `POST /v1/runs` body without `dataset`. */
    template: Type.Omit(CreateRunBody, ['dataset']),
  },
  { additionalProperties: false },
);

export type CreateRunBody = Static<typeof CreateRunBody>;
export type RunView = Static<typeof RunView>;
export type AttemptView = Static<typeof AttemptView>;
export type MetricPoint = Static<typeof MetricPoint>;
export type PolicyBody = Static<typeof PolicyBody>;
export type RunStatus = Static<typeof RunStatus>;
export type Precision = Static<typeof Precision>;
