// Durable pull consumers: provisioning, the pull loop, and what happens to
// each message:
//
//   not JSON / envelope or payload invalid  -> dead letter (kind invalid), term
//   handler returns                         -> ack (waits for the server's confirmation)
//   handler throws, deliveries left         -> no ack: JetStream redelivers after
//                                              backoffMs[deliveryCount-1] (consumer
//                                              `backoff`), bounded by `max_deliver`
//   handler throws on the last delivery     -> dead letter (kind max-deliveries), term
//   process dies / ack lost                 -> the same timer redelivers it
//   ... on the last delivery                -> JetStream gives up and emits a
//                                              MAX_DELIVERIES advisory; the bus
//                                              dead-letters the stored message
//
// Why not nak(delay) on a throw: nats-server 2.9 adds the backoff step to an
// explicit nak delay (a nak of 600 ms came back after 1050 ms), so the
// schedule would depend on the server version. Leaving the message unacked
// makes a throw and a crash follow one schedule, measured from the handler's
// last heartbeat.
//
// A dead letter is published (and acked by JetStream) before the original is
// termed, so a crash in between at worst publishes it again under the same
// msg id, which the DLQ stream deduplicates.
import { validateEnvelope } from '@flywheel/contracts';
import type { EventEnvelope, Subject } from '@flywheel/contracts';
import { nanos } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, JetStreamApiError } from '@nats-io/jetstream';
import type { ConsumerConfig, ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { BusConfigError } from './errors.ts';
import { publishDeadLetter } from './dead-letter.ts';
import type { DeadLetterInput, OriginalMessage } from './dead-letter.ts';
import type { RetryPolicy } from './publish.ts';
import { withProcessSpan } from './trace.ts';
import type { BusLogger, ConsumeOptions, DeliveryContext, EventHandler, StreamLayout, Subscription } from './types.ts';

const DURABLE_RE = /^[A-Za-z0-9_-]{1,128}$/;
export const DEFAULT_MAX_DELIVER = 5;
export const DEFAULT_BACKOFF_MS = [2_000, 10_000, 60_000, 300_000];

export interface ConsumerDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  layout: StreamLayout;
  retry: RetryPolicy;
  logger: BusLogger;
  isClosed: () => boolean;
}

interface Settings {
  durable: string;
  maxDeliver: number;
  backoffMs: number[];
  concurrency: number;
  deliverPolicy: 'all' | 'new';
}

function settingsOf(opts: ConsumeOptions): Settings {
  const s: Settings = {
    durable: opts.durable,
    maxDeliver: opts.maxDeliver ?? DEFAULT_MAX_DELIVER,
    backoffMs: opts.backoffMs ?? DEFAULT_BACKOFF_MS,
    concurrency: opts.concurrency ?? 1,
    deliverPolicy: opts.deliverPolicy ?? 'all',
  };
  if (!DURABLE_RE.test(s.durable)) throw new BusConfigError(`durable '${s.durable}' must match ${DURABLE_RE.source}`);
  if (!Number.isInteger(s.maxDeliver) || s.maxDeliver < 1) {
    throw new BusConfigError(`maxDeliver must be an integer >= 1 (got ${s.maxDeliver})`);
  }
  if (s.backoffMs.length === 0 || s.backoffMs.some((b) => !Number.isFinite(b) || b <= 0)) {
    throw new BusConfigError('backoffMs must be a non-empty list of positive durations');
  }
  if (s.maxDeliver > 1 && s.backoffMs.length >= s.maxDeliver) {
    // JetStream's own rule: max_deliver must exceed the number of backoff steps.
    throw new BusConfigError(`backoffMs has ${s.backoffMs.length} steps; maxDeliver (${s.maxDeliver}) must be larger`);
  }
  if (!Number.isInteger(s.concurrency) || s.concurrency < 1) {
    throw new BusConfigError(`concurrency must be an integer >= 1 (got ${s.concurrency})`);
  }
  return s;
}

/** Delay before the next delivery after delivery number `deliveryCount` failed. */
export function backoffFor(backoffMs: readonly number[], deliveryCount: number): number {
  const i = Math.min(Math.max(deliveryCount - 1, 0), backoffMs.length - 1);
  return backoffMs[i] ?? 0;
}

function consumerConfig(s: Settings, filter: string): Partial<ConsumerConfig> {
  const cfg: Partial<ConsumerConfig> = {
    durable_name: s.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: s.deliverPolicy === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
    filter_subject: filter,
    max_deliver: s.maxDeliver,
    // The first backoff step is also the ack wait: a handler that neither acks
    // nor sends progress within it is presumed dead. Handlers still running
    // send `working()` well inside it (see heartbeat below).
    ack_wait: nanos(backoffFor(s.backoffMs, 1)),
    max_ack_pending: Math.max(1000, s.concurrency * 4),
  };
  // JetStream rejects backoff with max_deliver 1 (nothing to back off from).
  if (s.maxDeliver > 1) cfg.backoff = s.backoffMs.map((b) => nanos(b));
  return cfg;
}

/** Create the durable, or update it when it exists (create-or-update). */
async function provisionConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig>): Promise<void> {
  const name = cfg.durable_name as string;
  try {
    await jsm.consumers.info(stream, name);
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.code === 10014)) throw e; // 10014: consumer not found
    try {
      await jsm.consumers.add(stream, cfg);
      return;
    } catch (e2) {
      // 10148/10013: created concurrently by another replica: fall through to update.
      if (!(e2 instanceof JetStreamApiError)) throw e2;
    }
  }
  const { durable_name: _d, deliver_policy: _p, ack_policy: _a, ...mutable } = cfg;
  await jsm.consumers.update(stream, name, mutable);
}

function headerRecord(m: JsMsg): Record<string, string> {
  const out: Record<string, string> = {};
  if (m.headers !== undefined) for (const k of m.headers.keys()) out[k] = m.headers.get(k);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Provision the durable for `subject` and start its pull loop. */
export async function startConsumer<S extends Subject>(
  deps: ConsumerDeps,
  subject: S,
  handler: EventHandler<S>,
  opts: ConsumeOptions,
): Promise<Subscription> {
  const s = settingsOf(opts);
  const { js, jsm, layout, logger } = deps;
  const stream = layout.events;
  await provisionConsumer(jsm, stream, consumerConfig(s, layout.wireSubject(subject)));
  // Progress heartbeat for long handlers: a third of the ack wait.
  const heartbeatMs = Math.max(10, Math.floor(backoffFor(s.backoffMs, 1) / 3));

  let stopping = false;
  let messages: ConsumerMessages | undefined;
  const inflight = new Set<Promise<void>>();

  const original = (m: JsMsg): OriginalMessage => ({
    data: m.data,
    headers: m.headers,
    stream: m.info.stream,
    streamSequence: m.info.streamSequence,
    deliveryCount: m.info.deliveryCount,
  });

  const deadLetter = async (m: JsMsg, input: DeadLetterInput): Promise<void> => {
    await publishDeadLetter(js, layout, deps.retry, deps.isClosed, original(m), subject, input);
    m.term(input.reason.slice(0, 200));
    logger.warn(
      { subject, durable: s.durable, seq: m.info.streamSequence, kind: input.kind, reason: input.reason },
      'bus: message dead-lettered',
    );
  };

  const handle = async (m: JsMsg): Promise<void> => {
    const deliveryCount = m.info.deliveryCount;
    const lastAttempt = deliveryCount >= s.maxDeliver;
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(m.data));
    } catch (e) {
      await deadLetter(m, { kind: 'invalid', reason: `payload is not JSON: ${(e as Error).message}`, consumer: s.durable });
      return;
    }
    const valid = validateEnvelope(parsed, subject);
    if (!valid.ok) {
      const eventId = typeof (parsed as { id?: unknown })?.id === 'string' ? (parsed as { id: string }).id : undefined;
      await deadLetter(m, {
        kind: 'invalid',
        reason: `schema validation failed: ${valid.errors.join('; ')}`,
        errors: valid.errors,
        consumer: s.durable,
        ...(eventId !== undefined ? { eventId } : {}),
      });
      return;
    }
    const event = valid.value as EventEnvelope<S>;
    const delivery: DeliveryContext = {
      subject,
      stream,
      consumer: s.durable,
      streamSequence: m.info.streamSequence,
      deliveryCount,
      lastAttempt,
      headers: headerRecord(m),
    };
    const attrs = {
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'messaging.destination.name': subject,
      'messaging.consumer.group.name': s.durable,
      'messaging.message.id': event.id,
      'messaging.nats.stream_sequence': m.info.streamSequence,
      'messaging.nats.delivery_count': deliveryCount,
    };
    const heartbeat = setInterval(() => m.working(), heartbeatMs);
    let failure: unknown;
    try {
      await withProcessSpan(subject, m.headers, attrs, async () => {
        await handler(event, delivery);
      });
    } catch (e) {
      failure = e;
    } finally {
      clearInterval(heartbeat);
    }
    if (failure === undefined) {
      await m.ackAck();
      return;
    }
    const reason = failure instanceof Error ? failure.message : String(failure);
    if (lastAttempt) {
      await deadLetter(m, { kind: 'max-deliveries', reason, eventId: event.id, consumer: s.durable });
    } else {
      // Deliberately neither ack nor nak: the consumer's backoff redelivers it.
      logger.warn({ subject, durable: s.durable, seq: m.info.streamSequence, deliveryCount, reason }, 'bus: handler failed, will retry');
    }
  };

  const track = (m: JsMsg): Promise<void> => {
    const p = handle(m)
      .catch((e: unknown) => {
        // The ack/nak/DLQ itself failed (connection lost): JetStream redelivers after ack wait.
        logger.error({ subject, durable: s.durable, seq: m.info.streamSequence, err: e }, 'bus: message settlement failed');
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    return p;
  };

  const loop = async (): Promise<void> => {
    while (!stopping && !deps.isClosed()) {
      try {
        const c = await js.consumers.get(stream, s.durable);
        messages = await c.consume({ max_messages: s.concurrency });
        for await (const m of messages) {
          if (stopping) {
            m.nak(); // pulled but not started: hand it back at once
            continue;
          }
          void track(m);
          while (inflight.size >= s.concurrency) await Promise.race(inflight);
        }
        if (!stopping) await sleep(500); // iterator ended on its own (consumer deleted?): re-attach
      } catch (e) {
        if (stopping || deps.isClosed()) break;
        logger.error({ subject, durable: s.durable, err: e }, 'bus: consumer loop failed, restarting');
        await sleep(500);
      }
    }
    await Promise.allSettled([...inflight]);
  };

  // When the last delivery is never settled (the process died or hung past
  // the ack wait), JetStream stops redelivering and only announces it. Every
  // replica hears the advisory; the dead letter's msg id makes it one entry.
  const advisory = deps.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${s.durable}`, {
    callback: (err: Error | null, msg: Msg) => {
      if (err !== null) return;
      void onMaxDeliveries(msg).catch((e: unknown) =>
        logger.error({ subject, durable: s.durable, err: e }, 'bus: dead-lettering after max deliveries failed'),
      );
    },
  });
  const onMaxDeliveries = async (msg: Msg): Promise<void> => {
    const adv = msg.json<{ stream_seq?: number; deliveries?: number }>();
    if (typeof adv.stream_seq !== 'number') return;
    const stored = await jsm.streams.getMessage(stream, { seq: adv.stream_seq });
    if (stored === null) return;
    let eventId: string | undefined;
    try {
      const id: unknown = (JSON.parse(new TextDecoder().decode(stored.data)) as { id?: unknown }).id;
      if (typeof id === 'string') eventId = id;
    } catch {
      // not JSON: the dead letter carries it base64-encoded
    }
    await publishDeadLetter(
      js,
      layout,
      deps.retry,
      deps.isClosed,
      {
        data: stored.data,
        headers: stored.header,
        stream,
        streamSequence: stored.seq,
        deliveryCount: adv.deliveries ?? s.maxDeliver,
      },
      subject,
      {
        kind: 'max-deliveries',
        reason: 'no ack after the last allowed delivery (handler crashed, hung or lost its connection)',
        consumer: s.durable,
        ...(eventId !== undefined ? { eventId } : {}),
      },
    );
    logger.warn({ subject, durable: s.durable, seq: stored.seq }, 'bus: message dead-lettered after max deliveries');
  };

  const closed = loop().finally(() => advisory.unsubscribe());
  let stopped: Promise<void> | undefined;
  return {
    durable: s.durable,
    subject,
    closed,
    stop: () => {
      stopped ??= (async () => {
        stopping = true;
        await messages?.close();
        await closed;
      })();
      return stopped;
    },
  };
}
