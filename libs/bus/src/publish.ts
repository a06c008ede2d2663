// Publishing with JetStream dedup. The envelope id is the `Nats-Msg-Id`, so a
// retry after a timeout or a server restart is stored at most once (within
// the stream's duplicate window). We retry only while the outcome is unknown
// or the server is unreachable; a definite refusal fails at once.
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
  headers as natsHeaders,
} from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import { JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import { PublishError } from './errors.ts';
import { injectContext } from './trace.ts';

export interface RawPublish {
  /** Wire subject. */
  subject: string;
  body: Uint8Array;
  msgId: string;
  headers?: Record<string, string>;
}

export interface RetryPolicy {
  /** Total time budget across attempts. */
  retryMs: number;
  /** Ack wait of one attempt. */
  attemptTimeoutMs: number;
}

/** True when the publish may not have reached the stream and a retry is safe and useful. */
export function isRetryablePublishError(e: unknown): boolean {
  if (e instanceof ClosedConnectionError || e instanceof DrainingConnectionError) return false;
  if (e instanceof JetStreamApiError) return e.status === 503 || e.code === 10008; // unavailable / cluster not ready
  return (
    e instanceof TimeoutError ||
    e instanceof NoRespondersError ||
    e instanceof ConnectionError ||
    e instanceof RequestError ||
    e instanceof JetStreamError ||
    // what the client throws on "no responders", e.g. while the server restarts
    (e instanceof Error && e.name === 'JetStreamNotEnabled')
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Publish one message and wait for its JetStream ack, retrying with the same
 * msg id until acked or the budget is spent. Trace context of the active span
 * is injected into the headers.
 */
export async function publishWithRetry(
  js: JetStreamClient,
  msg: RawPublish,
  policy: RetryPolicy,
  isClosed: () => boolean,
): Promise<{ ack: PubAck; attempts: number }> {
  const hdrs: MsgHdrs = natsHeaders();
  for (const [k, v] of Object.entries(msg.headers ?? {})) hdrs.set(k, v);
  injectContext(hdrs);
  const deadline = Date.now() + policy.retryMs;
  let attempts = 0;
  let pause = 50;
  for (;;) {
    attempts++;
    try {
      const ack = await js.publish(msg.subject, msg.body, {
        msgID: msg.msgId,
        headers: hdrs,
        timeout: Math.max(1, Math.min(policy.attemptTimeoutMs, deadline - Date.now())),
      });
      return { ack, attempts };
    } catch (e) {
      const left = deadline - Date.now();
      if (!isRetryablePublishError(e) || isClosed() || left <= 0) {
        throw new PublishError(msg.subject, msg.msgId, attempts, { cause: e });
      }
      // Fast failures (no responders while the server restarts) back off; a
      // timeout already waited, so it retries sooner.
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, 1000);
    }
  }
}
