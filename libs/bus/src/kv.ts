// NATS KV buckets through the bus's connection (the trainer keeps its
// rendezvous store in one). Buckets are namespaced like streams.
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { StorageType } from '@nats-io/jetstream';
import { BusConfigError } from './errors.ts';
import type { Bus, KvOptions } from './types.ts';

const BUCKET_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** The bucket name on the server for a logical bucket of `bus` (namespace applied). */
export function kvBucketName(bus: Pick<Bus, 'namespace'>, bucket: string): string {
  if (!BUCKET_RE.test(bucket)) throw new BusConfigError(`KV bucket '${bucket}' must match ${BUCKET_RE.source}`);
  return bus.namespace === undefined ? bucket : `${bus.namespace}_${bucket}`;
}

/** Open the KV bucket, creating it when missing (idempotent). */
export async function openKv(bus: Pick<Bus, 'namespace' | 'js'>, bucket: string, opts: KvOptions = {}): Promise<KV> {
  const name = kvBucketName(bus, bucket);
  const kvm = new Kvm(bus.js);
  return kvm.create(name, {
    history: opts.history ?? 1,
    ...(opts.ttlMs !== undefined ? { ttl: opts.ttlMs } : {}),
    storage: opts.storage === 'memory' ? StorageType.Memory : StorageType.File,
  });
}

export type { KV, KvEntry } from '@nats-io/kv';
