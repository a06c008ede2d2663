/**
 * The cleaning pipeline (implementation follows in the next commits).
 */
import type { PipelineConfig, PipelineConfigInput } from './config.ts';
import { resolveConfig } from './config.ts';
import type { LshParams } from './lsh.ts';
import { MemoryBandIndex, optimalLshParams } from './lsh.ts';
import type { CleanRecord, CleaningReport, InputRecord, PriorBandIndex, ShardInfo, SplitName } from './types.ts';
import type { TokenizerSource } from '../tokenize/index.ts';

export interface PipelineOptions {
  /** The dataset's tokenizer; worker threads load it themselves, so it is a source, not an object. */
  tokenizer: TokenizerSource;
  /** Band index of earlier dataset versions (the service's Postgres table). */
  priorIndex?: PriorBandIndex;
  /** Perplexity of a text under a reference model ("filled later by the engine"); used when config.perplexity.enabled. */
  perplexity?: (text: string) => Promise<number>;
  /** Folder for the cleaned split JSONL files and token shards (created). */
  workDir: string;
  signal?: AbortSignal;
}

export interface SplitOutput {
  split: SplitName;
  /** JSONL of cleaned records, one CleanRecord a line. */
  path: string;
  n_records: number;
  n_tokens: number;
  records(): AsyncIterable<CleanRecord>;
}

export interface PipelineResult {
  splits: Record<SplitName, SplitOutput>;
  shards: ShardInfo[];
  report: CleaningReport;
  /** This job's LSH band keys of kept records, to store in bulk for later versions. */
  index: MemoryBandIndex;
}

export interface Pipeline {
  readonly config: PipelineConfig;
  readonly lsh: LshParams;
  run(records: AsyncIterable<InputRecord> | Iterable<InputRecord>): Promise<PipelineResult>;
}

export class PipelineInputError extends Error {
  override name = 'PipelineInputError';
}
export const isPipelineInputError = (e: unknown): e is PipelineInputError => e instanceof PipelineInputError;

export function createPipeline(config: PipelineConfigInput | PipelineConfig | undefined, opts: PipelineOptions): Pipeline {
  const cfg = resolveConfig(config);
  const lsh = optimalLshParams(cfg.dedup.threshold, cfg.dedup.num_perm);
  return {
    config: cfg,
    lsh,
    run: () => Promise.reject(new Error(`not implemented yet (${opts.workDir})`)),
  };
}
