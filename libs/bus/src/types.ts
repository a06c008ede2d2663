// Public interfaces of @flywheel/bus. Implementations live in bus.ts,
// consumer.ts, publish.ts and kv.ts; callers only see these shapes.
import type { EventData, EventEnvelope, Subject } from '@flywheel/contracts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';

/** Options of {@link connectBus}. Every duration is in milliseconds. */
export interface BusOptions {
  /** NATS server URL(s), e.g. `nats://127.0.0.1:4222`. */
  servers: string | string[];
  /** Connection name shown by the server (`connz`); usually the service name. */
  name?: string;
  /** NATS user credentials. */
  user?: string;
  pass?: string;
  token?: string;
  /**
   * Isolates everything this bus touches: subjects become `<namespace>.fw...`,
   * streams `<NAMESPACE>_FW` / `<NAMESPACE>_FW_DLQ`, KV buckets
   * `<namespace>_<bucket>`. Used by tests (a unique one each) and to share one
   * NATS between environments. Letters, digits, `_` and `-` only.
   */
  namespace?: string;
  /** Emitting service, written to `envelope.source` of every published event. */
  source?: string;
  /** Create or update the streams at connect (default true). */
  provision?: boolean;
  /** Stream settings used by provisioning. */
  streams?: StreamSettings;
  /**
   * How long one publish may keep retrying (timeouts, no responders, a server
   * restarting) with the same `Nats-Msg-Id` before it fails. Default 30 s.
   */
  publishRetryMs?: number;
  /** Wait for the JetStream ack of one attempt. Default 5 s. */
  publishAttemptTimeoutMs?: number;
  /** Client-side reconnect: give up after this many attempts (-1 = never, the default). */
  maxReconnectAttempts?: number;
  /** Delay between reconnect attempts. Default 250 ms. */
  reconnectTimeWaitMs?: number;
  /** Where the bus reports retries, dead letters and loop failures (pino-compatible). Default silent. */
  logger?: BusLogger;
}

/** The subset of a pino logger the bus uses. */
export interface BusLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Stream limits applied when provisioning. */
export interface StreamSettings {
  /** JetStream dedup window for `Nats-Msg-Id`. Default 2 minutes. */
  duplicateWindowMs?: number;
  /** Max age of an event. Default 7 days. */
  maxAgeMs?: number;
  /** Max age of a dead letter. Default 30 days. */
  dlqMaxAgeMs?: number;
  /** Replicas (clustered JetStream). Default 1. */
  replicas?: number;
  /** `file` (default) or `memory`. */
  storage?: 'file' | 'memory';
}

/** Names of the streams and wire subjects of one bus (depends on its namespace). */
export interface StreamLayout {
  /** Stream holding every catalogued event: `FW` (or `<NS>_FW`). */
  readonly events: string;
  /** Stream holding dead letters: `FW_DLQ` (or `<NS>_FW_DLQ`). */
  readonly deadLetters: string;
  /** Wire subject of a logical subject (adds the namespace, if any). */
  wireSubject(subject: string): string;
  /** Logical subject of a wire subject (strips the namespace). */
  logicalSubject(wire: string): string;
  /** Wire subject of the dead-letter subject of a logical subject. */
  dlqWireSubject(subject: string): string;
}

/** Per-call options of {@link Bus.publish}. */
export interface PublishOptions {
  /** Event id (and `Nats-Msg-Id`). Pass a stable id to make a re-publish a no-op; default a fresh UUID. */
  id?: string;
  /** Event time; default now. */
  time?: Date | string;
  /** Extra NATS headers (trace headers are added by the bus). */
  headers?: Record<string, string>;
}

/** Outcome of a publish: where the event is stored. */
export interface PublishResult {
  /** The envelope id (also the `Nats-Msg-Id`). */
  readonly id: string;
  readonly stream: string;
  /** Stream sequence of the stored message (the original one, for a duplicate). */
  readonly seq: number;
  /** True when JetStream already held this message id (dedup window): nothing new stored. */
  readonly duplicate: boolean;
  /** Publish attempts made (1 unless the server was unreachable for a while). */
  readonly attempts: number;
}

/** Delivery facts handed to a handler with each event. */
export interface DeliveryContext {
  /** Logical subject (namespace stripped). */
  readonly subject: string;
  readonly stream: string;
  readonly consumer: string;
  readonly streamSequence: number;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** True on the last delivery the consumer allows (a throw now dead-letters). */
  readonly lastAttempt: boolean;
  /** Raw NATS headers, first value per key. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * Handles one event. Return normally to ack; throw to have it redelivered
 * after the backoff step, or, on the last allowed delivery, dead-lettered.
 */
export type EventHandler<S extends Subject> = (event: EventEnvelope<S>, delivery: DeliveryContext) => Promise<void> | void;

/** Options of {@link Bus.consume}. */
export interface ConsumeOptions {
  /** Durable consumer name, unique per (service, subject), e.g. `data-ingest`. */
  durable: string;
  /** Deliveries allowed per message, first included. Default 5. Must exceed `backoffMs.length`. */
  maxDeliver?: number;
  /**
   * Redelivery delays (JetStream consumer `backoff`): entry i is the wait
   * after delivery i+1 failed (handler threw, process died, ack lost) before
   * delivery i+2; the last entry repeats. Entry 0 is also the ack wait, which
   * running handlers keep extending with progress heartbeats.
   * Default [2 s, 10 s, 60 s, 300 s].
   */
  backoffMs?: number[];
  /** Handlers run concurrently on this many messages. Default 1. */
  concurrency?: number;
  /** Where a new durable starts: every stored event (`all`, default) or only new ones. */
  deliverPolicy?: 'all' | 'new';
}

/** A running consumer. */
export interface Subscription {
  readonly durable: string;
  readonly subject: string;
  /** Stop pulling, wait for in-flight handlers (acked or nakked), then resolve. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the consumer loop has ended (after stop() or close()). */
  readonly closed: Promise<void>;
}

/** Options of {@link openKv}. */
export interface KvOptions {
  /** Values kept per key. Default 1. */
  history?: number;
  /** Key expiry. Default none. */
  ttlMs?: number;
  storage?: 'file' | 'memory';
}

/** The bus: one NATS connection, its JetStream streams and consumers. */
export interface Bus {
  readonly layout: StreamLayout;
  /** The underlying connection and JetStream handles, for what the bus does not wrap. */
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly namespace: string | undefined;
  /** Create or update the streams (also done at connect unless `provision: false`). */
  provision(): Promise<void>;
  /**
   * Validate `data` against the subject's schema, wrap it in an envelope and
   * publish it with `Nats-Msg-Id` = envelope id, retrying (same id) until
   * JetStream acks. Throws {@link InvalidEventError} for a bad payload and
   * {@link PublishError} when no ack arrived in time.
   */
  publish<S extends Subject>(subject: S, data: EventData<S>, opts?: PublishOptions): Promise<PublishResult>;
  /** Create or update the durable pull consumer and start handling events. */
  consume<S extends Subject>(subject: S, handler: EventHandler<S>, opts: ConsumeOptions): Promise<Subscription>;
  /** Stop every consumer, wait for in-flight handlers, drain and close the connection. Idempotent. */
  close(): Promise<void>;
  /** Alias of {@link Bus.close}, named for graceful-shutdown call sites. */
  drain(): Promise<void>;
  /** Resolves when the connection has closed, with the error that closed it, if any. */
  readonly closed: Promise<Error | undefined>;
}
