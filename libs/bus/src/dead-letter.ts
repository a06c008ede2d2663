// Building and publishing dead letters. One per original message and
// consumer: the msg id is derived from (stream, sequence, consumer), so a
// retry after a lost term, or the same message dead-lettered by two replicas
// of one consumer, is stored once.
import type { DeadLetter, DeadLetterKind } from '@flywheel/contracts';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import { publishWithRetry } from './publish.ts';
import type { RetryPolicy } from './publish.ts';
import type { StreamLayout } from './types.ts';

export interface DeadLetterInput {
  kind: DeadLetterKind;
  reason: string;
  errors?: string[];
  eventId?: string;
  consumer: string;
}

/** The original message as stored in the events stream. */
export interface OriginalMessage {
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly stream: string;
  readonly streamSequence: number;
  readonly deliveryCount: number;
}

/** JSON body of the dead letter for `m`. The original payload is kept losslessly. */
export function buildDeadLetter(m: OriginalMessage, subject: string, input: DeadLetterInput): DeadLetter {
  let payload: unknown;
  let payloadEncoding: DeadLetter['payloadEncoding'] = 'json';
  try {
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(m.data));
  } catch {
    payloadEncoding = 'base64';
    payload = Buffer.from(m.data).toString('base64');
  }
  const headers: Record<string, string[]> = {};
  if (m.headers !== undefined) for (const k of m.headers.keys()) headers[k] = m.headers.values(k);
  return {
    kind: input.kind,
    subject,
    stream: m.stream,
    streamSequence: m.streamSequence,
    deliveryCount: m.deliveryCount,
    consumer: input.consumer,
    reason: input.reason === '' ? 'unknown error' : input.reason,
    ...(input.errors !== undefined ? { errors: input.errors } : {}),
    ...(input.eventId !== undefined ? { eventId: input.eventId } : {}),
    failedAt: new Date().toISOString(),
    payloadEncoding,
    payload,
    headers,
    payloadBytes: m.data.length,
  };
}

/** Publish the dead letter of `m` (waiting for the JetStream ack). */
export async function publishDeadLetter(
  js: JetStreamClient,
  layout: StreamLayout,
  policy: RetryPolicy,
  isClosed: () => boolean,
  m: OriginalMessage,
  subject: string,
  input: DeadLetterInput,
): Promise<number> {
  const body = buildDeadLetter(m, subject, input);
  const { ack } = await publishWithRetry(
    js,
    {
      subject: layout.dlqWireSubject(subject),
      body: new TextEncoder().encode(JSON.stringify(body)),
      msgId: `dlq:${m.stream}:${m.streamSequence}:${input.consumer}`,
      headers: { 'Fw-Dlq-Kind': input.kind },
    },
    policy,
    isClosed,
  );
  return ack.seq;
}
