/**
 * MinHash signatures over 32-bit shingle hashes.
 *
 * Shingles are word n-grams for space-separated scripts and character
 * n-grams for CJK text (detected by script). Words are hashed on the fly
 * while scanning the string's code units, so no substring or per-shingle
 * object is ever allocated: word hashes go into a reusable Uint32Array, and
 * each n-gram hash is a mix of n consecutive word hashes.
 *
 * A permutation i is the bijection x -> xorshift(imul(x ^ B[i], A[i])) on
 * 32-bit values (A[i] odd), applied to well-mixed shingle hashes; the
 * benchmark (bench/data/neardup.ts) checks the Jaccard estimate against the
 * exact Jaccard.
 */

/** murmur3 finaliser: a bijection on 32-bit integers with full avalanche. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Deterministic 32-bit generator (splitmix32) for permutation parameters. */
export function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
}

export const isCjkCode = (c: number): boolean =>
  (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x3040 && c <= 0x30ff) || (c >= 0xac00 && c <= 0xd7af) || (c >= 0xf900 && c <= 0xfaff);

/** Word character for shingling: ASCII letters/digits, and non-ASCII outside the common punctuation and space blocks. */
function isWordCode(c: number): boolean {
  if (c < 0x80) return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39);
  if (c < 0xc0) return c === 0xaa || c === 0xb5 || c === 0xba;
  if (c >= 0x2000 && c <= 0x2bff) return false; // general punctuation, symbols, arrows, box drawing
  if (c >= 0x3000 && c <= 0x303f) return false; // CJK symbols and punctuation
  if (c >= 0xff00 && c <= 0xff0f) return false; // fullwidth punctuation
  if (c >= 0xff1a && c <= 0xff20) return false;
  return c !== 0xfeff;
}

/** Fraction of CJK code units among word code units (0 when there are none). */
export function cjkFraction(text: string): number {
  let cjk = 0;
  let word = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (isWordCode(c)) word++;
    } else if (isCjkCode(c)) {
      cjk++;
      word++;
    } else if (isWordCode(c)) word++;
  }
  return word === 0 ? 0 : cjk / word;
}

export interface MinHasherOptions {
  numPerm: number;
  seed: number;
  wordNgram: number;
  charNgram: number;
  cjkMinFraction: number;
}

export class MinHasher {
  readonly numPerm: number;
  private readonly a: Uint32Array;
  private readonly b: Uint32Array;
  private readonly opts: MinHasherOptions;
  private units = new Uint32Array(1024); // word (or char) hashes of the current text
  private shingles = new Uint32Array(1024);

  constructor(opts: MinHasherOptions) {
    this.opts = opts;
    this.numPerm = opts.numPerm;
    const rnd = splitmix32(opts.seed ^ 0x5f3759df);
    this.a = new Uint32Array(opts.numPerm);
    this.b = new Uint32Array(opts.numPerm);
    for (let i = 0; i < opts.numPerm; i++) {
      this.a[i] = (rnd() | 1) >>> 0;
      this.b[i] = rnd();
    }
  }

  /** Hashes of the text's shingles into an internal buffer; returns how many. Duplicates are kept (they do not change a min). */
  shingleHashes(text: string): { hashes: Uint32Array; count: number } {
    const cjk = cjkFraction(text) >= this.opts.cjkMinFraction && this.opts.cjkMinFraction < 1;
    let nUnits = 0;
    if (this.units.length < text.length + 1) this.units = new Uint32Array(text.length + 1);
    const units = this.units;
    if (cjk) {
      // Character units: every word code unit, lower-cased for ASCII.
      for (let i = 0; i < text.length; i++) {
        let c = text.charCodeAt(i);
        if (!isWordCode(c)) continue;
        if (c >= 0x41 && c <= 0x5a) c += 32;
        units[nUnits++] = fmix32(c ^ 0x9e3779b9);
      }
    } else {
      let h = 0x811c9dc5;
      let inWord = false;
      for (let i = 0; i < text.length; i++) {
        let c = text.charCodeAt(i);
        if (isWordCode(c)) {
          if (c >= 0x41 && c <= 0x5a) c += 32;
          h = Math.imul(h ^ c, 0x01000193);
          inWord = true;
        } else if (inWord) {
          units[nUnits++] = fmix32(h);
          h = 0x811c9dc5;
          inWord = false;
        }
      }
      if (inWord) units[nUnits++] = fmix32(h);
    }
    const n = cjk ? this.opts.charNgram : this.opts.wordNgram;
    const count = nUnits === 0 ? 0 : Math.max(1, nUnits - n + 1);
    if (this.shingles.length < count) this.shingles = new Uint32Array(count * 2);
    const out = this.shingles;
    const width = Math.min(n, nUnits);
    for (let s = 0; s < count; s++) {
      let h = 0x9747b28c ^ width;
      for (let j = 0; j < width; j++) {
        h = Math.imul(h ^ units[s + j]!, 0x5bd1e995);
        h ^= h >>> 15;
      }
      out[s] = fmix32(h);
    }
    return { hashes: out, count };
  }

  /** MinHash signature of the text (all 0xffffffff for a text without words). */
  signature(text: string, out: Uint32Array = new Uint32Array(this.numPerm)): Uint32Array {
    const { hashes, count } = this.shingleHashes(text);
    return this.signatureOf(hashes, count, out);
  }

  signatureOf(hashes: Uint32Array, count: number, out: Uint32Array = new Uint32Array(this.numPerm)): Uint32Array {
    // Four permutations per pass over the shingles, each running minimum in a
    // register; values are compared as int32 with the sign bit flipped, which
    // orders them as unsigned 32-bit integers while staying in small-integer
    // arithmetic.
    const P = this.numPerm;
    const h = new Int32Array(hashes.buffer, hashes.byteOffset, count);
    const A = this.a;
    const B = this.b;
    let i = 0;
    for (; i + 4 <= P; i += 4) {
      const a0 = A[i]! | 0, a1 = A[i + 1]! | 0, a2 = A[i + 2]! | 0, a3 = A[i + 3]! | 0;
      const b0 = B[i]! | 0, b1 = B[i + 1]! | 0, b2 = B[i + 2]! | 0, b3 = B[i + 3]! | 0;
      let m0 = 0x7fffffff, m1 = 0x7fffffff, m2 = 0x7fffffff, m3 = 0x7fffffff;
      for (let s = 0; s < count; s++) {
        const x = h[s]! | 0;
        let v0 = Math.imul(x ^ b0, a0);
        let v1 = Math.imul(x ^ b1, a1);
        let v2 = Math.imul(x ^ b2, a2);
        let v3 = Math.imul(x ^ b3, a3);
        v0 = (v0 ^ (v0 >>> 15) ^ 0x80000000) | 0;
        v1 = (v1 ^ (v1 >>> 15) ^ 0x80000000) | 0;
        v2 = (v2 ^ (v2 >>> 15) ^ 0x80000000) | 0;
        v3 = (v3 ^ (v3 >>> 15) ^ 0x80000000) | 0;
        if (v0 < m0) m0 = v0;
        if (v1 < m1) m1 = v1;
        if (v2 < m2) m2 = v2;
        if (v3 < m3) m3 = v3;
      }
      out[i] = (m0 ^ 0x80000000) >>> 0;
      out[i + 1] = (m1 ^ 0x80000000) >>> 0;
      out[i + 2] = (m2 ^ 0x80000000) >>> 0;
      out[i + 3] = (m3 ^ 0x80000000) >>> 0;
    }
    for (; i < P; i++) {
      const a = A[i]! | 0;
      const b = B[i]! | 0;
      let m = 0x7fffffff;
      for (let s = 0; s < count; s++) {
        let v = Math.imul(h[s]! ^ b, a);
        v = (v ^ (v >>> 15) ^ 0x80000000) | 0;
        if (v < m) m = v;
      }
      out[i] = (m ^ 0x80000000) >>> 0;
    }
    return out;
  }
}

/** Fraction of equal positions of two signatures: the MinHash estimate of Jaccard similarity. */
export function estimateJaccard(x: Uint32Array, y: Uint32Array): number {
  let eq = 0;
  for (let i = 0; i < x.length; i++) if (x[i] === y[i]) eq++;
  return eq / x.length;
}
