import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chineseDoc, englishDoc, perturb, rng } from './corpus.ts';
import { createPipeline, isPipelineConfigError, isPipelineInputError, type InputRecord, type PipelineResult, type PriorBandIndex } from './index.ts';
import { BYTE_LEVEL_TOKENIZER_PATH, readShard } from '../tokenize/index.ts';

const tokenizer = { path: BYTE_LEVEL_TOKENIZER_PATH };
let dir: string;
let n = 0;
const workDir = () => join(dir, `run-${n++}`);

/** 240 records: English and Chinese prose, pairs, planted duplicates, near-duplicates, junk and PII. */
function corpus(): InputRecord[] {
  const r = rng(42);
  const out: Omit<InputRecord, 'id'>[] = [];
  for (let i = 0; i < 150; i++) out.push({ text: englishDoc(r, 600 + Math.floor(r() * 600)), fields: { lang: 'en' } });
  for (let i = 0; i < 30; i++) out.push({ text: chineseDoc(r, 15), fields: { lang: 'zh' } });
  for (let i = 0; i < 20; i++) out.push({ prompt: `Summarise:\n${englishDoc(r, 300)}`, completion: 'The note describes a journey.', fields: { lang: 'en' } });
  for (let i = 0; i < 10; i++) out.push({ ...out[i]! }); // exact duplicates
  for (let i = 0; i < 10; i++) out.push({ text: perturb(r, out[20 + i]!.text as string, 1), fields: { lang: 'en' } }); // near-duplicates
  for (let i = 0; i < 10; i++) out.push({ text: `Lorem ipsum dolor sit amet, mail lorem${i}@example.com. ${englishDoc(r, 300)}`, fields: {} });
  for (let i = 0; i < 5; i++) out.push({ text: 'The answer was simply too short to be kept here.', fields: { lang: 'en' } });
  for (let i = 0; i < 5; i++) out.push({ text: `${englishDoc(r, 400)} Write to someone${i}@example.com or call +44 20 7946 09${10 + i}.`, fields: { lang: 'en' } });
  return out.map((o, i) => ({ id: String(i + 1), ...o }));
}

async function readAll(res: PipelineResult): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [s, o] of Object.entries(res.splits)) {
    out[s] = [];
    for await (const rec of o.records()) out[s].push(JSON.stringify(rec));
  }
  return out;
}

let base: PipelineResult;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fw-pipeline-'));
  base = await createPipeline({ length: { min_tokens: 40 } }, { tokenizer, workDir: workDir() }).run(corpus());
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pipeline', () => {
  it('pipeline - removes duplicates, junk and short records, redacts PII, and reports each stage', () => {
    const { report } = base;
    const st = Object.fromEntries(report.stages.map((s) => [s.stage, s]));
    expect(report.records_in).toBe(240);
    expect(st.exact_dedup!.removed_by_reason).toEqual({ exact_duplicate: 10 });
    expect(st.exact_dedup!.examples[0]!.reason).toMatch(/^exact_duplicate of \d+$/);
    expect(st.near_dedup!.removed_by_reason.near_duplicate).toBe(10);
    expect(st.quality!.removed_by_reason.c4_lorem_ipsum).toBe(10);
    expect(st.quality!.examples[0]!.before).toMatch(/^Lorem ipsum dolor sit amet, mail <EMAIL>\./); // removed before the pii stage, still redacted in the report
    expect(st.length!.removed_by_reason).toEqual({ too_short: 5 });
    expect(st.pii!.changed).toEqual({ email: 5, phone: 5 });
    expect(st.pii!.examples[0]!.after).toContain('<EMAIL>');
    expect(report.records_out).toBe(240 - 10 - 10 - 10 - 5);
    // Stages chain: each one's input is the previous one's output.
    for (let i = 1; i < report.stages.length; i++) expect(report.stages[i]!.records_in).toBe(report.stages[i - 1]!.records_out);
    expect(st.near_dedup!.params).toMatchObject({ threshold: 0.85, bands: report.lsh.bands, rows: report.lsh.rows });
    expect(st.near_dedup!.examples[0]!.reason).toMatch(/near_duplicate of \d+ \(est. Jaccard 0\.\d\d\)/);
  });

  it('pipeline - writes split JSONL and token shards that agree with the report', async () => {
    const all = await readAll(base);
    const total = all.train!.length + all.val!.length + all.test!.length;
    expect(total).toBe(base.report.records_out);
    expect(all.train!.length).toBe(base.report.splits.train.n_records);
    expect(all.train!.join('\n')).not.toMatch(/@example\.com/);
    for (const s of base.shards) {
      const c = await readShard(s.path);
      expect(c.docOffsets.length - 1).toBe(s.n_docs);
      expect(s.n_docs).toBe(base.report.splits[s.split].n_records);
      expect(s.n_tokens).toBe(base.report.splits[s.split].n_tokens);
    }
    expect((await readdir(join(dir, 'run-0'))).sort()).toEqual(['shards', 'test.jsonl', 'train.jsonl', 'val.jsonl']);
  });

  it('pipeline - worker threads give results identical to the in-process run, also when the pool is reused', async () => {
    const pipeline = createPipeline({ length: { min_tokens: 40 }, workers: 2, batch_size: 16 }, { tokenizer, workDir: workDir() });
    const res = await pipeline.run(corpus());
    const again = await pipeline.run(corpus(), { workDir: workDir() }); // same pool, warm
    await pipeline.close();
    expect(again.shards.map((s) => s.sha256)).toEqual(res.shards.map((s) => s.sha256));
    expect(res.report.workers).toBe(2);
    expect(await readAll(res)).toEqual(await readAll(base));
    expect(res.shards.map((s) => s.sha256)).toEqual(base.shards.map((s) => s.sha256));
    expect(res.report.stages).toEqual(base.report.stages.map((s) => (s.stage === 'tokenise' ? { ...s, params: { ...s.params, workers: 2 } } : s)));
    expect([...res.index.bands()].sort()).toEqual([...base.index.bands()].sort());
  });

  it('pipeline - does not depend on input order for the split', async () => {
    const res = await createPipeline({ length: { min_tokens: 40 }, dedup: { near: false, exact: false } }, { tokenizer, workDir: workDir() }).run(
      corpus().reverse(),
    );
    const fwd = await createPipeline({ length: { min_tokens: 40 }, dedup: { near: false, exact: false } }, { tokenizer, workDir: workDir() }).run(corpus());
    const ids = async (r: PipelineResult) => Object.fromEntries(await Promise.all(Object.entries(r.splits).map(async ([s, o]) => {
      const xs: string[] = [];
      for await (const rec of o.records()) xs.push(rec.id);
      return [s, xs.sort()];
    })));
    expect(await ids(res)).toEqual(await ids(fwd));
  });

  it('pipeline - consults the band index of earlier versions', async () => {
    const stored = new Set(base.index.bands());
    const calls: number[] = [];
    const prior: PriorBandIndex = {
      lookup: async (keys) => {
        calls.push(keys.length);
        return new Set(keys.filter((k) => stored.has(k)));
      },
    };
    const res = await createPipeline({ length: { min_tokens: 40 } }, { tokenizer, workDir: workDir(), priorIndex: prior }).run(corpus().slice(0, 50));
    const nd = res.report.stages.find((s) => s.stage === 'near_dedup')!;
    expect(calls.length).toBeGreaterThan(0);
    expect(res.report.records_out).toBe(0);
    expect(nd.removed_by_reason.near_duplicate_prior).toBe(nd.records_in);
    expect(nd.examples[0]!.reason).toMatch(/earlier dataset version \(12 of 12 bands\)/);
    const off = await createPipeline({ length: { min_tokens: 40 }, dedup: { prior: false } }, { tokenizer, workDir: workDir(), priorIndex: prior }).run(
      corpus().slice(0, 50),
    );
    expect(off.report.records_out).toBeGreaterThan(0);
  });

  it('pipeline - perplexity hook filters above the threshold; missing hook is a config error', async () => {
    const res = await createPipeline(
      { length: { min_tokens: 40 }, perplexity: { enabled: true, max_perplexity: 100 } },
      { tokenizer, workDir: workDir(), perplexity: async (t) => (/[\u4e00-\u9fff]/.test(t) ? 500 : 20) },
    ).run(corpus());
    const st = res.report.stages.find((s) => s.stage === 'perplexity')!;
    expect(st.removed_by_reason).toEqual({ above_max_perplexity: 30 });
    expect(st.examples[0]!.reason).toBe('perplexity 500.0 > 100');
    expect(() => createPipeline({ perplexity: { enabled: true } }, { tokenizer, workDir: workDir() })).toThrow(/perplexity hook/);
    try {
      createPipeline({ split: { train: 2 } }, { tokenizer, workDir: workDir() });
    } catch (e) {
      expect(isPipelineConfigError(e)).toBe(true);
    }
  });

  it('pipeline - rejects bad input clearly and leaves no temporary files after a failure', async () => {
    const wd = workDir();
    const p = createPipeline({ length: { min_tokens: 40 } }, { tokenizer, workDir: wd });
    await expect(p.run(42 as never)).rejects.toSatisfy(isPipelineInputError);
    const boom = createPipeline(
      { length: { min_tokens: 40 }, perplexity: { enabled: true } },
      { tokenizer, workDir: wd, perplexity: async () => Promise.reject(new Error('engine down')) },
    );
    await expect(boom.run(corpus())).rejects.toThrow(/engine down/);
    expect(await readdir(wd)).toEqual([]);
    // A malformed record is reported and dropped, not fatal.
    const res = await p.run([{ id: 'x', fields: {} }, { id: 'y', text: Buffer.from([0xff, 0xfe]), fields: {} }]);
    expect(res.report.stages[0]!.removed_by_reason).toEqual({ no_text: 1 });
    expect(res.report.records_out).toBe(0);
    expect(await readFile(join(wd, 'train.jsonl'), 'utf8')).toBe('');
    // A second run into the same folder would overwrite that output: refused, and the output stays.
    await expect(p.run(corpus())).rejects.toThrow(/already holds train.jsonl/);
    expect(await readFile(join(wd, 'train.jsonl'), 'utf8')).toBe('');
  });

  it('pipeline - a batch that cannot reach a worker fails the run with a clear error', async () => {
    const recs = corpus().slice(0, 40);
    recs[35] = { ...recs[35]!, fields: { bad: () => 1 } };
    const p = createPipeline({ length: { min_tokens: 40 }, workers: 2, batch_size: 8 }, { tokenizer, workDir: workDir() });
    await expect(p.run(recs)).rejects.toThrow(/cannot send batch 4/);
    await p.close();
  });

  it('pipeline - stratifies the split by a field', async () => {
    const res = await createPipeline({ length: { min_tokens: 40 }, split: { stratify_by: 'lang' } }, { tokenizer, workDir: workDir() }).run(corpus());
    const zh: number[] = [];
    for (const s of ['train', 'val', 'test'] as const) {
      let k = 0;
      for await (const r of res.splits[s].records()) if (r.fields?.lang === 'zh') k++;
      zh.push(k);
    }
    expect(zh).toEqual([24, 3, 3]);
  });
});
