// The event envelope: what every message body on the bus is. Trace context is
// not here: it travels in the NATS headers (W3C traceparent/tracestate).
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { PositiveInt, Timestamp, Uuid } from './common.ts';
import type { EventData } from './registry.ts';
import { eventRegistry } from './registry.ts';
import type { Subject } from './subjects.ts';

/** Envelope schema; `data` is checked separately against the subject's schema. */
export const EnvelopeSchema = Type.Object(
  {
    /** Event id; also the JetStream `Nats-Msg-Id`, so a re-publish is deduplicated. */
    id: Uuid,
    subject: Type.String({ minLength: 1, maxLength: 256 }),
    /** Payload schema version. */
    version: PositiveInt,
    /** When the event happened (producer clock). */
    time: Timestamp,
    /** Emitting service, e.g. `data`. */
    source: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    data: Type.Unknown(),
  },
  { additionalProperties: false },
);

export type RawEnvelope = Static<typeof EnvelopeSchema>;

/** A validated event of subject `S`. */
export interface EventEnvelope<S extends Subject = Subject> {
  readonly id: string;
  readonly subject: S;
  readonly version: number;
  readonly time: string;
  readonly source?: string;
  readonly data: EventData<S>;
}

/** Any catalogued event, discriminated by `subject` (narrow with `switch (e.subject)`). */
export type AnyEventEnvelope = { [S in Subject]: EventEnvelope<S> }[Subject];

export interface CreateEnvelopeOptions {
  /** Event id; a fresh UUID when absent. Pass a stable id to make re-publishing idempotent. */
  id?: string;
  time?: Date | string;
  source?: string;
}

/** Wrap a payload in an envelope at the subject's current version (no validation here). */
export function createEnvelope<S extends Subject>(
  subject: S,
  data: EventData<S>,
  opts: CreateEnvelopeOptions = {},
): EventEnvelope<S> {
  const time = opts.time instanceof Date ? opts.time.toISOString() : (opts.time ?? new Date().toISOString());
  return {
    id: opts.id ?? crypto.randomUUID(),
    subject,
    version: eventRegistry[subject].version,
    time,
    ...(opts.source !== undefined ? { source: opts.source } : {}),
    data,
  };
}
