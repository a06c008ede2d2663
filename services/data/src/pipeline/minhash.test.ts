import { describe, expect, it } from 'vitest';
import { chineseDoc, englishDoc, exactJaccard, perturb, rng } from './corpus.ts';
import { bandKeys, MemoryBandIndex, optimalLshParams } from './lsh.ts';
import { estimateJaccard, MinHasher } from './minhash.ts';

const mh = new MinHasher({ numPerm: 128, seed: 1, wordNgram: 5, charNgram: 5, cjkMinFraction: 0.3 });

describe('minhash', () => {
  it('minhash - estimates the exact Jaccard of word 5-gram sets', () => {
    const r = rng(11);
    let maxErr = 0;
    for (let i = 0; i < 40; i++) {
      const a = englishDoc(r, 1200);
      const b = perturb(r, a, 1 + Math.floor(r() * 12));
      const est = estimateJaccard(mh.signature(a), mh.signature(b));
      maxErr = Math.max(maxErr, Math.abs(est - exactJaccard(a, b)));
    }
    // 128 permutations: standard error <= 0.045, so 40 pairs stay well within 0.15.
    expect(maxErr).toBeLessThan(0.15);
  });

  it('minhash - unrelated documents score near zero; identical ones score one', () => {
    const r = rng(12);
    const a = englishDoc(r, 1000);
    expect(estimateJaccard(mh.signature(a), mh.signature(englishDoc(r, 1000)))).toBeLessThan(0.1);
    expect(estimateJaccard(mh.signature(a), mh.signature(a.toUpperCase()))).toBe(1);
  });

  it('minhash - uses character shingles for Chinese text', () => {
    const r = rng(13);
    const a = chineseDoc(r, 20);
    const b = `${a.slice(0, 10)}很${a.slice(10)}`; // one inserted character
    expect(estimateJaccard(mh.signature(a), mh.signature(b))).toBeGreaterThan(0.85);
    expect(mh.shingleHashes(a).count).toBeGreaterThan(100); // characters, not the few space-separated "words"
    expect(estimateJaccard(mh.signature(a), mh.signature(chineseDoc(r, 20)))).toBeLessThan(0.5);
  });

  it('minhash - the unrolled signature loop equals the plain definition', () => {
    const odd = new MinHasher({ numPerm: 37, seed: 5, wordNgram: 3, charNgram: 5, cjkMinFraction: 0.3 });
    const t = englishDoc(rng(17), 700);
    const { hashes, count } = odd.shingleHashes(t);
    const perm = odd as unknown as { a: Uint32Array; b: Uint32Array };
    const want = Array.from({ length: 37 }, (_, i) => {
      let m = 0xffffffff;
      for (let s = 0; s < count; s++) {
        let v = Math.imul(hashes[s]! ^ perm.b[i]!, perm.a[i]!);
        v = (v ^ (v >>> 15)) >>> 0;
        m = Math.min(m, v);
      }
      return m;
    });
    expect(Array.from(odd.signature(t))).toEqual(want);
  });

  it('minhash - a signature does not depend on the hasher instance or earlier calls', () => {
    const other = new MinHasher({ numPerm: 128, seed: 1, wordNgram: 5, charNgram: 5, cjkMinFraction: 0.3 });
    const t = englishDoc(rng(14), 800);
    other.signature(englishDoc(rng(15), 3000));
    expect(Array.from(other.signature(t))).toEqual(Array.from(mh.signature(t)));
    const seeded = new MinHasher({ numPerm: 128, seed: 2, wordNgram: 5, charNgram: 5, cjkMinFraction: 0.3 });
    expect(Array.from(seeded.signature(t))).not.toEqual(Array.from(mh.signature(t)));
  });
});

describe('lsh', () => {
  it('lsh - picks bands x rows whose S-curve rises at the threshold', () => {
    const p = optimalLshParams(0.85, 128);
    expect(p.bands * p.rows).toBeLessThanOrEqual(128);
    const collide = (s: number) => 1 - Math.pow(1 - Math.pow(s, p.rows), p.bands);
    expect(collide(0.5)).toBeLessThan(0.01);
    expect(collide(0.95)).toBeGreaterThan(0.95);
    expect(optimalLshParams(0.5, 128).rows).toBeLessThan(p.rows);
  });

  it('lsh - band keys are 53-bit, differ per band and match for equal signatures', () => {
    const sig = mh.signature(englishDoc(rng(16), 800));
    const k = bandKeys(sig, 8, 16);
    for (const v of k) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
    expect(new Set(k).size).toBe(8);
    expect(Array.from(bandKeys(Uint32Array.from(sig), 8, 16))).toEqual(Array.from(k));
  });

  it('lsh - memory index returns earlier records sharing a band and dumps its keys', () => {
    const idx = new MemoryBandIndex();
    idx.insert([1, 2, 3], 0);
    idx.insert([3, 4], 1);
    expect(idx.candidates([9, 3, 4])).toEqual([0, 1]);
    expect(idx.candidates([7])).toEqual([]);
    expect([...idx.bands()].sort()).toEqual([1n, 2n, 3n, 4n]);
  });
});
