/**
 * Deterministic train/val/test split.
 *
 * Each record gets a key: a seeded hash of its content (not its id or
 * position), so the same data in any order splits the same way. Within each
 * stratum (all records, or the records sharing a value of the stratify
 * field) records are ranked by key and cut at the configured proportions, so
 * every stratum is split in the same proportions (up to rounding), not just
 * the whole dataset on average.
 */
import { createHash } from 'node:crypto';
import type { PipelineConfig } from './config.ts';
import { SPLITS, isPromptRecord, type SplitName } from './record.ts';
import type { CleanRecord } from './types.ts';

/** 53-bit content key of a record under a seed. */
export function splitKey(r: CleanRecord, seed: number): number {
  const h = createHash('sha256').update(`${seed}\u0000`);
  if (isPromptRecord(r)) h.update('p\u0000').update(r.prompt).update('\u0000').update(r.completion);
  else h.update('t\u0000').update(r.text);
  const d = h.digest();
  return (d.readUInt32LE(0) & 0x1fffff) * 0x100000000 + d.readUInt32LE(4);
}

/** The stratum of a record: the stratify field's value as a string ('' when absent). */
export function stratumOf(r: CleanRecord, field: string | undefined): string {
  if (field === undefined) return '';
  const v = r.fields?.[field];
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * Split index (0 train, 1 val, 2 test) for each record, given their keys and
 * strata. Ties in key (identical content) are broken by position.
 */
export function assignSplits(keys: Float64Array, strata: readonly string[], cfg: PipelineConfig['split']): Uint8Array {
  const out = new Uint8Array(keys.length);
  const groups = new Map<string, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const s = strata[i] ?? '';
    let g = groups.get(s);
    if (!g) groups.set(s, (g = []));
    g.push(i);
  }
  for (const idx of groups.values()) {
    idx.sort((a, b) => keys[a]! - keys[b]! || a - b);
    const n = idx.length;
    const nTrain = Math.round(n * cfg.train);
    const nTrainVal = Math.min(n, Math.round(n * (cfg.train + cfg.val)));
    for (let j = 0; j < n; j++) out[idx[j]!] = j < nTrain ? 0 : j < nTrainVal ? 1 : 2;
  }
  return out;
}

export const splitName = (i: number): SplitName => SPLITS[i]!;
