/**
 * Locality-sensitive hashing over MinHash signatures: the choice of bands x
 * rows for a Jaccard threshold, band keys, and the in-memory index of one job.
 *
 * Band keys are 53-bit integers (two 32-bit hashes of the band's rows, seeded
 * by the band number): exact as a JS number and as a Postgres bigint, so the
 * service can store them and look them up for later dataset versions.
 */
import type { BandKey } from './types.ts';

export interface LshParams {
  num_perm: number;
  bands: number;
  rows: number;
  threshold: number;
  false_positive_weight: number;
  false_negative_weight: number;
}

/** Probability that two sets of Jaccard s share at least one band. */
const collision = (s: number, b: number, r: number) => 1 - Math.pow(1 - Math.pow(s, r), b);

function integrate(f: (x: number) => number, lo: number, hi: number): number {
  const n = 200; // Simpson's rule; the integrands are smooth
  const h = (hi - lo) / n;
  let acc = f(lo) + f(hi);
  for (let i = 1; i < n; i++) acc += (i % 2 === 1 ? 4 : 2) * f(lo + i * h);
  return (acc * h) / 3;
}

/**
 * bands x rows (b*r <= numPerm) minimising the weighted area of false
 * positives (below the threshold) and false negatives (above it).
 */
const memo = new Map<string, LshParams>();

export function optimalLshParams(threshold: number, numPerm: number, fpWeight = 0.5, fnWeight = 0.5): LshParams {
  const key = `${threshold}/${numPerm}/${fpWeight}/${fnWeight}`;
  const hit = memo.get(key);
  if (hit) return { ...hit };
  const p = searchLshParams(threshold, numPerm, fpWeight, fnWeight);
  memo.set(key, p);
  return { ...p };
}

function searchLshParams(threshold: number, numPerm: number, fpWeight: number, fnWeight: number): LshParams {
  let best = { err: Infinity, b: 1, r: numPerm };
  for (let b = 1; b <= numPerm; b++) {
    const maxR = Math.floor(numPerm / b);
    for (let r = 1; r <= maxR; r++) {
      const fp = integrate((s) => collision(s, b, r), 0, threshold);
      const fn = integrate((s) => 1 - collision(s, b, r), threshold, 1);
      const err = fpWeight * fp + fnWeight * fn;
      if (err < best.err - 1e-15) best = { err, b, r };
    }
  }
  return { num_perm: numPerm, bands: best.b, rows: best.r, threshold, false_positive_weight: fpWeight, false_negative_weight: fnWeight };
}

/** Band keys of one signature, as numbers in [0, 2^53). */
export function bandKeys(sig: Uint32Array, bands: number, rows: number, out: Float64Array = new Float64Array(bands)): Float64Array {
  for (let b = 0; b < bands; b++) {
    let h1 = Math.imul(b + 1, 0x9e3779b1) ^ 0x1b873593;
    let h2 = Math.imul(b + 1, 0x85ebca77) ^ 0xcc9e2d51;
    const base = b * rows;
    for (let r = 0; r < rows; r++) {
      const v = sig[base + r]!;
      h1 = Math.imul(h1 ^ v, 0x5bd1e995);
      h1 ^= h1 >>> 13;
      h2 = Math.imul(h2 ^ v, 0x27d4eb2f);
      h2 ^= h2 >>> 15;
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 0x85ebca6b);
    h1 ^= h1 >>> 13;
    h2 = Math.imul(h2 ^ (h2 >>> 16), 0xc2b2ae35);
    h2 ^= h2 >>> 16;
    out[b] = (h1 & 0x1fffff) * 0x100000000 + (h2 >>> 0);
  }
  return out;
}

/**
 * The near-duplicate index of the current job: band key -> first kept record
 * (ordinal). The service dumps it in bulk with `bands()` after the job.
 */
export class MemoryBandIndex {
  private readonly map = new Map<number, number>();

  /** Ordinals of earlier records sharing a band with `keys` (ascending, unique). */
  candidates(keys: ArrayLike<number>): number[] {
    const out: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const hit = this.map.get(keys[i]!);
      if (hit !== undefined && !out.includes(hit)) out.push(hit);
    }
    return out.sort((x, y) => x - y);
  }

  insert(keys: ArrayLike<number>, ordinal: number): void {
    for (let i = 0; i < keys.length; i++) if (!this.map.has(keys[i]!)) this.map.set(keys[i]!, ordinal);
  }

  get size(): number {
    return this.map.size;
  }

  /** Every band key stored, as bigint (each fits a Postgres bigint). */
  *bands(): IterableIterator<BandKey> {
    for (const k of this.map.keys()) yield BigInt(k);
  }
}
