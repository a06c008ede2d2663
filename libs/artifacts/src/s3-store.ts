/**
 * s3:// backend over @aws-sdk/client-s3. Objects live under
 * `s3://<bucket>/<prefix><key>`. Uploads stream through a sha256 hasher into
 * @aws-sdk/lib-storage's Upload (multipart for large bodies); S3 only makes
 * an object visible once the upload completes, and Upload aborts the
 * multipart upload when the body stream fails, so a broken write never
 * leaves a partial object under the key.
 *
 * Every SDK failure is mapped to a typed error: 404 -> ArtifactNotFoundError,
 * 412 on a conditional write -> ArtifactExistsError, anything else
 * (network, credentials, permissions) -> ArtifactStoreUnavailableError.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ArtifactExistsError, ArtifactKeyError, ArtifactNotFoundError, ArtifactStoreUnavailableError } from './errors.ts';
import { chunksOf, hashingCounter } from './hashing.ts';
import { contentKey, hasScheme, TMP_PREFIX, validateKey, validatePrefix } from './keys.ts';
import type { ArtifactStat, ArtifactStore, Body, ContentAddressedResult, PutOptions, PutResult } from './types.ts';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket ('' or 'a/b'); a trailing '/' is implied. */
  prefix?: string;
  /** A configured client; otherwise one is built from region/endpoint and the default credential chain. */
  client?: S3Client;
  region?: string;
  /** For S3-compatible servers (MinIO, Ceph): e.g. http://minio:9000. */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Multipart part size in bytes (min 5 MiB). Default 8 MiB. */
  partSize?: number;
  /** Parts uploaded in parallel. Default 4. */
  queueSize?: number;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const meta = err.$metadata as { httpStatusCode?: number } | undefined;
  return meta?.httpStatusCode;
}

/** Maps an SDK error to the store's typed errors; never turns a failure into success. */
export function mapS3Error(ref: string, err: unknown): Error {
  const name = err instanceof Error ? err.name : '';
  const status = httpStatus(err);
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return new ArtifactNotFoundError(ref, { cause: err });
  if (name === 'PreconditionFailed' || status === 412) return new ArtifactExistsError(ref, { cause: err });
  return new ArtifactStoreUnavailableError(ref, { cause: err });
}

export function createS3Store(options: S3StoreOptions): ArtifactStore {
  const bucket = options.bucket;
  if (!BUCKET.test(bucket)) throw new ArtifactKeyError(bucket, 'not a valid S3 bucket name');
  const rawPrefix = (options.prefix ?? '').replace(/\/+$/, '');
  const prefix = rawPrefix === '' ? '' : validateKey(rawPrefix) + '/';
  const client =
    options.client ??
    new S3Client({
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? Boolean(options.endpoint),
    });
  const rootUri = `s3://${bucket}/${prefix}`;

  function keyFor(ref: string): string {
    if (!hasScheme(ref)) return validateKey(ref);
    if (!ref.startsWith('s3://')) throw new ArtifactKeyError(ref, 'not an s3:// URI of this store');
    if (!ref.startsWith(rootUri)) throw new ArtifactKeyError(ref, `outside the store root ${rootUri}`);
    return validateKey(ref.slice(rootUri.length), ref);
  }
  const objectKey = (key: string) => prefix + key;
  const uriOf = (key: string) => rootUri + key;

  async function send<T>(ref: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw mapS3Error(ref, err);
    }
  }

  async function headOrUndefined(ref: string, key: string) {
    try {
      return await client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey(key) }));
    } catch (err) {
      const mapped = mapS3Error(ref, err);
      if (mapped instanceof ArtifactNotFoundError) return undefined;
      throw mapped;
    }
  }

  /** Streams body to s3Key through the hasher; rejects (and aborts the upload) when the body fails. */
  async function upload(ref: string, s3Key: string, body: Body, extra: { contentType?: string; ifNoneMatch?: boolean }) {
    const pass = new PassThrough();
    const hc = hashingCounter();
    const feeding = (async () => {
      try {
        for await (const chunk of chunksOf(body)) {
          hc.update(chunk);
          if (!pass.write(chunk)) await new Promise<void>((r) => pass.once('drain', r));
        }
        pass.end();
      } catch (err) {
        pass.destroy(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    })();
    const up = new Upload({
      client,
      partSize: options.partSize ?? 8 * 1024 * 1024,
      queueSize: options.queueSize ?? 4,
      leavePartsOnError: false,
      params: {
        Bucket: bucket,
        Key: s3Key,
        Body: pass,
        ...(extra.contentType ? { ContentType: extra.contentType } : {}),
        ...(extra.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      },
    });
    const [fed, done] = await Promise.allSettled([feeding, up.done()]);
    if (fed.status === 'rejected') throw fed.reason;
    if (done.status === 'rejected') throw mapS3Error(ref, done.reason);
    return hc.digest();
  }

  async function put(ref: string, body: Body, opts: PutOptions = {}): Promise<PutResult> {
    const key = keyFor(ref);
    if (!opts.overwrite && (await headOrUndefined(ref, key))) throw new ArtifactExistsError(ref);
    const extra = { ifNoneMatch: !opts.overwrite, ...(opts.contentType ? { contentType: opts.contentType } : {}) };
    const { sha256, size } = await upload(ref, objectKey(key), body, extra);
    return { uri: uriOf(key), key, sha256, size };
  }

  async function putContentAddressed(body: Body): Promise<ContentAddressedResult> {
    const tmpKey = `${prefix}${TMP_PREFIX}${randomBytes(12).toString('hex')}`;
    const { sha256, size } = await upload(tmpKey, tmpKey, body, {});
    const key = contentKey(sha256);
    try {
      const existing = await headOrUndefined(key, key);
      if (!existing) {
        await send(key, () =>
          client.send(new CopyObjectCommand({ Bucket: bucket, Key: objectKey(key), CopySource: `${bucket}/${encodeURIComponent(tmpKey)}` })),
        );
      }
      return { uri: uriOf(key), key, sha256, size, created: !existing };
    } finally {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: tmpKey })).catch(() => undefined);
    }
  }

  async function statOf(ref: string): Promise<ArtifactStat> {
    const key = keyFor(ref);
    const head = await send(ref, () => client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey(key) })));
    return { uri: uriOf(key), key, size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
  }

  return {
    scheme: 's3',
    rootUri,
    keyFor,
    uriFor: (ref) => uriOf(keyFor(ref)),
    put,
    putContentAddressed,
    async get(ref: string): Promise<Readable> {
      const key = keyFor(ref);
      const out = await send(ref, () => client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey(key) })));
      if (!out.Body) throw new ArtifactStoreUnavailableError(ref);
      return out.Body as Readable;
    },
    stat: statOf,
    async exists(ref: string) {
      return (await headOrUndefined(ref, keyFor(ref))) !== undefined;
    },
    async *list(p = '') {
      validatePrefix(p);
      let token: string | undefined;
      do {
        const page = await send(rootUri + p, () =>
          client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix + p, ContinuationToken: token })),
        );
        for (const o of page.Contents ?? []) {
          const key = o.Key?.slice(prefix.length);
          if (!key || key.split('/').some((s) => s.startsWith(TMP_PREFIX))) continue;
          yield { uri: uriOf(key), key, size: o.Size ?? 0, modifiedAt: o.LastModified ?? new Date(0) };
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    },
    async delete(ref: string) {
      const key = keyFor(ref);
      // S3 deletes are idempotent; check first so a missing object is reported like the file backend does.
      await statOf(ref);
      await send(ref, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey(key) })));
    },
    async sweepTemporary(olderThanMs: number) {
      // Temporary objects live directly under the prefix (putContentAddressed).
      // Incomplete multipart uploads are not objects: expire them with a bucket
      // lifecycle rule (AbortIncompleteMultipartUpload).
      const cutoff = Date.now() - olderThanMs;
      let removed = 0;
      let token: string | undefined;
      do {
        const page = await send(rootUri, () =>
          client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix + TMP_PREFIX, ContinuationToken: token })),
        );
        for (const o of page.Contents ?? []) {
          if (!o.Key || (o.LastModified?.getTime() ?? Infinity) >= cutoff) continue;
          const key = o.Key;
          await send(key, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })));
          removed++;
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return removed;
    },
    async ping() {
      await send(rootUri, () => client.send(new HeadBucketCommand({ Bucket: bucket })));
    },
  };
}
