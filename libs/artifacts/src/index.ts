export { createArtifactStore } from './store.ts';
export { createFileStore } from './file-store.ts';
export type { FileStoreOptions } from './file-store.ts';
export { createS3Store, mapS3Error } from './s3-store.ts';
export type { S3StoreOptions } from './s3-store.ts';
export { contentKey, validateKey } from './keys.ts';
export {
  ArtifactError,
  ArtifactExistsError,
  ArtifactKeyError,
  ArtifactNotFoundError,
  ArtifactStoreUnavailableError,
  isArtifactError,
  isArtifactExistsError,
  isArtifactKeyError,
  isArtifactNotFoundError,
  isArtifactStoreUnavailableError,
} from './errors.ts';
export type { ArtifactStat, ArtifactStore, Body, ContentAddressedResult, PutOptions, PutResult } from './types.ts';
