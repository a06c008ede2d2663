/**
 * The rendezvous store of run attempts (torchrun's c10d store, here kept in
 * NATS KV so that every trainer replica can answer for it). One bucket holds
 * every attempt: `m.<run>.<attempt>` is the sha256 of the attempt's token (its
 * presence means the attempt is open), `k.<run>.<attempt>.<key>` the values.
 * Run ids and keys are base64url-encoded, so any key of the protocol is a
 * valid NATS subject token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KV } from '@flywheel/bus';

export const KEY_RE = /^[A-Za-z0-9._/-]{1,200}$/;
export const MAX_VALUE_BYTES = 1024 * 1024;
export const MAX_WAIT_MS = 600_000;

export class StoreError extends Error {
  override name = 'StoreError';
  readonly status: number;
  readonly slug: string;
  constructor(status: number, slug: string, message: string) {
    super(message);
    this.status = status;
    this.slug = slug;
  }
}

export const isStoreError = (e: unknown): e is StoreError => e instanceof StoreError;

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export interface RendezvousStore {
  /** Opens the store of an attempt and returns its bearer token. */
  open(runId: string, attempt: number): Promise<string>;
  /** Deletes every key of the attempt; later requests get 410. */
  close(runId: string, attempt: number): Promise<void>;
  /** Throws StoreError 401 (bad token) or 410 (attempt not open). */
  authorize(runId: string, attempt: number, token: string | undefined): Promise<void>;
  set(runId: string, attempt: number, key: string, value: Uint8Array): Promise<void>;
  /** The value, waiting up to `waitMs` for it; undefined when it did not appear. */
  get(runId: string, attempt: number, key: string, waitMs: number): Promise<Uint8Array | undefined>;
  add(runId: string, attempt: number, key: string, delta: bigint): Promise<bigint>;
}

export function createRendezvousStore(kv: KV): RendezvousStore {
  const metaKey = (runId: string, attempt: number) => `m.${b64(runId)}.${attempt}`;
  const dataKey = (runId: string, attempt: number, key: string) => {
    if (!KEY_RE.test(key)) throw new StoreError(400, 'bad-request', `key must match ${KEY_RE.source}`);
    return `k.${b64(runId)}.${attempt}.${b64(key)}`;
  };
  const present = (e: { operation: string } | null | undefined) => !!e && e.operation === 'PUT';

  return {
    async open(runId, attempt) {
      const token = randomBytes(24).toString('base64url');
      await kv.put(metaKey(runId, attempt), sha(token));
      return token;
    },

    async close(runId, attempt) {
      await kv.purge(metaKey(runId, attempt));
      const keys = await kv.keys(`k.${b64(runId)}.${attempt}.>`);
      const all: string[] = [];
      for await (const k of keys) all.push(k);
      for (const k of all) await kv.purge(k);
    },

    async authorize(runId, attempt, token) {
      const meta = await kv.get(metaKey(runId, attempt));
      if (!present(meta)) throw new StoreError(410, 'gone', `the store of run ${runId} attempt ${attempt} is closed or unknown`);
      if (token === undefined || !timingSafeEqual(Buffer.from(meta!.value), sha(token)))
        throw new StoreError(401, 'unauthorized', 'missing or wrong store token');
    },

    async set(runId, attempt, key, value) {
      if (value.byteLength > MAX_VALUE_BYTES) throw new StoreError(413, 'payload-too-large', `values are limited to ${MAX_VALUE_BYTES} bytes`);
      await kv.put(dataKey(runId, attempt, key), value);
    },

    async get(runId, attempt, key, waitMs) {
      const k = dataKey(runId, attempt, key);
      const first = await kv.get(k);
      if (present(first)) return first!.value;
      if (waitMs <= 0) return undefined;
      // The watcher first delivers the current value (if any), then every
      // change: a key set between the get above and here is not missed.
      const iter = await kv.watch({ key: k });
      const timer = setTimeout(() => iter.stop(), waitMs);
      try {
        for await (const e of iter) if (e.operation === 'PUT') return e.value;
        return undefined;
      } finally {
        clearTimeout(timer);
        iter.stop();
      }
    },

    async add(runId, attempt, key, delta) {
      const k = dataKey(runId, attempt, key);
      // Compare-and-set on the key's revision; a lost race just retries.
      for (let i = 0; i < 1000; i++) {
        const e = await kv.get(k);
        let next: bigint;
        try {
          if (!present(e)) {
            next = delta;
            await kv.create(k, String(next));
          } else {
            const text = Buffer.from(e!.value).toString('utf8');
            if (!/^-?[0-9]{1,30}$/.test(text)) throw new StoreError(400, 'bad-request', `key ${key} does not hold a decimal integer`);
            next = BigInt(text) + delta;
            await kv.update(k, String(next), e!.revision);
          }
          return next;
        } catch (err) {
          if (isStoreError(err)) throw err;
          if (!/wrong last sequence|key exists/i.test(String((err as Error).message))) throw err;
        }
      }
      throw new StoreError(503, 'unavailable', `add on ${key} lost 1000 races in a row`);
    },
  };
}
