import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chineseDoc, englishDoc, rng } from '../pipeline/corpus.ts';
import { byteLevelPieces, bytesToUnicode, trainByteLevelBpe } from './bpe-train.ts';
import { BYTE_LEVEL_TOKENIZER_PATH, loadTokenizer, readShard, writeShards, type TextTokenizer } from './index.ts';

const texts = [
  'Hello world, the river crossed the bridge!',
  'An added token <|endoftext|> inside the text, and <|pad|><|pad|> twice.',
  "Contractions: it's, we're, they've, I'm, you'll, he'd; CAPS IT'S.",
  '   leading and trailing spaces   \n\n\t ',
  '\u0000\u0007 control, \uFFFD replacement, \u00A0nbsp and \u2028 separators',
  "It's  two  spaces,\ttabs\nand new lines\n\n  indented.",
  '今天的天气非常好，我们在河边散步。',
  'Emoji 🙂👍🏽 and accents: café naïve Ærøskøbing — “quotes”.',
  'Numbers 3.14159, 1,000,000 and 2024-01-15; code: if (x) { return y; }',
  englishDoc(rng(1), 2000),
  chineseDoc(rng(2), 30),
];

type Json = { model: { vocab: Record<string, number>; merges: string[] } };

/** Plain reference BPE: repeatedly merge the lowest-ranked adjacent pair. */
function referenceEncode(json: Json, text: string): number[] {
  const ranks = new Map(json.model.merges.map((m, i) => [m, i]));
  const ids: number[] = [];
  for (const piece of byteLevelPieces(text, bytesToUnicode())) {
    let syms = Array.from(piece);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = ranks.get(`${syms[i]} ${syms[i + 1]}`);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      syms = [...syms.slice(0, best), syms[best]! + syms[best + 1]!, ...syms.slice(best + 2)];
    }
    for (const s of syms) ids.push(json.model.vocab[s]!);
  }
  return ids;
}

let tk: TextTokenizer;
let json: Json;
let dir: string;
beforeAll(async () => {
  tk = await loadTokenizer({ path: BYTE_LEVEL_TOKENIZER_PATH });
  json = JSON.parse(await readFile(BYTE_LEVEL_TOKENIZER_PATH, 'utf8')) as Json;
  dir = await mkdtemp(join(tmpdir(), 'fw-tokenize-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('tokenize', () => {
  it('tokenize - bundled byte-level tokenizer: 256 bytes, merges, <|endoftext|> and <|pad|>', () => {
    expect(json.model.merges.length).toBeGreaterThanOrEqual(200);
    expect(tk.vocabSize).toBe(256 + json.model.merges.length + 2);
    expect(tk.eosId).toBe(256 + json.model.merges.length);
  });

  it('tokenize - added tokens in the text map to their ids', () => {
    const ids = tk.encode('a<|endoftext|>b');
    expect(ids).toContain(tk.eosId);
    expect(ids.length).toBe(3);
  });

  it('tokenize - round-trips any text byte for byte', () => {
    for (const t of texts) expect(tk.decode(tk.encode(t))).toBe(t);
  });

  it('tokenize - ids equal a plain reference BPE and the unaccelerated library', () => {
    const plain = new Tokenizer(json, {});
    for (const t of texts) {
      const ids = tk.encode(t);
      if (!t.includes('<|')) expect(ids).toEqual(referenceEncode(json, t)); // the reference knows no added tokens
      expect(ids).toEqual(plain.encode(t, { add_special_tokens: false }).ids);
    }
  });

  it('tokenize - other BPE layouts (pre-tokenizer sequences, a normaliser) give the library ids', async () => {
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
    const split = { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false };
    const variants = [
      { ...json, pre_tokenizer: { type: 'Sequence', pretokenizers: [split, byteLevel] } }, // Llama 3 / Qwen2 style
      { ...json, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, { ...byteLevel, use_regex: true }] } }, // SmolLM style
      { ...json, normalizer: { type: 'NFC' } },
      { ...json, pre_tokenizer: { ...byteLevel, use_regex: true, add_prefix_space: true } },
    ];
    for (const v of variants) {
      const fast = await loadTokenizer({ json: v });
      const plain = new Tokenizer(v, {});
      for (const t of texts) expect(fast.encode(t), JSON.stringify((v as { pre_tokenizer?: unknown }).pre_tokenizer)).toEqual(plain.encode(t, { add_special_tokens: false }).ids);
    }
  });

  it('tokenize - merges compress text below one token per byte', () => {
    const t = englishDoc(rng(3), 5000);
    expect(tk.encode(t).length).toBeLessThan(Buffer.byteLength(t) / 2);
  });

  it('tokenize - the trainer is deterministic and learns the most frequent pair first', () => {
    const a = trainByteLevelBpe(['thin thin thick', 'the'], 5) as Json;
    const b = trainByteLevelBpe(['thin thin thick', 'the'], 5) as Json;
    expect(a).toEqual(b);
    expect(a.model.merges[0]).toBe('t h');
  });

  it('tokenize - rejects a missing or invalid tokenizer clearly', async () => {
    await expect(loadTokenizer({ path: join(dir, 'nope.json') })).rejects.toThrow(/cannot read tokenizer/);
    await expect(loadTokenizer({ json: { model: { type: 'Nope' } } })).rejects.toThrow(/invalid tokenizer.json/);
    const vocab = Object.fromEntries(Object.entries(json.model.vocab).filter(([k]) => !k.startsWith('<|')));
    const noEos = { ...json, added_tokens: [], model: { ...json.model, vocab } };
    await expect(loadTokenizer({ json: noEos })).rejects.toThrow(/end-of-sequence/);
  });
});

describe('shards', () => {
  it('shards - writes FWSHARD1 files per split with offsets, prompt lengths and EOS', async () => {
    const recs = [
      { split: 'train' as const, record: { id: '1', text: 'Hello world.' } },
      { split: 'train' as const, record: { id: '2', prompt: 'Q: two plus two?', completion: ' A: four.' } },
      { split: 'val' as const, record: { id: '3', text: '你好' } },
    ];
    const out = join(dir, 'a');
    const shards = await writeShards(recs, tk, out);
    expect(shards.map((s) => [s.split, s.n_docs])).toEqual([['train', 2], ['val', 1]]);
    const train = await readShard(shards[0]!.path);
    expect(train.width).toBe(2);
    expect(train.vocabSize).toBe(tk.vocabSize);
    const t1 = tk.encode('Hello world.');
    const p = tk.encode('Q: two plus two?');
    const c = tk.encode(' A: four.');
    expect(Array.from(train.tokens)).toEqual([...t1, tk.eosId, ...p, ...c, tk.eosId]);
    expect(train.docOffsets).toEqual([0, t1.length + 1, t1.length + 1 + p.length + c.length + 1]);
    expect(train.promptLens).toEqual([0, p.length]);
    const val = await readShard(shards[1]!.path);
    expect(val.promptLens).toBeUndefined();
    const bytes = await readFile(shards[0]!.path);
    expect(bytes.toString('ascii', 0, 8)).toBe('FWSHARD1');
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(shards[0]!.sha256);
  });

  it('shards - starts a new shard at maxTokensPerShard without splitting a document', async () => {
    const recs = Array.from({ length: 10 }, (_, i) => ({ split: 'train' as const, record: { id: String(i), text: englishDoc(rng(i), 200) } }));
    const shards = await writeShards(recs, tk, join(dir, 'b'), { maxTokensPerShard: 150 });
    expect(shards.length).toBeGreaterThan(2);
    expect(shards.reduce((s, x) => s + x.n_docs, 0)).toBe(10);
    for (const s of shards) {
      const c = await readShard(s.path);
      expect(c.nTokens).toBe(s.n_tokens);
      expect(c.tokens[c.nTokens - 1]).toBe(tk.eosId);
    }
  });

  it('shards - hands finished shards to a sink and reports where they went', async () => {
    const stored = new Map<string, Buffer>();
    const sink = async (name: string, path: string) => {
      stored.set(name, await readFile(path));
      return `mem://${name}`;
    };
    const recs = Array.from({ length: 6 }, (_, i) => ({ split: 'train' as const, record: { id: String(i), text: englishDoc(rng(i), 200) } }));
    const out = join(dir, 'sink');
    const shards = await writeShards(recs, tk, out, { maxTokensPerShard: 150, sink });
    expect(shards.map((s) => s.path)).toEqual([...stored.keys()].map((k) => `mem://${k}`));
    for (const s of shards) expect(createHash('sha256').update(stored.get(s.path.slice(6))!).digest('hex')).toBe(s.sha256);
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(out)).toEqual([]);
  });

  it('shards - readShard rejects files that are not shards or are truncated', async () => {
    const bad = join(dir, 'bad.bin');
    await writeFile(bad, 'not a shard at all, just some text that is long enough to have a header');
    await expect(readShard(bad)).rejects.toThrow(/not a FWSHARD1/);
    const [s] = await writeShards([{ split: 'test', record: { id: '1', text: 'abc' } }], tk, join(dir, 'c'));
    const bytes = await readFile(s!.path);
    await writeFile(bad, bytes.subarray(0, bytes.length - 1));
    await expect(readShard(bad)).rejects.toThrow(/does not match header/);
  });

  it('shards - a token id outside the vocabulary is an error and leaves no shard', async () => {
    const huge = { vocabSize: 10, eosId: 9, encode: () => [42], decode: () => '' };
    const out = join(dir, 'd');
    await expect(writeShards([{ split: 'train', record: { id: '1', text: 'x' } }], huge, out)).rejects.toThrow(/outside the vocabulary/);
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(out)).toEqual([]);
  });
});
