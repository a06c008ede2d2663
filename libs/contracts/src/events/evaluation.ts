// Events of the eval service: the verdict on a candidate model, a promotion to
// champion (which serving hot-swaps to), and a drift alarm on live traffic.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Id, Name, NonNegativeInt, PositiveInt, Reason, Timestamp, Uri } from '../common.ts';

/** Metric name -> value, e.g. `{ "loss": 1.92, "perplexity": 6.8 }`. */
export const Metrics = Type.Record(Type.String({ pattern: '^[A-Za-z0-9._/-]+$' }), Type.Number());

export const EvalDecision = Type.Union([Type.Literal('promote'), Type.Literal('reject')]);

/** `fw.eval.completed` v1: a candidate was evaluated and gated against the champion. */
export const EvalCompletedV1 = Type.Object(
  {
    evalId: Id,
    modelId: Id,
    modelUri: Uri,
    runId: Type.Optional(Id),
    datasetId: Type.Optional(Id),
    metrics: Metrics,
    /** The champion it was compared with; absent when there was none yet. */
    baseline: Type.Optional(
      Type.Object({ modelId: Id, metrics: Metrics }, { additionalProperties: false }),
    ),
    decision: EvalDecision,
    reason: Type.Optional(Reason),
  },
  { additionalProperties: false },
);

/** `fw.model.promoted` v1: `modelId` is the new champion of `modelName`. */
export const ModelPromotedV1 = Type.Object(
  {
    modelId: Id,
    modelName: Name,
    modelUri: Uri,
    adapterUri: Type.Optional(Uri),
    /** The champion it replaces, or null for the first one. */
    previousModelId: Type.Union([Id, Type.Null()]),
    evalId: Type.Optional(Id),
    promotedAt: Timestamp,
  },
  { additionalProperties: false },
);

export const DriftTest = Type.Union([Type.Literal('ks'), Type.Literal('psi'), Type.Literal('chi2')]);

export const DriftFeature = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    test: DriftTest,
    statistic: Type.Number(),
    /** p-value after multiple-testing correction; PSI has none. */
    pValue: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    threshold: Type.Number(),
    drifted: Type.Boolean(),
  },
  { additionalProperties: false },
);

/** `fw.drift.detected` v1: a window of live samples differs from the champion's reference. */
export const DriftDetectedV1 = Type.Object(
  {
    monitorId: Id,
    modelId: Id,
    windowStart: Timestamp,
    windowEnd: Timestamp,
    sampleCount: PositiveInt,
    referenceCount: NonNegativeInt,
    correction: Type.Union([Type.Literal('bonferroni'), Type.Literal('holm'), Type.Literal('bh'), Type.Literal('none')]),
    features: Type.Array(DriftFeature, { minItems: 1 }),
  },
  { additionalProperties: false },
);

export type Metrics = Static<typeof Metrics>;
export type EvalDecision = Static<typeof EvalDecision>;
export type EvalCompleted = Static<typeof EvalCompletedV1>;
export type ModelPromoted = Static<typeof ModelPromotedV1>;
export type DriftTest = Static<typeof DriftTest>;
export type DriftFeature = Static<typeof DriftFeature>;
export type DriftDetected = Static<typeof DriftDetectedV1>;
