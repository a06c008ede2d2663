/**
 * Document quality heuristics of the Gopher (Rae et al. 2021) and C4 (Raffel
 * et al. 2020) kind. Every threshold comes from the config; each failed check
 * names itself as the reason. Word statistics (mean word length, stop words,
 * alphabetic words, word n-gram repetition) only apply to Latin-script text:
 * scripts written without spaces have no comparable "words".
 */
import type { PipelineConfig } from './config.ts';
import { fmix32, isCjkCode } from './minhash.ts';
import { ENGLISH_STOP_WORDS } from './stopwords.ts';

type QualityConfig = PipelineConfig['quality'];

export type QualityResult = { ok: true; text: string; changed: string[] } | { ok: false; reason: string };

const BULLETS = new Set(['•', '‣', '◦', '⁃', '-', '*', '·', '▪', '●', '–']);
const TERMINAL = /[.!?"'”’»)\]。！？]$/;
const POLICY = /terms of use|privacy policy|cookie policy|uses cookies|use of cookies/i;

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

const isSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0 || c === 0x3000 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029;
/** Punctuation or symbol stripped from word edges: ASCII punctuation and the common non-ASCII punctuation blocks. */
const isEdgePunct = (c: number) =>
  (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e) ||
  (c >= 0xa1 && c <= 0xbf && c !== 0xaa && c !== 0xb5 && c !== 0xba) || c === 0xd7 || c === 0xf7 ||
  (c >= 0x2010 && c <= 0x2bff) || (c >= 0x3001 && c <= 0x303f) || (c >= 0xff01 && c <= 0xff0f) || (c >= 0xff1a && c <= 0xff20);
const isAsciiLetter = (c: number) => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
const isLetterLike = (c: number) => (c < 0x80 ? isAsciiLetter(c) : !isEdgePunct(c) && !isSpace(c) && !(c >= 0x300 && c <= 0x36f));

function wordHashOf(text: string, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c += 32;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return fmix32(h);
}
const stopHashes = new Set([...ENGLISH_STOP_WORDS].map((w) => wordHashOf(w, 0, w.length)));

/** Letters by script, in one pass: Latin (ASCII and Latin-1/Extended) and CJK. */
export function scriptCounts(text: string): { letters: number; latin: number; cjk: number } {
  let letters = 0;
  let latin = 0;
  let cjk = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (isAsciiLetter(c)) {
        letters++;
        latin++;
      }
    } else if (isLetterLike(c)) {
      letters++;
      if (c >= 0xc0 && c <= 0x24f) latin++;
      else if (isCjkCode(c)) cjk++;
    }
  }
  return { letters, latin, cjk };
}

/** Reusable scratch buffers (word hashes, lengths, n-gram hashes, an open-addressing table). */
let wh = new Uint32Array(1024);
let wl = new Uint32Array(1024);
let gh = new Uint32Array(1024);
let tKeys = new Int32Array(4096);
let tVals = new Int32Array(4096);
let mark = new Uint8Array(1024);

function ensure(n: number): void {
  if (wh.length >= n) return;
  const m = n * 2;
  wh = new Uint32Array(m);
  wl = new Uint32Array(m);
  gh = new Uint32Array(m);
  mark = new Uint8Array(m);
}

/**
 * Counts of each n-gram hash in gh[0..count) via open addressing; returns
 * the most frequent count and a position where it occurs. With `markDup`,
 * also marks the words of every n-gram that occurred earlier.
 */
function countNgrams(count: number, n: number, markDup: boolean): { best: number; at: number } {
  let size = 16;
  while (size < count * 2) size <<= 1;
  if (tKeys.length < size) {
    tKeys = new Int32Array(size);
    tVals = new Int32Array(size);
  }
  tKeys.fill(0, 0, size);
  const mask = size - 1;
  let best = 0;
  let at = 0;
  for (let i = 0; i < count; i++) {
    const key = gh[i]! | 1; // 0 marks an empty slot
    let slot = (key ^ (key >>> 16)) & mask;
    while (tKeys[slot] !== 0 && tKeys[slot] !== key) slot = (slot + 1) & mask;
    if (tKeys[slot] === 0) {
      tKeys[slot] = key;
      tVals[slot] = 1;
    } else {
      const c = ++tVals[slot]!;
      if (markDup) for (let j = 0; j < n; j++) mark[i + j] = 1;
      if (c > best) [best, at] = [c, i];
    }
  }
  return { best, at };
}

/**
 * Runs the checks in a fixed order; the first failing one is the reason.
 * With `repetitionOnly`, only the repetition checks run (lines, paragraphs,
 * word n-grams): the rest are tuned for web documents, not for short
 * instruction pairs, code or lists.
 */
export function checkQuality(text: string, cfg: QualityConfig, repetitionOnly = false): { ok: true } | { ok: false; reason: string } {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const dl = duplicateFractions(lines);
  if (dl.items > cfg.max_dup_line_fraction) return { ok: false, reason: 'dup_line_fraction' };
  if (dl.chars > cfg.max_dup_line_char_fraction) return { ok: false, reason: 'dup_line_char_fraction' };
  if (text.includes('\n\n')) {
    const paras = text.split(/\n\s*\n/).map((p) => p.trim()).filter((p) => p.length > 0);
    if (duplicateFractions(paras).items > cfg.max_dup_para_fraction) return { ok: false, reason: 'dup_para_fraction' };
  }

  // One pass over whitespace-separated words: symbols, letters, and the
  // hash and length of each word without edge punctuation (ASCII lower-cased).
  ensure(text.length + 1);
  let nWords = 0;
  let nBare = 0;
  let bareChars = 0;
  let alphaWords = 0;
  let symbols = 0;
  let stop = 0;
  for (let i = 0; i < text.length; ) {
    while (i < text.length && isSpace(text.charCodeAt(i))) i++;
    if (i >= text.length) break;
    const start = i;
    let letter = false;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (isSpace(c)) break;
      if (c === 0x23 || c === 0x2026) symbols++;
      else if (c === 0x2e && text.charCodeAt(i + 1) === 0x2e && text.charCodeAt(i + 2) === 0x2e) {
        symbols++;
        i += 2;
      }
      if (!letter && isLetterLike(c)) letter = true;
      i++;
    }
    nWords++;
    if (letter) alphaWords++;
    let a = start;
    let b = i;
    while (a < b && isEdgePunct(text.charCodeAt(a))) a++;
    while (b > a && isEdgePunct(text.charCodeAt(b - 1))) b--;
    if (b > a) {
      const h = wordHashOf(text, a, b);
      if (stopHashes.has(h)) stop++;
      wh[nBare] = h;
      wl[nBare] = b - a;
      bareChars += b - a;
      nBare++;
    }
  }
  if (!repetitionOnly && nWords < cfg.min_words) return { ok: false, reason: 'too_few_words' };
  if (!repetitionOnly && symbols / Math.max(1, nWords) > cfg.max_symbol_word_ratio) return { ok: false, reason: 'symbol_word_ratio' };
  if (!repetitionOnly && lines.length > 0) {
    let bullets = 0;
    let ell = 0;
    for (const l of lines) {
      if (BULLETS.has(l[0]!)) bullets++;
      if (l.endsWith('...') || l.endsWith('…')) ell++;
    }
    if (bullets / lines.length > cfg.max_bullet_line_fraction) return { ok: false, reason: 'bullet_lines' };
    if (ell / lines.length > cfg.max_ellipsis_line_fraction) return { ok: false, reason: 'ellipsis_lines' };
  }

  const sc = scriptCounts(text);
  if (sc.letters > 0 && sc.cjk / sc.letters >= 0.3) return { ok: true }; // no comparable words
  if (!repetitionOnly && sc.letters > 0 && sc.latin / sc.letters >= 0.5) {
    const mean = bareChars / Math.max(1, nBare);
    if (mean < cfg.min_mean_word_length || mean > cfg.max_mean_word_length) return { ok: false, reason: 'mean_word_length' };
    if (alphaWords / Math.max(1, nWords) < cfg.min_alpha_word_fraction) return { ok: false, reason: 'alpha_word_fraction' };
    if (stop < cfg.min_stop_words) return { ok: false, reason: 'stop_words' };
  }
  if (bareChars === 0) return { ok: true };

  // Word n-gram repetition. gh[i] holds the hash of words [i, i+n) and is
  // extended one word at a time, n = 2..10.
  gh.set(wh.subarray(0, nBare));
  const top = cfg.max_top_ngram_char_fraction;
  const dupMax = cfg.max_dup_ngram_char_fraction;
  const limits = [0, 0, top.n2, top.n3, top.n4, dupMax.n5, dupMax.n6, dupMax.n7, dupMax.n8, dupMax.n9, dupMax.n10];
  for (let n = 2; n <= 10 && n <= nBare; n++) {
    const count = nBare - n + 1;
    for (let i = 0; i < count; i++) {
      let h = Math.imul(gh[i]! ^ wh[i + n - 1]!, 0x5bd1e995);
      h ^= h >>> 15;
      gh[i] = fmix32(h + n);
    }
    if (n <= 4) {
      const { best, at } = countNgrams(count, n, false);
      if (best < 2) continue;
      let len = 0;
      for (let j = 0; j < n; j++) len += wl[at + j]!;
      if ((len * best) / bareChars > limits[n]!) return { ok: false, reason: `top_${n}gram_char_fraction` };
    } else {
      mark.fill(0, 0, nBare);
      countNgrams(count, n, true);
      let dup = 0;
      for (let i = 0; i < nBare; i++) if (mark[i]) dup += wl[i]!;
      if (dup / bareChars > limits[n]!) return { ok: false, reason: `dup_${n}gram_char_fraction` };
      // Words in a repeated (n+1)-gram are in repeated n-grams too, so the
      // fraction only falls as n grows: below every later limit, stop here.
      if (dup / bareChars <= Math.min(...limits.slice(n + 1))) break;
    }
  }
  return { ok: true };
}
