// Public API of @flywheel/bus.
export { connectBus } from './bus.ts';
export { openKv, kvBucketName } from './kv.ts';
export type { KV, KvEntry } from './kv.ts';
export { idempotent, memoryIdempotencyStore, kvIdempotencyStore } from './idempotency.ts';
export type { IdempotencyStore } from './idempotency.ts';
export { streamLayout, eventSubjectFilters } from './streams.ts';
export { DEFAULT_BACKOFF_MS, DEFAULT_MAX_DELIVER, backoffFor } from './consumer.ts';
export { injectContext, extractContext } from './trace.ts';
export * from './errors.ts';
export type * from './types.ts';
