/**
 * The s3 backend without an S3 server: key/URI mapping is pure, and the
 * error paths run the real SDK against (a) a port nobody listens on and
 * (b) a tiny local HTTP server that answers every request with a fixed S3
 * error. Nothing here can succeed by accident: no test asserts an upload
 * or read that did not happen. A run against MinIO/S3 is not part of this
 * suite (no server is reachable from CI).
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { NoSuchKey, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArtifactExistsError,
  ArtifactKeyError,
  ArtifactNotFoundError,
  ArtifactStoreUnavailableError,
  createArtifactStore,
  createS3Store,
  mapS3Error,
} from './index.ts';
import { collect } from './testing.ts';

const client = (endpoint: string) =>
  new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });

describe('s3 store', () => {
  it('s3 store - maps keys to bucket/prefix URIs and back', () => {
    const store = createS3Store({ bucket: 'fw-artifacts', prefix: 'prod/', client: client('http://127.0.0.1:9') });
    expect(store.rootUri).toBe('s3://fw-artifacts/prod/');
    expect(store.uriFor('datasets/v1/a.bin')).toBe('s3://fw-artifacts/prod/datasets/v1/a.bin');
    expect(store.keyFor('s3://fw-artifacts/prod/datasets/v1/a.bin')).toBe('datasets/v1/a.bin');
    const noPrefix = createArtifactStore('s3://fw-artifacts', { client: client('http://127.0.0.1:9') });
    expect(noPrefix.uriFor('k')).toBe('s3://fw-artifacts/k');
    expect(createArtifactStore('s3://b-1/a/b').rootUri).toBe('s3://b-1/a/b/');
  });

  it('s3 store - refuses URIs of other buckets or prefixes and hostile keys', () => {
    const store = createS3Store({ bucket: 'fw-artifacts', prefix: 'prod', client: client('http://127.0.0.1:9') });
    for (const ref of [
      's3://other/prod/a',
      's3://fw-artifacts/dev/a',
      's3://fw-artifacts/prod/../dev/a',
      's3://fw-artifacts/prod/%2e%2e/a',
      's3://fw-artifacts/prodx/a',
      'file:///etc/passwd',
      '../a',
      'a//b',
      'a\\b',
      'a\u0000b',
      '/abs',
    ]) {
      expect(() => store.keyFor(ref), ref).toThrow(ArtifactKeyError);
    }
    expect(() => createS3Store({ bucket: 'Bad_Bucket' })).toThrow(ArtifactKeyError);
    expect(() => createS3Store({ bucket: 'ok-bucket', prefix: '../x' })).toThrow(ArtifactKeyError);
  });

  it('s3 store - maps SDK errors to typed errors', () => {
    const meta = (httpStatusCode: number) => ({ $metadata: { httpStatusCode }, $fault: 'client' as const });
    expect(mapS3Error('k', new NoSuchKey({ message: 'nope', ...meta(404) }))).toBeInstanceOf(ArtifactNotFoundError);
    const precondition = new S3ServiceException({ name: 'PreconditionFailed', ...meta(412) });
    expect(mapS3Error('k', precondition)).toBeInstanceOf(ArtifactExistsError);
    const denied = new S3ServiceException({ name: 'AccessDenied', ...meta(403) });
    const mapped = mapS3Error('k', denied);
    expect(mapped).toBeInstanceOf(ArtifactStoreUnavailableError);
    expect(mapped.cause).toBe(denied);
  });

  it('s3 store - every operation fails with StoreUnavailable when nothing listens', async () => {
    // Port 9 (discard) on loopback: connection refused.
    const store = createS3Store({ bucket: 'fw-artifacts', client: client('http://127.0.0.1:9') });
    await expect(store.put('a', Buffer.from('x'))).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.put('a', Buffer.from('x'), { overwrite: true })).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.putContentAddressed(Buffer.from('x'))).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.get('a')).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.stat('a')).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.exists('a')).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.delete('a')).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(collect(store.list())).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.ping()).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
    await expect(store.sweepTemporary(0)).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
  });

  describe('against a server that answers with errors', () => {
    let server: Server;
    let endpoint: string;
    let status = 404;
    const seen: string[] = [];
    beforeAll(async () => {
      server = createServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        req.resume();
        req.on('end', () => {
          const code = status === 404 ? 'NoSuchKey' : 'AccessDenied';
          res.writeHead(status, { 'content-type': 'application/xml' });
          res.end(req.method === 'HEAD' ? undefined : `<?xml version="1.0"?><Error><Code>${code}</Code><Message>m</Message></Error>`);
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('s3 store - 404 answers become NotFound, 403 answers StoreUnavailable', async () => {
      const store = createS3Store({ bucket: 'fw-artifacts', prefix: 'p', client: client(endpoint) });
      status = 404;
      await expect(store.get('a/b')).rejects.toBeInstanceOf(ArtifactNotFoundError);
      await expect(store.stat('a/b')).rejects.toBeInstanceOf(ArtifactNotFoundError);
      expect(await store.exists('a/b')).toBe(false);
      await expect(store.delete('a/b')).rejects.toBeInstanceOf(ArtifactNotFoundError);
      expect(seen).toContain('GET /fw-artifacts/p/a/b?x-id=GetObject');
      status = 403;
      await expect(store.get('a/b')).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
      await expect(store.exists('a/b')).rejects.toBeInstanceOf(ArtifactStoreUnavailableError);
      // The upload is refused by the server: put must fail, not report success.
      await expect(store.put('a/b', Readable.from([Buffer.from('x')]), { overwrite: true })).rejects.toBeInstanceOf(
        ArtifactStoreUnavailableError,
      );
    });

    it('s3 store - a body that fails before the first part is complete sends nothing', async () => {
      const store = createS3Store({ bucket: 'fw-artifacts', client: client(endpoint) });
      seen.length = 0;
      async function* failing() {
        yield Buffer.alloc(1024, 1);
        throw new Error('upstream died');
      }
      await expect(store.put('a/b', Readable.from(failing()), { overwrite: true })).rejects.toThrow('upstream died');
      expect(seen.filter((r) => r.startsWith('PUT') || r.startsWith('POST'))).toEqual([]);
    });
  });
});
