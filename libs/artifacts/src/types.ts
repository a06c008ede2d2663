import type { Readable } from 'node:stream';

/** What a write returns. `uri` is the address every other call accepts. */
export interface PutResult {
  uri: string;
  /** Key relative to the store's root (file) or prefix (s3). */
  key: string;
  /** Lower-case hex sha256 of the bytes written, computed while streaming. */
  sha256: string;
  size: number;
}

export interface ContentAddressedResult extends PutResult {
  /** False when an identical object was already stored (nothing was written). */
  created: boolean;
}

export interface ArtifactStat {
  uri: string;
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface PutOptions {
  /** Replace an existing object at that key. Default false: ArtifactExistsError. */
  overwrite?: boolean;
  contentType?: string;
}

export type Body = Readable | Buffer | Uint8Array;

/**
 * One interface over the file and s3 backends. Every method taking `ref`
 * accepts either a key ("datasets/ab/shard-0.bin") or a full URI of this
 * store ("file:///var/lib/fw/datasets/...", "s3://bucket/prefix/...").
 * Keys are '/'-separated relative paths; anything that could escape the
 * store's root is refused with ArtifactKeyError.
 */
export interface ArtifactStore {
  readonly scheme: 'file' | 's3';
  /** The URI of the store's root, e.g. "file:///data/artifacts/" or "s3://bucket/prefix/". */
  readonly rootUri: string;
  /** Validates a key or URI of this store and returns its URI (no I/O). */
  uriFor(ref: string): string;
  /** Validates a key or URI of this store and returns its key (no I/O). */
  keyFor(ref: string): string;
  /** Streams `body` to `ref` atomically: readers see the whole object or none. */
  put(ref: string, body: Body, options?: PutOptions): Promise<PutResult>;
  /** Stores `body` under `sha256/<first two hex>/<hash>`; an identical object is not written twice. */
  putContentAddressed(body: Body): Promise<ContentAddressedResult>;
  /** Opens the object for streaming; ArtifactNotFoundError when missing. */
  get(ref: string): Promise<Readable>;
  stat(ref: string): Promise<ArtifactStat>;
  exists(ref: string): Promise<boolean>;
  /** Every object whose key starts with `prefix` ('' for all), in key order per folder. */
  list(prefix?: string): AsyncIterable<ArtifactStat>;
  /** Removes the object; ArtifactNotFoundError when missing. */
  delete(ref: string): Promise<void>;
  /**
   * Removes temporary files/objects (".fwtmp-*") left by writers that died,
   * when last modified more than `olderThanMs` ago. Live writes keep their
   * temporary file's mtime fresh, so an age of an hour or more is safe.
   * Returns how many were removed.
   */
  sweepTemporary(olderThanMs: number): Promise<number>;
  /** Readiness check: the root is reachable and writable (file) / the bucket answers (s3). */
  ping(): Promise<void>;
}
