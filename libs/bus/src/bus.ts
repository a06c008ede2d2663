// connectBus: one NATS connection with its JetStream handles, the stream
// layout, publish with dedup and retries, durable consumers, and an orderly
// close (stop pulling -> finish in-flight handlers -> drain the connection).
import { createEnvelope, eventDefinition, validateEvent } from '@flywheel/contracts';
import type { EventData, Subject } from '@flywheel/contracts';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { BusClosedError, BusConfigError, InvalidEventError } from './errors.ts';
import { startConsumer } from './consumer.ts';
import { publishWithRetry } from './publish.ts';
import type { RetryPolicy } from './publish.ts';
import { provisionStreams, streamLayout } from './streams.ts';
import { withPublishSpan } from './trace.ts';
import type { Bus, BusLogger, BusOptions, ConsumeOptions, EventHandler, PublishOptions, PublishResult, Subscription } from './types.ts';

const silent: BusLogger = { warn: () => undefined, error: () => undefined };

/** Connect to NATS, provision the streams (unless `provision: false`) and return the bus. */
export async function connectBus(opts: BusOptions): Promise<Bus> {
  const layout = streamLayout(opts.namespace);
  const retry: RetryPolicy = {
    retryMs: opts.publishRetryMs ?? 30_000,
    attemptTimeoutMs: opts.publishAttemptTimeoutMs ?? 5_000,
  };
  if (!(retry.retryMs > 0) || !(retry.attemptTimeoutMs > 0)) {
    throw new BusConfigError('publishRetryMs and publishAttemptTimeoutMs must be positive');
  }
  const logger = opts.logger ?? silent;
  const nc = await connect({
    servers: opts.servers,
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    ...(opts.pass !== undefined ? { pass: opts.pass } : {}),
    ...(opts.token !== undefined ? { token: opts.token } : {}),
    maxReconnectAttempts: opts.maxReconnectAttempts ?? -1,
    reconnectTimeWait: opts.reconnectTimeWaitMs ?? 250,
  });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  let closing: Promise<void> | undefined;
  const isClosed = (): boolean => closing !== undefined || nc.isClosed();
  const subscriptions = new Set<Subscription>();

  const provision = (): Promise<void> => provisionStreams(jsm, layout, opts.streams);

  const bus: Bus = {
    layout,
    nc,
    js,
    jsm,
    namespace: opts.namespace,
    provision,

    async publish<S extends Subject>(subject: S, data: EventData<S>, popts: PublishOptions = {}): Promise<PublishResult> {
      if (isClosed()) throw new BusClosedError(`publish '${subject}'`);
      if (eventDefinition(subject) === undefined) throw new InvalidEventError(subject, [`unknown subject '${subject}'`]);
      const valid = validateEvent(subject, data);
      if (!valid.ok) throw new InvalidEventError(subject, valid.errors);
      const env = createEnvelope(subject, data, {
        ...(popts.id !== undefined ? { id: popts.id } : {}),
        ...(popts.time !== undefined ? { time: popts.time } : {}),
        ...(opts.source !== undefined ? { source: opts.source } : {}),
      });
      const wire = layout.wireSubject(subject);
      const attrs = {
        'messaging.system': 'nats',
        'messaging.operation.type': 'send',
        'messaging.destination.name': subject,
        'messaging.message.id': env.id,
      };
      return withPublishSpan(subject, attrs, async (span) => {
        const { ack, attempts } = await publishWithRetry(
          js,
          { subject: wire, body: new TextEncoder().encode(JSON.stringify(env)), msgId: env.id, headers: popts.headers ?? {} },
          retry,
          () => nc.isClosed(),
        );
        span.setAttribute('messaging.nats.stream_sequence', ack.seq);
        return { id: env.id, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate, attempts };
      });
    },

    async consume<S extends Subject>(subject: S, handler: EventHandler<S>, copts: ConsumeOptions): Promise<Subscription> {
      if (isClosed()) throw new BusClosedError(`consume '${subject}'`);
      if (eventDefinition(subject) === undefined) throw new BusConfigError(`unknown subject '${subject}'`);
      const sub = await startConsumer({ nc, js, jsm, layout, retry, logger, isClosed: () => nc.isClosed() }, subject, handler, copts);
      subscriptions.add(sub);
      void sub.closed.finally(() => subscriptions.delete(sub));
      return sub;
    },

    close(): Promise<void> {
      closing ??= (async () => {
        await Promise.allSettled([...subscriptions].map((s) => s.stop()));
        if (!nc.isClosed()) {
          try {
            await nc.drain();
          } catch {
            await nc.close();
          }
        }
      })();
      return closing;
    },
    drain(): Promise<void> {
      return bus.close();
    },
    closed: nc.closed().then((e) => e ?? undefined),
  };

  if (opts.provision !== false) {
    try {
      await provision();
    } catch (e) {
      await nc.close();
      throw e;
    }
  }
  return bus;
}
