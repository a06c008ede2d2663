/**
 * A small byte-level BPE trainer that writes a Hugging Face `tokenizer.json`
 * (GPT-2 style: ByteLevel pre-tokenizer and decoder, BPE model over the 256
 * byte symbols). Used to build the bundled tokenizer for models trained from
 * scratch:
 *
 *   node services/data/src/tokenize/bpe-train.ts <corpus.jsonl> <out/tokenizer.json> [merges]
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** GPT-2's reversible map from bytes to printable code points. */
export function bytesToUnicode(): string[] {
  const out: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return out;
}

/** The pre-tokenisation pattern of the ByteLevel pre-tokenizer (use_regex: true). */
export const BYTE_LEVEL_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export const SPECIAL_TOKENS = ['<|endoftext|>', '<|pad|>'] as const;

export function byteLevelPieces(text: string, b2u: string[]): string[] {
  const enc = new TextEncoder();
  return (text.match(BYTE_LEVEL_SPLIT) ?? []).map((w) => Array.from(enc.encode(w), (b) => b2u[b]!).join(''));
}

/** Learns `numMerges` merges (ties broken by the pair's text, so runs are reproducible) and returns tokenizer.json. */
export function trainByteLevelBpe(texts: Iterable<string>, numMerges: number): object {
  const b2u = bytesToUnicode();
  const counts = new Map<string, number>();
  for (const t of texts) for (const p of byteLevelPieces(t, b2u)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const words = [...counts.entries()].map(([w, c]) => ({ syms: Array.from(w), c }));
  const vocab: Record<string, number> = {};
  b2u.forEach((u, i) => (vocab[u] = i));
  const merges: string[] = [];
  for (let m = 0; m < numMerges; m++) {
    const pairs = new Map<string, number>();
    for (const { syms, c } of words) for (let i = 0; i + 1 < syms.length; i++) {
      const k = `${syms[i]} ${syms[i + 1]}`;
      pairs.set(k, (pairs.get(k) ?? 0) + c);
    }
    let best = '';
    let bestC = 1; // a pair seen once is not worth a token
    for (const [k, c] of pairs) if (c > bestC || (c === bestC && best !== '' && k < best)) [best, bestC] = [k, c];
    if (best === '') break;
    const [a, b] = best.split(' ') as [string, string];
    const ab = a + b;
    merges.push(best);
    vocab[ab] = 256 + m;
    for (const w of words) {
      const s = w.syms;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(ab);
          i++;
        } else out.push(s[i]!);
      }
      w.syms = out;
    }
  }
  const next = 256 + merges.length;
  const added = SPECIAL_TOKENS.map((content, i) => ({ id: next + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  for (const a of added) vocab[a.content] = a.id;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

if (import.meta.main) {
  const [corpus, out, n] = process.argv.slice(2);
  if (!corpus || !out) {
    console.error('usage: node bpe-train.ts <corpus.jsonl> <tokenizer.json> [merges=400]');
    process.exit(2);
  }
  const texts: string[] = [];
  for (const line of readFileSync(corpus, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as { text?: string; prompt?: string; completion?: string };
    for (const t of [r.text, r.prompt, r.completion]) if (typeof t === 'string') texts.push(t);
  }
  const tk = trainByteLevelBpe(texts, Number(n ?? 400));
  writeFileSync(out, `${JSON.stringify(tk, null, 1)}\n`);
  console.log(`wrote ${out}: ${(tk as { model: { merges: string[] } }).model.merges.length} merges from ${texts.length} texts`);
}
