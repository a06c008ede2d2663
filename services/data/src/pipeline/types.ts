/**
 * Record model and report types of the cleaning pipeline.
 *
 * A parsed input record carries its text fields either as strings or as raw
 * Buffers (so the normaliser, not the parser, decides what invalid UTF-8
 * means). Normalisation maps every record to exactly one of two schemas:
 * plain text, or a prompt/completion pair.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { SplitName, StageName } from './record.ts';

/** A record as the ingest parsers hand it over. `id` is stable (line/row number). */
export interface InputRecord {
  id: string;
  text?: string | Uint8Array;
  prompt?: string | Uint8Array;
  completion?: string | Uint8Array;
  fields: Record<string, unknown>;
}

export const TextRecordSchema = Type.Object(
  { id: Type.String(), text: Type.String(), fields: Type.Optional(Type.Record(Type.String(), Type.Unknown())) },
  { $id: 'flywheel.data.TextRecord', additionalProperties: false },
);
export type TextRecord = Static<typeof TextRecordSchema>;

export const PromptRecordSchema = Type.Object(
  {
    id: Type.String(),
    prompt: Type.String(),
    completion: Type.String(),
    fields: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { $id: 'flywheel.data.PromptRecord', additionalProperties: false },
);
export type PromptRecord = Static<typeof PromptRecordSchema>;

/** A cleaned record: exactly one of the two schemas. */
export const CleanRecordSchema = Type.Union([TextRecordSchema, PromptRecordSchema], { $id: 'flywheel.data.CleanRecord' });
export type CleanRecord = TextRecord | PromptRecord;

// Runtime helpers live in record.ts (no TypeBox), so worker threads load less.
export { isPromptRecord, recordText, SPLITS, STAGES } from './record.ts';
export type { SplitName, StageName } from './record.ts';

/** Band keys of the MinHash LSH index: 53-bit non-negative integers (fit a Postgres bigint and a JS number exactly). */
export type BandKey = bigint;

/**
 * Near-duplicate band index of earlier dataset versions, implemented by the
 * service over Postgres. `lookup` returns the subset of `bandKeys` already stored.
 */
export interface PriorBandIndex {
  lookup(bandKeys: readonly BandKey[]): Promise<Set<BandKey>>;
}

/** One example of what a stage removed or changed (texts truncated). */
export interface StageExample {
  id: string;
  action: 'removed' | 'changed';
  reason: string;
  before?: string;
  after?: string;
}

export interface StageReport {
  stage: StageName;
  enabled: boolean;
  records_in: number;
  records_out: number;
  /** The stage's parameters and thresholds as applied (after defaults). */
  params: Record<string, unknown>;
  /** Removed records per reason. */
  removed_by_reason: Record<string, number>;
  /** Records changed (kept but modified), per kind (e.g. PII kind). */
  changed: Record<string, number>;
  examples: StageExample[];
}


export interface ShardInfo {
  path: string;
  split: SplitName;
  n_tokens: number;
  n_docs: number;
  sha256: string;
}

export interface CleaningReport {
  records_in: number;
  records_out: number;
  bytes_in: number;
  stages: StageReport[];
  splits: Record<SplitName, { n_records: number; n_tokens: number }>;
  shards: ShardInfo[];
  /** MinHash LSH parameters chosen for the Jaccard threshold. */
  lsh: { num_perm: number; bands: number; rows: number; threshold: number; false_positive_weight: number; false_negative_weight: number };
  workers: number;
  duration_ms: number;
}
