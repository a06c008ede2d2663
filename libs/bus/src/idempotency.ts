// Idempotent handling for services without their own transactional dedup.
// The preferred pattern is to record the event id in the same database
// transaction as the effect (INSERT ... ON CONFLICT DO NOTHING); this helper
// covers handlers whose effect is itself idempotent but expensive, by
// skipping events whose id was already marked done.
import type { KV } from '@nats-io/kv';
import type { Subject } from '@flywheel/contracts';
import type { EventHandler } from './types.ts';

/** Where processed event ids are remembered. */
export interface IdempotencyStore {
  /** True when `eventId` was marked done. */
  isDone(eventId: string): Promise<boolean>;
  /** Remember `eventId` as done. */
  markDone(eventId: string): Promise<void>;
}

/**
 * Wrap `handler` so an event already handled successfully is acked without
 * running it again. An event is marked done only after the handler returns,
 * so a crash in between means one more run (at-least-once), never a loss.
 */
export function idempotent<S extends Subject>(store: IdempotencyStore, handler: EventHandler<S>): EventHandler<S> {
  return async (event, delivery) => {
    if (await store.isDone(event.id)) return;
    await handler(event, delivery);
    await store.markDone(event.id);
  };
}

/** In-process store (tests, single-replica tools). Forgets on restart. */
export function memoryIdempotencyStore(): IdempotencyStore {
  const done = new Set<string>();
  return {
    isDone: async (id) => done.has(id),
    markDone: async (id) => {
      done.add(id);
    },
  };
}

/** Store in a NATS KV bucket (shared by replicas; set a TTL on the bucket to bound it). */
export function kvIdempotencyStore(kv: KV): IdempotencyStore {
  const key = (id: string): string => `done.${id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  return {
    isDone: async (id) => {
      const e = await kv.get(key(id));
      return e !== null && e.operation === 'PUT';
    },
    markDone: async (id) => {
      await kv.put(key(id), '1');
    },
  };
}
