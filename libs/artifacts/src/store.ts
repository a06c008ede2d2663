import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArtifactKeyError } from './errors.ts';
import { createFileStore } from './file-store.ts';
import { createS3Store } from './s3-store.ts';
import type { S3StoreOptions } from './s3-store.ts';
import type { ArtifactStore } from './types.ts';

/**
 * Builds a store from one URL, as read from the environment (ARTIFACTS_URL):
 * `file:///var/lib/flywheel/artifacts` or an absolute path -> file backend
 * rooted there; `s3://bucket/prefix` -> s3 backend.
 */
export function createArtifactStore(url: string, s3?: Omit<S3StoreOptions, 'bucket' | 'prefix'>): ArtifactStore {
  if (url.startsWith('s3://')) {
    const rest = url.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1);
    return createS3Store({ ...s3, bucket, prefix });
  }
  if (url.startsWith('file://')) {
    let root: string;
    try {
      root = fileURLToPath(url);
    } catch (err) {
      throw new ArtifactKeyError(url, `not a usable file URL (${(err as Error).message})`);
    }
    return createFileStore({ root });
  }
  if (isAbsolute(url)) return createFileStore({ root: url });
  throw new ArtifactKeyError(url, 'artifact store URL must be file://..., s3://... or an absolute path');
}
