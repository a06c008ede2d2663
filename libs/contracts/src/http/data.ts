// HTTP bodies of the data service (services/data), version 1 of its API
// (`/v1/...`). The service validates requests and serialises responses with
// these schemas; the CLI and the other services read the same types.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Id, Name, NonNegativeInt, OpaqueObject, Sha256Hex, Uri } from '../common.ts';
import { DatasetSplit, IngestFormat } from '../events/data.ts';

export const DatasetNameParams = Type.Object({ name: Name }, { additionalProperties: false });
export const VersionParams = Type.Object(
  { name: Name, version: Type.String({ pattern: '^(latest|[0-9a-f]{8,64})$' }) },
  { additionalProperties: false },
);
export const SplitParams = Type.Object(
  { name: Name, version: VersionParams.properties.version, split: Type.Union([Type.Literal('train'), Type.Literal('val'), Type.Literal('test')]) },
  { additionalProperties: false },
);
export const ShardParams = Type.Object(
  { name: Name, version: VersionParams.properties.version, file: Type.String({ pattern: '^[A-Za-z0-9._-]+\\.bin$' }) },
  { additionalProperties: false },
);
export const JobParams = Type.Object({ id: Id }, { additionalProperties: false });
export const Paging = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  },
  { additionalProperties: false },
);

/** `POST /v1/uploads` (raw body) response: where the bytes are stored. */
export const UploadResult = Type.Object(
  { uri: Uri, sha256: Sha256Hex, size: NonNegativeInt, created: Type.Boolean() },
  { additionalProperties: false },
);

/** `POST /v1/datasets/:name/ingest` request: ingest stored bytes. */
export const IngestBody = Type.Object(
  {
    source: Type.Object({ uri: Uri }, { additionalProperties: false }),
    format: Type.Optional(IngestFormat),
    /** Pipeline configuration; see the data service's docs for its fields and defaults. */
    config: Type.Optional(OpaqueObject),
  },
  { additionalProperties: false },
);

/** Query of `POST /v1/datasets/:name/uploads`: the body is the data itself. */
export const UploadQuery = Type.Object(
  {
    format: Type.Optional(IngestFormat),
    filename: Type.Optional(Type.String({ maxLength: 256 })),
    /** Pipeline configuration as URL-encoded JSON. */
    config: Type.Optional(Type.String({ maxLength: 65536 })),
  },
  { additionalProperties: false },
);

export const JobStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('running'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
]);

export const JobView = Type.Object(
  {
    id: Id,
    datasetName: Name,
    status: JobStatus,
    format: Type.String(),
    sourceUri: Uri,
    attempts: NonNegativeInt,
    /** Records and bytes read so far, current stage. */
    progress: OpaqueObject,
    error: Type.Optional(Type.String()),
    errorStage: Type.Optional(Type.String()),
    version: Type.Optional(Type.String()),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

export const VersionView = Type.Object(
  {
    datasetId: Id,
    datasetName: Name,
    version: Type.String(),
    contentSha256: Sha256Hex,
    manifestUri: Uri,
    jobId: Id,
    splits: Type.Array(DatasetSplit),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

/** Response of the ingest routes: a new job, or the version these bytes and config already made. */
export const IngestAccepted = Type.Object(
  {
    job: Type.Optional(JobView),
    version: Type.Optional(VersionView),
    /** True when an identical version already existed (nothing was queued). */
    existing: Type.Boolean(),
  },
  { additionalProperties: false },
);

export const DatasetView = Type.Object(
  {
    id: Id,
    name: Name,
    createdAt: Type.String({ format: 'date-time' }),
    versions: NonNegativeInt,
    latestVersion: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

export const DatasetList = Type.Object({ items: Type.Array(DatasetView) }, { additionalProperties: false });
export const VersionList = Type.Object({ items: Type.Array(VersionView) }, { additionalProperties: false });
export const JobList = Type.Object({ items: Type.Array(JobView) }, { additionalProperties: false });
export const QuarantineList = Type.Object(
  {
    items: Type.Array(
      Type.Object({ id: Type.String(), ref: Type.String(), reason: Type.String(), sample: Type.String() }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

export type UploadResult = Static<typeof UploadResult>;
export type IngestBody = Static<typeof IngestBody>;
export type UploadQuery = Static<typeof UploadQuery>;
export type JobView = Static<typeof JobView>;
export type VersionView = Static<typeof VersionView>;
export type IngestAccepted = Static<typeof IngestAccepted>;
export type DatasetView = Static<typeof DatasetView>;
