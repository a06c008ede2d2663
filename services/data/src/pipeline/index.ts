/**
 * Public face of the data-cleaning pipeline: a pure library the data service
 * calls. Everything the service needs is re-exported here explicitly.
 *
 *   const pipeline = createPipeline(config, { tokenizer, priorIndex, workDir });
 *   const { splits, shards, report, index } = await pipeline.run(records);
 *   // splits.train.path is JSONL; shards are FWSHARD1 files (docs/formats.md);
 *   // index.bands() is the job's LSH band keys, to store in bulk afterwards.
 */
export type {
  InputRecord,
  TextRecord,
  PromptRecord,
  CleanRecord,
  SplitName,
  BandKey,
  PriorBandIndex,
  StageName,
  StageReport,
  StageExample,
  ShardInfo,
  CleaningReport,
} from './types.ts';
export { TextRecordSchema, PromptRecordSchema, CleanRecordSchema, SPLITS, STAGES, isPromptRecord, recordText } from './types.ts';
export type { PipelineConfig, PipelineConfigInput, PiiKind } from './config.ts';
export { PipelineConfigSchema, PiiKinds, resolveConfig, PipelineConfigError, isPipelineConfigError } from './config.ts';
export type { LshParams } from './lsh.ts';
export { optimalLshParams, MemoryBandIndex } from './lsh.ts';
export type { Pipeline, PipelineOptions, PipelineResult, RunOverrides, SplitOutput } from './pipeline.ts';
export { createPipeline, PipelineInputError, isPipelineInputError } from './pipeline.ts';
export type { TokenizerSource, TextTokenizer, ShardWriteOptions, ShardedRecord } from '../tokenize/index.ts';
export { loadTokenizer, writeShards, readShard, BYTE_LEVEL_TOKENIZER_PATH } from '../tokenize/index.ts';
