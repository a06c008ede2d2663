/**
 * The one configuration schema of the cleaning pipeline. Every stage is
 * switchable and every threshold lives here with its default; the service
 * uses the same schema to validate the HTTP body of an ingest request.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const Ratio = (def: number, description: string) => Type.Number({ minimum: 0, maximum: 1, default: def, description });
const Int = (def: number, min: number, description: string, max?: number) =>
  Type.Integer({ minimum: min, ...(max === undefined ? {} : { maximum: max }), default: def, description });
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description });

export const NormaliseConfigSchema = Type.Object(
  {
    utf8: Type.Union([Type.Literal('repair'), Type.Literal('reject')], {
      default: 'repair',
      description: 'invalid UTF-8: replace with U+FFFD (repair) or drop the record (reject); a string already holding U+FFFD counts as invalid',
    }),
    nfc: Bool(true, 'Unicode NFC normalisation'),
    strip_control: Bool(true, 'remove C0/C1 control characters other than tab and newline'),
    trim: Bool(true, 'trim leading/trailing whitespace of each field'),
  },
  { default: {}, additionalProperties: false },
);

export const LengthConfigSchema = Type.Object(
  {
    enabled: Bool(true, 'drop records outside [min_tokens, max_tokens]'),
    min_tokens: Int(32, 0, 'minimum tokens (EOS included)'),
    max_tokens: Int(2048, 1, 'maximum tokens (EOS included)'),
  },
  { default: {}, additionalProperties: false },
);

export const DedupConfigSchema = Type.Object(
  {
    exact: Bool(true, 'drop records whose normalised text hash was seen before'),
    near: Bool(true, 'MinHash-LSH near-duplicate removal'),
    threshold: Ratio(0.85, 'Jaccard similarity at or above which two records are near-duplicates'),
    num_perm: Int(128, 16, 'MinHash permutations', 1024),
    word_ngram: Int(5, 1, 'word shingle size (Latin and other space-separated scripts)', 16),
    char_ngram: Int(5, 1, 'character shingle size for CJK text', 16),
    cjk_min_fraction: Ratio(0.3, 'fraction of CJK letters above which character shingles are used'),
    verify: Bool(true, 'confirm LSH candidates inside the job by the signature Jaccard estimate'),
    lsh_fp_weight: Type.Number({
      exclusiveMinimum: 0,
      exclusiveMaximum: 1,
      default: 0.05,
      description:
        'weight of false positives (1 - it: of false negatives) when choosing bands x rows; low because in-job candidates are verified, so the layout favours recall',
    }),
    prior: Bool(true, 'also drop near-duplicates of earlier dataset versions (when the service passes their band index)'),
    prior_min_band_hits: Int(2, 1, 'band hits in earlier versions needed to call a record a near-duplicate of them (those hits cannot be verified)', 1024),
    seed: Int(1, 0, 'seed of the MinHash permutations (must stay fixed across dataset versions)', 0xffffffff),
  },
  { default: {}, additionalProperties: false },
);

export const QualityConfigSchema = Type.Object(
  {
    enabled: Bool(true, 'Gopher-style document quality heuristics'),
    pairs: Type.Union([Type.Literal('repetition'), Type.Literal('all'), Type.Literal('none')], {
      default: 'repetition',
      description:
        'checks for prompt/completion records: repetition only (the document heuristics are tuned for web text, not instructions, code or lists), all, or none',
    }),
    min_words: Int(0, 0, 'minimum words (0 = off; token length is the main filter)'),
    max_dup_line_fraction: Ratio(0.3, 'max fraction of lines that duplicate an earlier line'),
    max_dup_line_char_fraction: Ratio(0.2, 'max fraction of characters in duplicated lines'),
    max_dup_para_fraction: Ratio(0.3, 'max fraction of paragraphs that duplicate an earlier one'),
    max_top_ngram_char_fraction: Type.Object(
      { n2: Ratio(0.2, ''), n3: Ratio(0.18, ''), n4: Ratio(0.16, '') },
      { default: {}, additionalProperties: false, description: 'max fraction of characters covered by the most frequent word n-gram' },
    ),
    max_dup_ngram_char_fraction: Type.Object(
      { n5: Ratio(0.15, ''), n6: Ratio(0.14, ''), n7: Ratio(0.13, ''), n8: Ratio(0.12, ''), n9: Ratio(0.11, ''), n10: Ratio(0.1, '') },
      { default: {}, additionalProperties: false, description: 'max fraction of characters in duplicated word n-grams' },
    ),
    max_symbol_word_ratio: Type.Number({ minimum: 0, default: 0.1, description: "max ratio of '#' and '...' to words" }),
    min_stop_words: Int(2, 0, 'min English stop words (Latin-script text only; set 0 for datasets in other Latin-script languages)'),
    min_mean_word_length: Type.Number({ minimum: 0, default: 3, description: 'min mean word length (Latin-script text only)' }),
    max_mean_word_length: Type.Number({ minimum: 0, default: 10, description: 'max mean word length (Latin-script text only)' }),
    min_alpha_word_fraction: Ratio(0.8, 'min fraction of words with a letter (Latin-script text only)'),
    max_bullet_line_fraction: Ratio(0.9, 'max fraction of lines starting with a bullet'),
    max_ellipsis_line_fraction: Ratio(0.3, 'max fraction of lines ending in an ellipsis'),
    c4: Type.Object(
      {
        drop_lorem_ipsum: Bool(true, "drop documents containing 'lorem ipsum'"),
        drop_curly_brace: Bool(false, "drop documents containing '{' (C4; removes code)"),
        drop_javascript_lines: Bool(false, "drop lines mentioning 'javascript'"),
        drop_lines_without_terminal_punct: Bool(false, 'drop lines not ending in . ! ? or a closing quote'),
        drop_policy_lines: Bool(false, "drop lines mentioning 'terms of use', 'privacy policy', 'cookie policy'"),
        min_words_per_line: Int(0, 0, 'drop lines with fewer words (0 = off; C4 uses 3)'),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { default: {}, additionalProperties: false },
);

export const PiiKinds = ['email', 'phone', 'ip', 'card', 'iban', 'ssn', 'nino', 'cn_id', 'ca_sin', 'in_aadhaar'] as const;
export type PiiKind = (typeof PiiKinds)[number];

export const PiiConfigSchema = Type.Object(
  {
    enabled: Bool(true, 'redact personal data'),
    kinds: Type.Array(Type.Union(PiiKinds.map((k) => Type.Literal(k))), {
      default: [...PiiKinds],
      uniqueItems: true,
      description: 'kinds to redact',
    }),
  },
  { default: {}, additionalProperties: false },
);

export const PerplexityConfigSchema = Type.Object(
  {
    enabled: Bool(false, 'drop records above max_perplexity (needs the perplexity hook)'),
    max_perplexity: Type.Number({ exclusiveMinimum: 0, default: 1000, description: 'max perplexity' }),
  },
  { default: {}, additionalProperties: false },
);

export const SplitConfigSchema = Type.Object(
  {
    train: Ratio(0.8, 'train fraction'),
    val: Ratio(0.1, 'validation fraction'),
    test: Ratio(0.1, 'test fraction'),
    seed: Int(0, 0, 'split seed', 0xffffffff),
    stratify_by: Type.Optional(Type.String({ minLength: 1, description: 'record field to stratify by' })),
  },
  { default: {}, additionalProperties: false },
);

export const TokeniseConfigSchema = Type.Object(
  {
    enabled: Bool(true, 'write token shards'),
    max_tokens_per_shard: Int(64 * 1024 * 1024, 1, 'max tokens per shard file'),
  },
  { default: {}, additionalProperties: false },
);

export const PipelineConfigSchema = Type.Object(
  {
    normalise: NormaliseConfigSchema,
    length: LengthConfigSchema,
    quality: QualityConfigSchema,
    pii: PiiConfigSchema,
    dedup: DedupConfigSchema,
    perplexity: PerplexityConfigSchema,
    split: SplitConfigSchema,
    tokenise: TokeniseConfigSchema,
    workers: Int(1, 0, 'worker threads for the per-record stages (0 = one per core, 1 = in-process)', 256),
    batch_size: Int(256, 1, 'records per worker batch', 65536),
    max_examples: Int(5, 0, 'examples per stage in the report', 100),
    max_example_chars: Int(200, 16, 'characters per example text in the report', 10000),
  },
  { $id: 'flywheel.data.PipelineConfig', default: {}, additionalProperties: false },
);

/** The fully defaulted configuration. */
export type PipelineConfig = Static<typeof PipelineConfigSchema>;

type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** A config as a caller may send it: any part may be left out and takes its default. */
export type PipelineConfigInput = DeepPartial<PipelineConfig>;

export class PipelineConfigError extends Error {
  override name = 'PipelineConfigError';
  readonly issues: string[];
  constructor(issues: string[]) {
    super(`invalid pipeline config: ${issues.join('; ')}`);
    this.issues = issues;
  }
}
export const isPipelineConfigError = (e: unknown): e is PipelineConfigError => e instanceof PipelineConfigError;

/** Fills defaults and validates; throws PipelineConfigError naming each bad path. Does not mutate its input. */
export function resolveConfig(input: unknown = {}): PipelineConfig {
  const value = Value.Default(PipelineConfigSchema, structuredClone(input ?? {}));
  const issues = [...Value.Errors(PipelineConfigSchema, value)].map((e) => `${e.path || '/'}: ${e.message}`);
  if (issues.length > 0) throw new PipelineConfigError(issues.slice(0, 10));
  const cfg = value as PipelineConfig;
  const sum = cfg.split.train + cfg.split.val + cfg.split.test;
  if (Math.abs(sum - 1) > 1e-9) issues.push(`/split: train + val + test must be 1, got ${sum}`);
  if (cfg.length.min_tokens > cfg.length.max_tokens) issues.push('/length: min_tokens > max_tokens');
  if (cfg.quality.min_mean_word_length > cfg.quality.max_mean_word_length)
    issues.push('/quality: min_mean_word_length > max_mean_word_length');
  if (issues.length > 0) throw new PipelineConfigError(issues);
  return cfg;
}
