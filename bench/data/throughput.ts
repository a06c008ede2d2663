// Throughput of the data pipeline on this machine.
//   1. MinHash signatures (128 permutations) of 1 KB documents on one core:
//      the pipeline's MinHasher against a plain reference implementation
//      (string shingles in a Set, an FNV string hash, and per-permutation
//      universal hashing (a*x + b) mod (2^31 - 1), as datasketch does with 2^61 - 1).
//   2. Per-record stages alone, in MB/s of text.
//   3. The whole pipeline (all stages, default config, byte-level tokenizer,
//      shards written) in MB/s: in-process, and on worker threads across all cores.
//
//   node bench/data/throughput.ts [megabytes=24]
//
// Prints a table and writes bench/out/data-throughput.json.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPipeline, loadTokenizer, resolveConfig, BYTE_LEVEL_TOKENIZER_PATH, type InputRecord } from '../../services/data/src/pipeline/index.ts';
import { chineseDoc, englishDoc, englishSentence, perturb, rng } from '../../services/data/src/pipeline/corpus.ts';
import { MinHasher } from '../../services/data/src/pipeline/minhash.ts';
import { normaliseRecord } from '../../services/data/src/pipeline/normalise.ts';
import { checkQuality } from '../../services/data/src/pipeline/quality.ts';
import { redactPii } from '../../services/data/src/pipeline/pii.ts';

const MB = Number(process.argv[2] ?? 24);
const r = rng(7);

/** CPU milliseconds (user + system) of this process since `from`. */
const cpuMs = (from: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
};

/**
 * Best of `reps` runs, in CPU milliseconds of this process: the machine is
 * shared with other work, and CPU time measures one core's work even while
 * other processes take turns on it (wall-clock time would not).
 */
function best(reps: number, f: () => void): number {
  let b = Infinity;
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    f();
    b = Math.min(b, cpuMs(c0));
  }
  return b;
}

// 1. MinHash signatures of 1 KB documents.
const docs1k = Array.from({ length: 5000 }, () => englishDoc(r, 1100).slice(0, 1024));
const mh = new MinHasher({ numPerm: 128, seed: 1, wordNgram: 5, charNgram: 5, cjkMinFraction: 0.3 });
const sig = new Uint32Array(128);
const msOurs = best(5, () => {
  for (const d of docs1k) mh.signature(d, sig);
});

const MERSENNE = 2147483647; // 2^31 - 1
const refA = Array.from({ length: 128 }, (_, i) => 1 + ((i * 2654435761) % (MERSENNE - 1)));
const refB = Array.from({ length: 128 }, (_, i) => (i * 40503 + 12345) % MERSENNE);
/** (a * x) mod p without overflow: split a into 16-bit halves (all values stay below 2^53). */
const mulmod = (a: number, x: number) => (((((a >>> 16) * x) % MERSENNE) * 65536) % MERSENNE + (a & 0xffff) * x) % MERSENNE;
function referenceSignature(text: string): number[] {
  const words = text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0);
  const shingles = new Set<string>();
  for (let i = 0; i + 5 <= words.length; i++) shingles.add(words.slice(i, i + 5).join(' '));
  const out = new Array<number>(128).fill(MERSENNE);
  for (const s of shingles) {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    const x = (h >>> 0) % MERSENNE;
    for (let p = 0; p < 128; p++) {
      const v = (mulmod(refA[p]!, x) + refB[p]!) % MERSENNE;
      if (v < out[p]!) out[p] = v;
    }
  }
  return out;
}
/** Plain but with the pipeline's 32-bit permutations: isolates what typed arrays and no per-shingle strings buy. */
function reference32Signature(text: string): Uint32Array {
  const words = text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0);
  const shingles = new Set<string>();
  for (let i = 0; i + 5 <= words.length; i++) shingles.add(words.slice(i, i + 5).join(' '));
  const out = new Uint32Array(128).fill(0xffffffff);
  for (const s of shingles) {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    for (let p = 0; p < 128; p++) {
      let v = Math.imul(h ^ refB[p]!, refA[p]! | 1);
      v = (v ^ (v >>> 15)) >>> 0;
      if (v < out[p]!) out[p] = v;
    }
  }
  return out;
}
const refDocs = docs1k.slice(0, 1000);
const msRef32 = best(3, () => {
  for (const d of refDocs) reference32Signature(d);
});
const sigRef32 = (refDocs.length / msRef32) * 1000;
const msRef = best(3, () => {
  for (const d of refDocs) referenceSignature(d);
});
const sigOurs = (docs1k.length / msOurs) * 1000;
const sigRef = (refDocs.length / msRef) * 1000;

// Corpus for the stages and the whole pipeline: mostly English, some Chinese, pairs, duplicates, PII, junk.
const records: InputRecord[] = [];
let bytes = 0;
while (bytes < MB * 1e6) {
  const k = r();
  let rec: Omit<InputRecord, 'id'>;
  if (k < 0.75) rec = { text: englishDoc(r, 400 + Math.floor(r() * 2000)), fields: { lang: 'en' } };
  else if (k < 0.85) rec = { text: chineseDoc(r, 10 + Math.floor(r() * 30)), fields: { lang: 'zh' } };
  else if (k < 0.9) rec = { prompt: `Summarise:\n${englishDoc(r, 500)}`, completion: englishSentence(r), fields: { lang: 'en' } };
  else if (k < 0.95 && records.length > 0) {
    const prev = records[Math.floor(r() * records.length)]!;
    rec = typeof prev.text === 'string' ? { text: r() < 0.5 ? prev.text : perturb(r, prev.text, 1), fields: prev.fields } : { ...prev };
  } else if (k < 0.98) rec = { text: `${englishDoc(r, 600)} Mail me at someone@example.com or call +1 415 555 0100.`, fields: { lang: 'en' } };
  else rec = { text: Array.from({ length: 10 }, () => 'Subscribe to our newsletter today!').join('\n'), fields: {} };
  const n = Buffer.byteLength(rec.text as string ?? '') + Buffer.byteLength((rec.prompt as string) ?? '') + Buffer.byteLength((rec.completion as string) ?? '');
  bytes += n;
  records.push({ id: String(records.length + 1), ...rec });
}
const mbIn = bytes / 1e6;
const texts = records.map((x) => (x.text as string) ?? `${x.prompt}\n\n${x.completion}`);

// 2. Stages alone (one core).
const cfg = resolveConfig({});
const tk = await loadTokenizer({ path: BYTE_LEVEL_TOKENIZER_PATH });
const stage = (f: (t: string, i: number) => unknown) => mbIn / (best(2, () => texts.forEach(f)) / 1000);
const stages = {
  normalise: stage((_, i) => normaliseRecord(records[i]!, cfg.normalise)),
  quality: stage((t) => checkQuality(t, cfg.quality)),
  pii: stage((t) => redactPii(t, cfg.pii.kinds)),
  tokenise: stage((t) => tk.encode(t)),
  minhash: stage((t) => mh.signature(t, sig)),
};

// 3. The whole pipeline.
// One pipeline per configuration, kept across runs as a service would keep it:
// the first run pays for worker start-up and warm-up, later runs do not.
const cores = availableParallelism();
const pipelines = new Map([1, cores].map((w) => [w, createPipeline({ workers: w, batch_size: 256 }, { tokenizer: { path: BYTE_LEVEL_TOKENIZER_PATH }, workDir: '' })]));
/** One run: wall-clock and CPU milliseconds (the CPU time includes worker threads). */
async function whole(workers: number): Promise<{ ms: number; cpu: number; out: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'fw-bench-pipeline-'));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const res = await pipelines.get(workers)!.run(records, { workDir: dir });
  const out = { ms: performance.now() - t0, cpu: cpuMs(c0), out: res.report.records_out };
  await rm(dir, { recursive: true, force: true });
  return out;
}
// Alternate the two configurations and keep the best run of each, so a burst
// of load from other processes on the shared machine hits both alike.
let one = { ms: Infinity, cpu: Infinity, out: 0 };
let many = { ms: Infinity, cpu: Infinity, out: 0 };
let manyCold = { ms: 0, cpu: 0, out: 0 };
const bestOf = (a: typeof one, b: typeof one) => ({ ms: Math.min(a.ms, b.ms), cpu: Math.min(a.cpu, b.cpu), out: b.out });
for (let rep = 0; rep < 3; rep++) {
  one = bestOf(one, await whole(1));
  const m = await whole(cores);
  if (rep === 0) manyCold = m;
  many = bestOf(many, m);
}
for (const p of pipelines.values()) await p.close();
const mbs1 = mbIn / (one.ms / 1000);
const mbsN = mbIn / (many.ms / 1000);
const mbs1Cpu = mbIn / (one.cpu / 1000);

const result = {
  bench: 'data-throughput',
  date: new Date().toISOString(),
  machine: { cores, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, loadavg_at_end: loadavg() },
  timing: 'single-core figures in CPU time of this process (best of runs); whole-pipeline figures in wall-clock time and CPU time',
  minhash_1kb_docs_per_cpu_s: {
    pipeline: Math.round(sigOurs),
    reference_plain_mod_prime: Math.round(sigRef),
    reference_plain_32bit: Math.round(sigRef32),
    speedup_vs_mod_prime: Number((sigOurs / sigRef).toFixed(1)),
    speedup_vs_32bit: Number((sigOurs / sigRef32).toFixed(1)),
    target: 10000,
  },
  stages_mb_per_s: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, Number(v.toFixed(2))])),
  pipeline: {
    input_mb: Number(mbIn.toFixed(2)),
    records: records.length,
    records_out: one.out,
    one_thread_mb_per_s: Number(mbs1.toFixed(2)),
    one_thread_mb_per_cpu_s: Number(mbs1Cpu.toFixed(2)),
    workers: cores,
    all_cores_mb_per_s: Number(mbsN.toFixed(2)),
    speedup: Number((mbsN / mbs1).toFixed(2)),
    cpu_s_in_process: Number((one.cpu / 1000).toFixed(2)),
    cpu_s_all_threads: Number((many.cpu / 1000).toFixed(2)),
    first_run_with_worker_start_mb_per_s: Number((mbIn / (manyCold.ms / 1000)).toFixed(2)),
    target_mb_per_s: 5,
  },
};
console.log(`data pipeline throughput, ${cores} cores (${result.machine.cpu}), ${records.length} records, ${mbIn.toFixed(1)} MB, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log('| measure | flywheel | reference | ratio |');
console.log('| --- | --- | --- | --- |');
console.log(`| MinHash 128 perms, 1 KB docs, docs per CPU-second | ${Math.round(sigOurs)} | ${Math.round(sigRef)} (plain: string shingles, (a*x+b) mod 2^31-1) | ${(sigOurs / sigRef).toFixed(1)}x |`);
console.log(`| MinHash 128 perms, 1 KB docs, docs per CPU-second | ${Math.round(sigOurs)} | ${Math.round(sigRef32)} (plain: string shingles, same 32-bit permutations) | ${(sigOurs / sigRef32).toFixed(1)}x |`);
for (const [k, v] of Object.entries(stages)) console.log(`| stage ${k}, MB per CPU-second | ${v.toFixed(1)} | | |`);
console.log(`| whole pipeline, MB per CPU-second, in-process | ${mbs1Cpu.toFixed(2)} | target 5 | |`);
console.log(`| whole pipeline, MB/s wall-clock, in-process | ${mbs1.toFixed(2)} | | |`);
console.log(`| whole pipeline, MB/s wall-clock, ${cores} worker threads | ${mbsN.toFixed(2)} | in-process ${mbs1.toFixed(2)} | ${(mbsN / mbs1).toFixed(2)}x |`);
console.log(`| whole pipeline, MB/s wall-clock, ${cores} worker threads, first run (thread start-up) | ${(mbIn / (manyCold.ms / 1000)).toFixed(2)} | | |`);
console.log(`| CPU seconds, ${cores} worker threads vs in-process | ${(many.cpu / 1000).toFixed(2)} | ${(one.cpu / 1000).toFixed(2)} | ${(many.cpu / one.cpu).toFixed(2)}x |`);
await mkdir(new URL('../out/', import.meta.url), { recursive: true });
await writeFile(new URL('../out/data-throughput.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
