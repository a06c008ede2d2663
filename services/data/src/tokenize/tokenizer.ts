/**
 * Loading a Hugging Face `tokenizer.json` through @huggingface/tokenizers
 * (pure JS; handles ByteLevel BPE) behind a small interface, so the rest of
 * the pipeline, and worker threads, only see `encode` and the EOS id.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hf from '@huggingface/tokenizers';
import { Tokenizer } from '@huggingface/tokenizers';

// The package's type declarations re-export its components with extensionless
// paths that `nodenext` resolution does not follow; the runtime exports exist.
type Ctor = abstract new (...args: never[]) => unknown;
const { ByteLevelPreTokenizer, SequencePreTokenizer } = hf as unknown as Record<'ByteLevelPreTokenizer' | 'SequencePreTokenizer', Ctor>;

/** Where a tokenizer comes from: a tokenizer.json path (a sibling tokenizer_config.json is read too) or its parsed JSON. */
export type TokenizerSource = { path: string } | { json: object; config?: object };

export interface TextTokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The bundled byte-level BPE tokenizer for models trained from scratch. */
export const BYTE_LEVEL_TOKENIZER_PATH = fileURLToPath(new URL('../../assets/tokenizers/byte-level/tokenizer.json', import.meta.url));

const EOS_CANDIDATES = ['<|endoftext|>', '</s>', '<|im_end|>', '<eos>', '<|end_of_text|>', '<|eot_id|>'];

export class TokenizerLoadError extends Error {
  override name = 'TokenizerLoadError';
}

export async function loadTokenizer(src: TokenizerSource): Promise<TextTokenizer> {
  let json: object;
  let config: object = {};
  if ('path' in src) {
    try {
      json = JSON.parse(await readFile(src.path, 'utf8')) as object;
    } catch (e) {
      throw new TokenizerLoadError(`cannot read tokenizer ${src.path}: ${(e as Error).message}`, { cause: e });
    }
    const cfgPath = join(dirname(src.path), 'tokenizer_config.json');
    if (existsSync(cfgPath)) config = JSON.parse(await readFile(cfgPath, 'utf8')) as object;
  } else {
    json = src.json;
    config = src.config ?? {};
  }
  return fromJson(json, config);
}

function fromJson(json: object, config: object): TextTokenizer {
  let tk: Tokenizer;
  try {
    tk = new Tokenizer(json, config);
  } catch (e) {
    throw new TokenizerLoadError(`invalid tokenizer.json: ${(e as Error).message}`, { cause: e });
  }
  accelerateByteLevel(tk.pre_tokenizer);
  replaceLruCache(tk.model);
  const inner = tk as unknown as Record<'splitter_unnormalized' | 'splitter_normalized', unknown>;
  skipAbsentAddedTokens(inner.splitter_unnormalized);
  skipAbsentAddedTokens(inner.splitter_normalized);
  const vocab = tk.get_vocab(true);
  let maxId = -1;
  for (const id of vocab.values()) if (id > maxId) maxId = id;
  const cfgEos = (config as { eos_token?: string | { content?: string } }).eos_token;
  const eosName = typeof cfgEos === 'string' ? cfgEos : cfgEos?.content;
  const names = eosName ? [eosName, ...EOS_CANDIDATES] : EOS_CANDIDATES;
  let eosId: number | undefined;
  for (const n of names) {
    eosId = tk.token_to_id(n);
    if (eosId !== undefined) break;
  }
  if (eosId === undefined) throw new TokenizerLoadError(`tokenizer has no end-of-sequence token (looked for ${names.join(', ')})`);
  const slow = (text: string) => tk.encode(text, { add_special_tokens: false }).ids;
  const cfgFlags = config as { remove_space?: boolean; do_lowercase_and_remove_accent?: boolean };
  const plainConfig = cfgFlags.remove_space !== true && !cfgFlags.do_lowercase_and_remove_accent;
  const fast = plainConfig ? (byteLevelBpeFastPath(tk, json, slow) ?? memoisedBpePath(tk, json, slow)) : undefined;
  return {
    vocabSize: maxId + 1,
    eosId,
    encode: (text) => (text.length === 0 ? [] : fast ? fast(text) : slow(text)),
    decode: (ids) => (ids.length === 0 ? '' : tk.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false })),
  };
}

/**
 * The library's ByteLevel pre-tokenizer maps each piece to byte symbols with
 * a TextEncoder call, Array.from and join per piece, which dominated encoding
 * time (about 70% of it, measured with --cpu-prof). This replaces that step on
 * the instance with a table lookup (ASCII pieces skip the encoder), producing
 * the same strings; tokenize.test.ts checks ids against the unpatched library.
 */
export function accelerateByteLevel(pt: unknown): void {
  if (pt instanceof SequencePreTokenizer) {
    for (const p of (pt as unknown as { tokenizers: unknown[] }).tokenizers) accelerateByteLevel(p);
    return;
  }
  if (!(pt instanceof ByteLevelPreTokenizer)) return;
  const inst = pt as unknown as { add_prefix_space: boolean; use_regex: boolean; pattern: RegExp; byte_encoder: Record<number, string>; pre_tokenize_text: (text: string) => string[] };
  const table: string[] = Array.from({ length: 256 }, (_, b) => inst.byte_encoder[b]!);
  const enc = new TextEncoder();
  const memo = new Map<string, string>();
  const mapPiece = (piece: string): string => {
    const hit = memo.get(piece);
    if (hit !== undefined) return hit;
    const out = mapBytes(piece);
    if (piece.length <= 32) {
      if (memo.size >= 100_000) memo.clear();
      memo.set(piece, out);
    }
    return out;
  };
  const mapBytes = (piece: string): string => {
    let out = '';
    for (let i = 0; i < piece.length; i++) {
      const c = piece.charCodeAt(i);
      if (c >= 0x80) {
        out = '';
        for (const b of enc.encode(piece)) out += table[b];
        return out;
      }
      out += table[c];
    }
    return out;
  };
  inst.pre_tokenize_text = (text: string) => {
    const t = inst.add_prefix_space && !text.startsWith(' ') ? ` ${text}` : text;
    const pieces = inst.use_regex ? (t.match(inst.pattern) ?? []) : [t];
    return pieces.map(mapPiece);
  };
}

/**
 * The BPE model memoises words in an LRU cache whose every hit deletes and
 * re-inserts the entry; a plain map cleared when full gives the same results
 * (it is only a cache) at a fraction of the cost.
 */
function replaceLruCache(model: unknown): void {
  const m = model as { cache?: { get: unknown; put: unknown; clear: unknown } } | null;
  if (!m?.cache || typeof m.cache.get !== 'function' || typeof m.cache.put !== 'function') return;
  const map = new Map<string, unknown>();
  m.cache = {
    get: (k: string) => map.get(k),
    put: (k: string, v: unknown) => {
      if (map.size >= 100_000) map.clear();
      map.set(k, v);
    },
    clear: () => map.clear(),
  };
}

/**
 * Added tokens are split off by walking a character trie over the whole
 * text, one property lookup per character. Most texts contain none of the
 * (few) added tokens: a substring check per token answers that first, and
 * the trie walk only runs when one occurs. The result is the same: the
 * whole text as one section.
 */
function skipAbsentAddedTokens(splitter: unknown): void {
  const sp = splitter as { trie?: Record<string, unknown>; split?: (text: string) => string[] } | null;
  if (!sp?.trie || typeof sp.split !== 'function') return;
  const words: string[] = [];
  const walk = (node: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'end') {
        if (typeof v === 'string') words.push(v);
      } else if (v && typeof v === 'object') walk(v as Record<string, unknown>);
    }
  };
  walk(sp.trie);
  const split = sp.split.bind(sp);
  sp.split = (text: string) => (words.some((w) => text.includes(w)) ? split(text) : text.length > 0 ? [text] : []);
}

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * For the plain GPT-2 layout (no normaliser, no remove_space or lower-casing
 * in tokenizer_config.json, a ByteLevel pre-tokenizer with
 * the default regex and no prefix space, a BPE model without dropout or
 * affixes), encoding is: split by the regex, map bytes, BPE each piece. This
 * path does exactly that with the library's own BPE model, and memoises the
 * ids of each piece, skipping the per-call bookkeeping of Tokenizer.encode.
 * Texts that contain an added token, or a piece the vocabulary lacks, go
 * through the library's full encode. tokenize.test.ts checks the ids against
 * the library and a reference BPE.
 */
function byteLevelBpeFastPath(tk: Tokenizer, json: object, slow: (text: string) => number[]): ((text: string) => number[]) | undefined {
  const j = json as {
    normalizer?: unknown;
    pre_tokenizer?: { type?: string; add_prefix_space?: boolean; use_regex?: boolean } | null;
    model?: { type?: string; dropout?: unknown; continuing_subword_prefix?: string | null; end_of_word_suffix?: string | null; ignore_merges?: boolean };
    added_tokens?: { content: string }[];
  };
  const pt = j.pre_tokenizer;
  const m = j.model;
  if (j.normalizer != null || pt?.type !== 'ByteLevel' || pt.add_prefix_space || pt.use_regex === false) return undefined;
  if (m?.type !== 'BPE' || m.dropout != null || m.continuing_subword_prefix || m.end_of_word_suffix) return undefined;
  const model = tk.model as unknown as { bpe?: (t: string) => string[]; tokens_to_ids?: Map<string, number> };
  if (typeof model.bpe !== 'function' || !(model.tokens_to_ids instanceof Map)) return undefined;
  const bpe = model.bpe.bind(model);
  const toId = model.tokens_to_ids;
  const added = (j.added_tokens ?? []).map((a) => a.content).filter((c) => c.length > 0);
  const ignoreMerges = m.ignore_merges === true;
  const b2u = Array.from({ length: 256 }, (_, b) => {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    return printable ? String.fromCodePoint(b) : '';
  });
  let extra = 0;
  for (let b = 0; b < 256; b++) if (b2u[b] === '') b2u[b] = String.fromCodePoint(256 + extra++);
  const enc = new TextEncoder();
  const memo = new Map<string, number[]>();
  const pieceIds = (piece: string): number[] | undefined => {
    let mapped = '';
    for (const byte of enc.encode(piece)) mapped += b2u[byte];
    const direct = ignoreMerges ? toId.get(mapped) : undefined;
    const toks = direct !== undefined ? [mapped] : bpe(mapped);
    const ids: number[] = [];
    for (const t of toks) {
      const id = toId.get(t);
      if (id === undefined) return undefined;
      ids.push(id);
    }
    return ids;
  };
  return (text) => {
    for (const a of added) if (text.includes(a)) return slow(text);
    const out: number[] = [];
    GPT2_SPLIT.lastIndex = 0;
    for (const piece of text.match(GPT2_SPLIT) ?? []) {
      let ids = memo.get(piece);
      if (ids === undefined) {
        ids = pieceIds(piece);
        if (ids === undefined) return slow(text);
        if (memo.size >= 200_000) memo.clear();
        memo.set(piece, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
    return out;
  };
}

/**
 * Any other BPE layout (a Sequence of pre-tokenizers, Metaspace, a
 * normaliser): the library's own normaliser and pre-tokenizer split the
 * text, and the ids of each piece are memoised. Equivalent to encode when no
 * added token occurs (checked before and after normalisation) and the model
 * does not fuse unknown tokens across pieces; other texts take the full path.
 */
function memoisedBpePath(tk: Tokenizer, json: object, slow: (text: string) => number[]): ((text: string) => number[]) | undefined {
  const m = (json as { model?: { type?: string; dropout?: unknown } }).model;
  if (m?.type !== 'BPE' || m.dropout != null) return undefined;
  const inner = tk as unknown as {
    model: { encode?: (tokens: string[]) => string[]; tokens_to_ids?: Map<string, number>; unk_token_id?: number; fuse_unk?: boolean };
    normalizer: ((text: string) => string) | null;
    pre_tokenizer: ((text: string, options: { section_index: number }) => string[]) | null;
    added_tokens_map?: Map<string, { id: number }>;
  };
  const model = inner.model;
  if (typeof model.encode !== 'function' || !(model.tokens_to_ids instanceof Map) || model.fuse_unk) return undefined;
  if (!(inner.added_tokens_map instanceof Map)) return undefined;
  const encodePieces = model.encode.bind(model);
  const toId = model.tokens_to_ids;
  const addedMap = inner.added_tokens_map;
  const added = [...addedMap.keys()].filter((k) => k.length > 0);
  const normalize = inner.normalizer;
  const pre = inner.pre_tokenizer;
  const memo = new Map<string, number[]>();
  return (text) => {
    for (const a of added) if (text.includes(a)) return slow(text);
    const t = normalize ? normalize(text) : text;
    if (normalize) for (const a of added) if (t.includes(a)) return slow(text);
    if (t.length === 0) return [];
    const out: number[] = [];
    for (const piece of pre ? pre(t, { section_index: 0 }) : [t]) {
      let ids = memo.get(piece);
      if (ids === undefined) {
        ids = [];
        for (const tok of encodePieces([piece])) {
          const id = addedMap.get(tok)?.id ?? toId.get(tok) ?? model.unk_token_id;
          if (id === undefined) return slow(text);
          ids.push(id);
        }
        if (memo.size >= 200_000) memo.clear();
        memo.set(piece, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
    return out;
  };
}
