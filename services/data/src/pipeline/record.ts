/**
 * Runtime helpers over cleaned records, kept free of TypeBox so that worker
 * threads (which only run the per-record stages) start quickly.
 */
import type { CleanRecord, PromptRecord } from './types.ts';

export const isPromptRecord = (r: CleanRecord): r is PromptRecord => 'prompt' in r;

/** The text a record is judged by (quality, dedup): the text, or prompt and completion joined. */
export function recordText(r: CleanRecord): string {
  return isPromptRecord(r) ? `${r.prompt}\n\n${r.completion}` : r.text;
}

export const SPLITS = ['train', 'val', 'test'] as const;
export type SplitName = (typeof SPLITS)[number];

/** The stages in the order a record goes through them. */
export const STAGES = ['normalise', 'quality', 'pii', 'length', 'perplexity', 'exact_dedup', 'near_dedup', 'split', 'tokenise'] as const;
export type StageName = (typeof STAGES)[number];
