// Events of the data service: a request to ingest raw data, and the outcome
// (a dataset version ready to train on, or a failure with its reason).
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { Id, Name, NonNegativeInt, OpaqueObject, Reason, Sha256Hex, Uri } from '../common.ts';

export const IngestFormat = Type.Union(
  [Type.Literal('jsonl'), Type.Literal('csv'), Type.Literal('parquet'), Type.Literal('text'), Type.Literal('auto')],
  { description: 'input format; `auto` sniffs it from the name and content' },
);

/** `fw.data.ingest.requested` v1: ingest the data at `source.uri` as a new version of `datasetName`. */
export const IngestRequestedV1 = Type.Object(
  {
    jobId: Type.Optional(Id),
    datasetName: Name,
    source: Type.Object({ uri: Uri }, { additionalProperties: false }),
    format: IngestFormat,
    /** Pipeline configuration (cleaning, dedup, tokenizer, splits); owned by the data service. */
    config: Type.Optional(OpaqueObject),
    requestedBy: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  },
  { additionalProperties: false },
);

export const DatasetSplit = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
    records: NonNegativeInt,
    tokens: NonNegativeInt,
    shards: NonNegativeInt,
  },
  { additionalProperties: false },
);

/** `fw.data.dataset.ready` v1: a dataset version is cleaned, tokenised, sharded and stored. */
export const DatasetReadyV1 = Type.Object(
  {
    datasetId: Id,
    datasetName: Name,
    /** Content hash prefix of the version (hex), stable for identical content. */
    version: Type.String({ pattern: '^[0-9a-f]{8,64}$' }),
    manifestUri: Uri,
    splits: Type.Array(DatasetSplit, { minItems: 1 }),
    /** Tokenizer identity, e.g. the model id or the tokenizer.json sha256. */
    tokenizer: Type.String({ minLength: 1, maxLength: 512 }),
    contentSha256: Sha256Hex,
  },
  { additionalProperties: false },
);

/** Pipeline stage that failed (fetch, parse, clean, dedup, tokenize, shard, store, ...). */
export const DatasetFailedStage = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9_-]*$' });

/** `fw.data.dataset.failed` v1: an ingest job gave up. */
export const DatasetFailedV1 = Type.Object(
  {
    jobId: Id,
    datasetName: Name,
    reason: Reason,
    stage: Type.Optional(DatasetFailedStage),
  },
  { additionalProperties: false },
);

export type IngestFormat = Static<typeof IngestFormat>;
export type IngestRequested = Static<typeof IngestRequestedV1>;
export type DatasetSplit = Static<typeof DatasetSplit>;
export type DatasetReady = Static<typeof DatasetReadyV1>;
export type DatasetFailed = Static<typeof DatasetFailedV1>;

