// Near-duplicate detection quality: the pipeline's MinHash-LSH stage against
// the exact Jaccard (the reference) on a generated corpus with planted
// near-duplicate pairs (exact Jaccard >= 0.9) and hard distinct pairs
// (documents sharing part of their text, exact Jaccard <= 0.5).
//
//   node bench/data/neardup.ts [base_docs=2000]
//
// Prints a table and writes bench/out/data-neardup.json.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPipeline, BYTE_LEVEL_TOKENIZER_PATH, type InputRecord } from '../../services/data/src/pipeline/index.ts';
import { englishDoc, exactJaccard, perturb, rng } from '../../services/data/src/pipeline/corpus.ts';
import { estimateJaccard, MinHasher } from '../../services/data/src/pipeline/minhash.ts';

const nBase = Number(process.argv[2] ?? 2000);
const r = rng(2026);
const THRESHOLD = 0.85;

// Base documents: independent prose, pairwise Jaccard ~0.
const base = Array.from({ length: nBase }, () => englishDoc(r, 600 + Math.floor(r() * 1400)));
type Pair = { a: number; b: string; kind: 'near' | 'distinct'; jaccard: number };
const pairs: Pair[] = [];
// Planted near-duplicates of the first half: word substitutions until exact Jaccard is in [0.9, 1).
for (let i = 0; i < nBase / 2; i++) {
  let edits = 1 + Math.floor(r() * 3);
  for (;;) {
    const b = perturb(r, base[i]!, edits);
    const j = exactJaccard(base[i]!, b);
    if (j >= 0.9 && j < 1) {
      pairs.push({ a: i, b, kind: 'near', jaccard: j });
      break;
    }
    edits = Math.max(1, edits - 1);
  }
}
// Hard distinct pairs from the second half: keep a prefix, write the rest anew (exact Jaccard <= 0.5).
for (let i = nBase / 2; i < nBase; i++) {
  const words = base[i]!.split(' ');
  const keep = Math.floor(words.length * (0.2 + 0.25 * r()));
  const b = `${words.slice(0, keep).join(' ')} ${englishDoc(r, base[i]!.length - words.slice(0, keep).join(' ').length)}`;
  const j = exactJaccard(base[i]!, b);
  if (j <= 0.5) pairs.push({ a: i, b, kind: 'distinct', jaccard: j });
}

// Input: all base documents, then the second member of each pair (so the pair's second is what near-dedup removes).
const records: InputRecord[] = [
  ...base.map((text, i) => ({ id: `base-${i}`, text, fields: {} })),
  ...pairs.map((p, k) => ({ id: `pair-${k}`, text: p.b, fields: {} })),
];

const planted = new Set(pairs.map((p, k) => (p.kind === 'near' ? `pair-${k}` : '')).filter(Boolean));

/** Runs the pipeline with only near-dedup on; returns precision/recall of the removed records against the planted ones. */
async function detect(verify: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'fw-bench-neardup-'));
  const pipeline = createPipeline(
    {
      quality: { enabled: false },
      pii: { enabled: false },
      length: { enabled: false },
      tokenise: { enabled: false },
      dedup: { exact: false, near: true, threshold: THRESHOLD, verify },
    },
    { tokenizer: { path: BYTE_LEVEL_TOKENIZER_PATH }, workDir: dir },
  );
  const t0 = performance.now();
  const res = await pipeline.run(records);
  const ms = performance.now() - t0;
  const kept = new Set<string>();
  for (const s of Object.values(res.splits)) for await (const rec of s.records()) kept.add(rec.id);
  await rm(dir, { recursive: true, force: true });
  const removed = records.filter((x) => !kept.has(x.id)).map((x) => x.id);
  const tp = removed.filter((id) => planted.has(id)).length;
  return { lsh: res.report.lsh, precision: removed.length === 0 ? 1 : tp / removed.length, recall: tp / planted.size, removed: removed.length, true_positives: tp, ms: Math.round(ms) };
}
const verified = await detect(true);
const unverified = await detect(false);
const { precision, recall } = verified;

// Reference: the exact Jaccard on the same pairs, and the MinHash estimate's error against it.
const mh = new MinHasher({ numPerm: 128, seed: 1, wordNgram: 5, charNgram: 5, cjkMinFraction: 0.3 });
let tpE = 0;
let fpE = 0;
let absErr = 0;
let maxErr = 0;
const t1 = performance.now();
for (const p of pairs) {
  const dup = p.jaccard >= THRESHOLD;
  if (dup && p.kind === 'near') tpE++;
  if (dup && p.kind === 'distinct') fpE++;
  const e = Math.abs(estimateJaccard(mh.signature(base[p.a]!), mh.signature(p.b)) - p.jaccard);
  absErr += e;
  maxErr = Math.max(maxErr, e);
}
const msExact = performance.now() - t1;
const nNear = planted.size;
const nDistinct = pairs.length - nNear;
const result = {
  bench: 'data-neardup',
  date: new Date().toISOString(),
  corpus: { base_docs: nBase, near_pairs: nNear, distinct_pairs: nDistinct, records: records.length },
  lsh: verified.lsh,
  minhash_lsh: verified,
  minhash_lsh_unverified: unverified,
  exact_jaccard_reference: { precision: tpE + fpE === 0 ? 1 : tpE / (tpE + fpE), recall: tpE / nNear },
  estimate_error: { mean_abs: absErr / pairs.length, max_abs: maxErr },
  pass: precision >= 0.95 && recall >= 0.95,
};
console.log(`near-duplicate detection, threshold ${THRESHOLD}, ${nNear} planted pairs (J>=0.9), ${nDistinct} distinct pairs (J<=0.5), ${records.length} records`);
console.log('| method | precision | recall | notes |');
console.log('| --- | --- | --- | --- |');
const row = (name: string, x: typeof verified) =>
  console.log(`| ${name} (${x.lsh.bands} bands x ${x.lsh.rows} rows, 128 perms) | ${x.precision.toFixed(4)} | ${x.recall.toFixed(4)} | ${x.removed} removed, ${x.ms} ms for the run |`);
row('MinHash-LSH, candidates verified (pipeline default)', verified);
row('MinHash-LSH, band hit only', unverified);
console.log(`| exact Jaccard (reference, labelled pairs) | ${result.exact_jaccard_reference.precision.toFixed(4)} | ${result.exact_jaccard_reference.recall.toFixed(4)} | estimate error mean ${result.estimate_error.mean_abs.toFixed(4)}, max ${maxErr.toFixed(4)} (${Math.round(msExact)} ms) |`);
console.log(result.pass ? 'PASS (precision and recall >= 0.95)' : 'FAIL');
await mkdir(new URL('../out/', import.meta.url), { recursive: true });
await writeFile(new URL('../out/data-neardup.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
