// Events of the serving service: one sampled request's features, the raw
// material of drift detection. No prompt text leaves serving, only numbers.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Id, NonNegativeInt, Timestamp } from '../common.ts';

/** Longest embedding sketch a sample may carry. */
export const SKETCH_MAX_DIMS = 64;

/** `fw.serving.sample` v1: features of one served request. */
export const ServingSampleV1 = Type.Object(
  {
    requestId: Id,
    modelId: Id,
    at: Timestamp,
    endpoint: Type.Union([Type.Literal('completions'), Type.Literal('chat')]),
    promptTokens: NonNegativeInt,
    outputTokens: NonNegativeInt,
    /** Mean log-probability of the generated tokens (<= 0). */
    meanLogprob: Type.Number({ maximum: 0 }),
    perplexity: Type.Number({ minimum: 1 }),
    /** Small random-projection sketch of the prompt embedding. */
    sketch: Type.Array(Type.Number(), { maxItems: SKETCH_MAX_DIMS }),
    timeToFirstTokenMs: Type.Optional(Type.Number({ minimum: 0 })),
    totalMs: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export type ServingSample = Static<typeof ServingSampleV1>;
