/**
 * Document quality heuristics of the Gopher (Rae et al. 2021) and C4 (Raffel
 * et al. 2020) kind. Every threshold comes from the config; each failed check
 * names itself as the reason. Word statistics (mean word length, stop words,
 * alphabetic words, word n-gram repetition) only apply to Latin-script text:
 * scripts written without spaces have no comparable "words".
 */
import type { PipelineConfig } from './config.ts';
import { cjkFraction, fmix32 } from './minhash.ts';
import { ENGLISH_STOP_WORDS } from './stopwords.ts';

type QualityConfig = PipelineConfig['quality'];

export type QualityResult = { ok: true; text: string; changed: string[] } | { ok: false; reason: string };

const BULLETS = new Set(['•', '‣', '◦', '⁃', '-', '*', '·', '▪', '●', '–']);
const LATIN_LETTER = /[A-Za-z\u00C0-\u024F]/g;
const ANY_LETTER = /\p{L}/gu;
const HAS_LETTER = /\p{L}/u;
const EDGE_PUNCT = /^[\p{P}\p{S}]+|[\p{P}\p{S}]+$/gu;
const TERMINAL = /[.!?"'”’»)\]。！？]$/;
const POLICY = /terms of use|privacy policy|cookie policy|uses cookies|use of cookies/i;

/** Latin share of the letters (0 when none). */
export function latinFraction(text: string): number {
  const all = text.match(ANY_LETTER)?.length ?? 0;
  if (all === 0) return 0;
  return (text.match(LATIN_LETTER)?.length ?? 0) / all;
}

/** C4 line filters; returns the text without the dropped lines, or a document-level reason. */
export function applyC4(text: string, c4: QualityConfig['c4']): { text: string; changed: string[] } | { reason: string } {
  const lower = text.toLowerCase();
  if (c4.drop_lorem_ipsum && lower.includes('lorem ipsum')) return { reason: 'c4_lorem_ipsum' };
  if (c4.drop_curly_brace && text.includes('{')) return { reason: 'c4_curly_brace' };
  const lineFilters = c4.drop_javascript_lines || c4.drop_lines_without_terminal_punct || c4.drop_policy_lines || c4.min_words_per_line > 0;
  if (!lineFilters) return { text, changed: [] };
  const changed = new Set<string>();
  const kept: string[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t.length === 0) {
      kept.push(line);
      continue;
    }
    if (c4.drop_javascript_lines && t.toLowerCase().includes('javascript')) changed.add('c4_javascript_line');
    else if (c4.drop_policy_lines && POLICY.test(t)) changed.add('c4_policy_line');
    else if (c4.drop_lines_without_terminal_punct && !TERMINAL.test(t)) changed.add('c4_no_terminal_punct');
    else if (c4.min_words_per_line > 0 && t.split(/\s+/).length < c4.min_words_per_line) changed.add('c4_short_line');
    else kept.push(line);
  }
  const out = kept.join('\n').replace(/\n{3,}/g, '\n\n').trim();
  if (out.length === 0) return { reason: 'c4_no_lines_left' };
  return { text: out, changed: [...changed] };
}

/** Fraction of items equal to an earlier one, and the share of characters they hold. */
function duplicateFractions(items: string[]): { items: number; chars: number } {
  const seen = new Set<string>();
  let dup = 0;
  let dupChars = 0;
  let chars = 0;
  for (const it of items) {
    chars += it.length;
    if (seen.has(it)) {
      dup++;
      dupChars += it.length;
    } else seen.add(it);
  }
  return { items: items.length === 0 ? 0 : dup / items.length, chars: chars === 0 ? 0 : dupChars / chars };
}

/** 53-bit hash of words[i..i+n). */
function ngramKey(wh: Uint32Array, i: number, n: number): number {
  let h1 = 0x9747b28c ^ n;
  let h2 = 0x1b873593 ^ n;
  for (let j = 0; j < n; j++) {
    h1 = Math.imul(h1 ^ wh[i + j]!, 0x5bd1e995);
    h1 ^= h1 >>> 15;
    h2 = Math.imul(h2 ^ wh[i + j]!, 0x27d4eb2f);
    h2 ^= h2 >>> 13;
  }
  return (fmix32(h1) & 0x1fffff) * 0x100000000 + fmix32(h2);
}

function wordHash(w: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

/** Share of word characters covered by the most frequent n-gram (counted once per occurrence). */
function topNgramCharFraction(words: string[], wh: Uint32Array, n: number, totalChars: number): number {
  if (words.length < n || totalChars === 0) return 0;
  const counts = new Map<number, number>();
  let bestKey = 0;
  let best = 0;
  let bestAt = 0;
  for (let i = 0; i + n <= words.length; i++) {
    const k = ngramKey(wh, i, n);
    const c = (counts.get(k) ?? 0) + 1;
    counts.set(k, c);
    if (c > best) [best, bestKey, bestAt] = [c, k, i];
  }
  if (best < 2 || bestKey === -1) return 0;
  let len = 0;
  for (let j = 0; j < n; j++) len += words[bestAt + j]!.length;
  return (len * best) / totalChars;
}

/** Share of word characters inside n-grams that repeat an earlier n-gram (words counted once). */
function dupNgramCharFraction(words: string[], wh: Uint32Array, n: number, totalChars: number): number {
  if (words.length < n || totalChars === 0) return 0;
  const seen = new Set<number>();
  const marked = new Uint8Array(words.length);
  for (let i = 0; i + n <= words.length; i++) {
    const k = ngramKey(wh, i, n);
    if (seen.has(k)) {
      for (let j = 0; j < n; j++) marked[i + j] = 1;
    } else seen.add(k);
  }
  let dup = 0;
  for (let i = 0; i < words.length; i++) if (marked[i]) dup += words[i]!.length;
  return dup / totalChars;
}

/** Runs the checks in a fixed order; the first failing one is the reason. */
export function checkQuality(text: string, cfg: QualityConfig): { ok: true } | { ok: false; reason: string } {
  const words = text.split(/\s+/).filter((w) => w.length > 0);
  if (words.length < cfg.min_words) return { ok: false, reason: 'too_few_words' };
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const paras = text.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p.length > 0);

  const dl = duplicateFractions(lines);
  if (dl.items > cfg.max_dup_line_fraction) return { ok: false, reason: 'dup_line_fraction' };
  if (dl.chars > cfg.max_dup_line_char_fraction) return { ok: false, reason: 'dup_line_char_fraction' };
  if (duplicateFractions(paras).items > cfg.max_dup_para_fraction) return { ok: false, reason: 'dup_para_fraction' };

  const nWords = Math.max(1, words.length);
  let symbols = 0;
  for (const w of words) {
    for (let i = 0; i < w.length; i++) if (w.charCodeAt(i) === 0x23 || w.charCodeAt(i) === 0x2026) symbols++;
    let at = w.indexOf('...');
    while (at !== -1) {
      symbols++;
      at = w.indexOf('...', at + 3);
    }
  }
  if (symbols / nWords > cfg.max_symbol_word_ratio) return { ok: false, reason: 'symbol_word_ratio' };
  if (lines.length > 0) {
    const bullets = lines.filter((l) => BULLETS.has(l[0]!)).length;
    if (bullets / lines.length > cfg.max_bullet_line_fraction) return { ok: false, reason: 'bullet_lines' };
    const ell = lines.filter((l) => l.endsWith('...') || l.endsWith('…')).length;
    if (ell / lines.length > cfg.max_ellipsis_line_fraction) return { ok: false, reason: 'ellipsis_lines' };
  }

  const spaced = cjkFraction(text) < 0.3;
  if (!spaced) return { ok: true };
  const bare = words.map((w) => w.replace(EDGE_PUNCT, '').toLowerCase());
  if (latinFraction(text) >= 0.5) {
    const withLetters = bare.filter((w) => w.length > 0);
    const mean = withLetters.reduce((s, w) => s + w.length, 0) / Math.max(1, withLetters.length);
    if (mean < cfg.min_mean_word_length || mean > cfg.max_mean_word_length) return { ok: false, reason: 'mean_word_length' };
    const alpha = words.filter((w) => HAS_LETTER.test(w)).length;
    if (alpha / nWords < cfg.min_alpha_word_fraction) return { ok: false, reason: 'alpha_word_fraction' };
    let stop = 0;
    for (const w of bare) if (ENGLISH_STOP_WORDS.has(w) && ++stop >= cfg.min_stop_words) break;
    if (stop < cfg.min_stop_words) return { ok: false, reason: 'stop_words' };
  }

  const wh = new Uint32Array(bare.length);
  let chars = 0;
  for (let i = 0; i < bare.length; i++) {
    wh[i] = wordHash(bare[i]!);
    chars += bare[i]!.length;
  }
  const top = cfg.max_top_ngram_char_fraction;
  const tops: [number, number][] = [[2, top.n2], [3, top.n3], [4, top.n4]];
  for (const [n, max] of tops) if (topNgramCharFraction(bare, wh, n, chars) > max) return { ok: false, reason: `top_${n}gram_char_fraction` };
  const d = cfg.max_dup_ngram_char_fraction;
  const dups: [number, number][] = [[5, d.n5], [6, d.n6], [7, d.n7], [8, d.n8], [9, d.n9], [10, d.n10]];
  for (const [n, max] of dups) if (dupNgramCharFraction(bare, wh, n, chars) > max) return { ok: false, reason: `dup_${n}gram_char_fraction` };
  return { ok: true };
}
