// The dead-letter record: what the bus publishes on `fw.dlq.<subject>` when a
// message is given up on (delivery budget spent, or the payload is invalid).
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { NonNegativeInt, PositiveInt, Timestamp } from './common.ts';

export const DeadLetterKind = Type.Union([
  /** Handler failed on the last allowed delivery. */
  Type.Literal('max-deliveries'),
  /** The message is not JSON, or its envelope or payload fails its schema. */
  Type.Literal('invalid'),
]);

/** Body of a dead-letter message (schema version 1). */
export const DeadLetterV1 = Type.Object(
  {
    kind: DeadLetterKind,
    /** Subject the original message was published on. */
    subject: Type.String({ minLength: 1 }),
    stream: Type.String({ minLength: 1 }),
    /** Stream sequence of the original message. */
    streamSequence: PositiveInt,
    deliveryCount: PositiveInt,
    consumer: Type.String({ minLength: 1 }),
    /** Error message of the last failure. */
    reason: Type.String({ minLength: 1 }),
    /** Schema validation errors, for kind `invalid`. */
    errors: Type.Optional(Type.Array(Type.String())),
    /** Envelope id of the original, when it could be read. */
    eventId: Type.Optional(Type.String()),
    failedAt: Timestamp,
    /** `json`: `payload` is the parsed original body; `base64`: the raw bytes (not JSON). */
    payloadEncoding: Type.Union([Type.Literal('json'), Type.Literal('base64')]),
    payload: Type.Unknown(),
    /** Original headers (trace context included). */
    headers: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()))),
    /** Byte size of the original body. */
    payloadBytes: NonNegativeInt,
  },
  { additionalProperties: false },
);

export type DeadLetterKind = Static<typeof DeadLetterKind>;
export type DeadLetter = Static<typeof DeadLetterV1>;
