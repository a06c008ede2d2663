/**
 * The per-record stages (normalise, quality, PII, length) plus the
 * per-record inputs of the later sequential stages (exact hash, MinHash
 * signature, token ids). Pure and deterministic: the same function runs
 * in-process or on worker threads, and the results are identical.
 */
import { createHash } from 'node:crypto';
import type { PiiKind, PipelineConfig } from './config.ts';
import { MinHasher } from './minhash.ts';
import { normaliseRecord } from './normalise.ts';
import { PII_TOKENS, redactPii } from './pii.ts';
import { splitKey, stratumOf } from './split.ts';
import { applyC4, checkQuality } from './quality.ts';
import { isPromptRecord, recordText, type StageName } from './record.ts';
import type { CleanRecord, InputRecord } from './types.ts';
import { encodeRecord } from '../tokenize/shards.ts';
import type { TextTokenizer } from '../tokenize/tokenizer.ts';

/** A change or removal seen by a per-record stage (texts already truncated). */
export interface RecordEvent {
  stage: StageName;
  action: 'removed' | 'changed';
  reason: string;
  count: number;
  before?: string;
  after?: string;
}

export interface Processed {
  id: string;
  bytes: number;
  /** Stage that removed the record (absent when kept). */
  dropped?: StageName;
  events: RecordEvent[];
  /** The cleaned record as one JSON line (no newline). */
  json?: string;
  /** The cleaned record's text, only when the perplexity stage needs it. */
  text?: string;
  /** Truncated text for report examples of the later stages. */
  snippet?: string;
  /** Content key and stratum for the split. */
  splitKey?: number;
  stratum?: string;
  /** Exact-dedup key of the cleaned text (sha256, base64). */
  exactKey?: string;
  signature?: Uint32Array;
  tokens?: Uint32Array;
  promptLen?: number;
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

/** About `max` characters of `s` around position `at`, with ellipses where cut. */
export function snippetAround(s: string, at: number, max: number): string {
  if (s.length <= max) return s;
  const from = Math.max(0, Math.min(at - Math.floor(max / 3), s.length - max));
  return `${from > 0 ? '…' : ''}${s.slice(from, from + max)}${from + max < s.length ? '…' : ''}`;
}

function fieldBytes(v: string | Uint8Array | undefined): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'string' ? Buffer.byteLength(v) : v.byteLength;
}

export type RecordProcessor = (input: InputRecord) => Processed;

export function createRecordProcessor(cfg: PipelineConfig, tokenizer: TextTokenizer | undefined): RecordProcessor {
  const hasher = cfg.dedup.near
    ? new MinHasher({
        numPerm: cfg.dedup.num_perm,
        seed: cfg.dedup.seed,
        wordNgram: cfg.dedup.word_ngram,
        charNgram: cfg.dedup.char_ngram,
        cjkMinFraction: cfg.dedup.cjk_min_fraction,
      })
    : undefined;
  const needTokens = cfg.length.enabled || cfg.tokenise.enabled;
  if (needTokens && !tokenizer) throw new Error('a tokenizer is needed for the length filter and tokenisation');
  const max = cfg.max_example_chars;
  // Report examples never carry the personal data the pii stage would remove:
  // records dropped before that stage are redacted for the report too.
  const show = cfg.pii.enabled
    ? (t: string) => truncate(redactPii(t.slice(0, max + 128), cfg.pii.kinds).text, max)
    : (t: string) => truncate(t, max);

  return (input) => {
    const bytes = fieldBytes(input?.text) + fieldBytes(input?.prompt) + fieldBytes(input?.completion);
    const id = typeof input?.id === 'string' ? input.id : String(input?.id);
    const events: RecordEvent[] = [];
    const drop = (stage: StageName, reason: string, before: string): Processed => {
      events.push({ stage, action: 'removed', reason, count: 1, before: show(before) });
      return { id, bytes, dropped: stage, events };
    };

    const n = normaliseRecord(input, cfg.normalise);
    if (!n.ok) {
      const field = input?.text ?? input?.prompt ?? input?.completion;
      const raw = typeof field === 'string' ? field : field instanceof Uint8Array ? Buffer.from(field.buffer, field.byteOffset, Math.min(field.byteLength, max * 4)).toString('utf8') : '';
      return drop('normalise', n.reason, raw);
    }
    let rec = n.record;
    for (const c of n.changes) events.push({ stage: 'normalise', action: 'changed', reason: c, count: 1, after: show(recordText(rec)) });

    if (cfg.quality.enabled) {
      if (!isPromptRecord(rec)) {
        const c4 = applyC4(rec.text, cfg.quality.c4);
        if ('reason' in c4) return drop('quality', c4.reason, rec.text);
        if (c4.text !== rec.text) {
          for (const reason of c4.changed)
            events.push({ stage: 'quality', action: 'changed', reason, count: 1, before: show(rec.text), after: show(c4.text) });
          rec = { ...rec, text: c4.text };
        }
      } else if (cfg.quality.pairs !== 'none') {
        // Pairs: document-level C4 checks only (no line is dropped from a prompt or completion);
        // the curly-brace rule, meant for web pages, only under pairs: 'all'.
        const c4cfg = { ...cfg.quality.c4, drop_javascript_lines: false, drop_lines_without_terminal_punct: false, drop_policy_lines: false, min_words_per_line: 0 };
        if (cfg.quality.pairs !== 'all') c4cfg.drop_curly_brace = false;
        const c4 = applyC4(recordText(rec), c4cfg);
        if ('reason' in c4) return drop('quality', c4.reason, recordText(rec));
      }
      const pair = isPromptRecord(rec);
      if (!pair || cfg.quality.pairs !== 'none') {
        const q = checkQuality(recordText(rec), cfg.quality, pair && cfg.quality.pairs === 'repetition');
        if (!q.ok) return drop('quality', q.reason, recordText(rec));
      }
    }

    if (cfg.pii.enabled) {
      const kinds = cfg.pii.kinds;
      let total = 0;
      const counts: Record<string, number> = {};
      const red = (s: string) => {
        const r = redactPii(s, kinds);
        for (const [k, v] of Object.entries(r.counts)) {
          counts[k] = (counts[k] ?? 0) + v;
          total += v;
        }
        return r.text;
      };
      const next: CleanRecord = isPromptRecord(rec) ? { ...rec, prompt: red(rec.prompt), completion: red(rec.completion) } : { ...rec, text: red(rec.text) };
      if (total > 0) {
        // The report shows the redacted text only: the original holds the personal data.
        const redacted = recordText(next);
        for (const [k, v] of Object.entries(counts)) {
          const after = snippetAround(redacted, redacted.indexOf(PII_TOKENS[k as PiiKind]), max);
          events.push({ stage: 'pii', action: 'changed', reason: k, count: v, after });
        }
        rec = next;
      }
    }

    let tokens: Uint32Array | undefined;
    let promptLen = 0;
    if (needTokens) {
      const enc = encodeRecord(tokenizer!, rec);
      tokens = Uint32Array.from(enc.ids);
      promptLen = enc.promptLen;
      if (cfg.length.enabled) {
        if (tokens.length < cfg.length.min_tokens) return drop('length', 'too_short', recordText(rec));
        if (tokens.length > cfg.length.max_tokens) return drop('length', 'too_long', recordText(rec));
      }
    }

    const text = recordText(rec);
    const exactKey = cfg.dedup.exact ? createHash('sha256').update(isPromptRecord(rec) ? `p\u0000${rec.prompt}\u0000${rec.completion}` : `t\u0000${text}`).digest('base64') : undefined;
    const signature = hasher ? hasher.signature(text) : undefined;
    return {
      id,
      bytes,
      events,
      json: JSON.stringify(rec),
      ...(cfg.perplexity.enabled ? { text } : {}),
      snippet: truncate(text, max),
      splitKey: splitKey(rec, cfg.split.seed),
      stratum: stratumOf(rec, cfg.split.stratify_by),
      exactKey,
      signature,
      tokens,
      promptLen,
    };
  };
}
