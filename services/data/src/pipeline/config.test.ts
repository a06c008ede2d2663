import { describe, expect, it } from 'vitest';
import { PipelineConfigError, resolveConfig } from './config.ts';

describe('config', () => {
  it('config - fills every default', () => {
    const c = resolveConfig({});
    expect(c.length).toEqual({ enabled: true, min_tokens: 32, max_tokens: 2048 });
    expect(c.dedup.threshold).toBe(0.85);
    expect(c.dedup.num_perm).toBe(128);
    expect(c.split).toMatchObject({ train: 0.8, val: 0.1, test: 0.1 });
    expect(c.normalise.utf8).toBe('repair');
    expect(c.perplexity.enabled).toBe(false);
    expect(c.quality.max_top_ngram_char_fraction.n2).toBe(0.2);
  });

  it('config - keeps given values and does not mutate the input', () => {
    const input = { dedup: { threshold: 0.7 }, split: { train: 0.5, val: 0.25, test: 0.25, stratify_by: 'lang' } };
    const copy = structuredClone(input);
    const c = resolveConfig(input);
    expect(c.dedup.threshold).toBe(0.7);
    expect(c.dedup.num_perm).toBe(128);
    expect(c.split.stratify_by).toBe('lang');
    expect(input).toEqual(copy);
  });

  it('config - rejects bad values naming the path', () => {
    expect(() => resolveConfig({ dedup: { threshold: 1.5 } })).toThrow(/\/dedup\/threshold/);
    expect(() => resolveConfig({ length: { min_tokens: 'x' } })).toThrow(PipelineConfigError);
    expect(() => resolveConfig({ nope: 1 })).toThrow(PipelineConfigError);
    expect(() => resolveConfig({ normalise: { utf8: 'ignore' } })).toThrow(/utf8/);
    expect(() => resolveConfig({ pii: { kinds: ['email', 'passport'] } })).toThrow(/kinds/);
  });

  it('config - rejects inconsistent combinations', () => {
    expect(() => resolveConfig({ split: { train: 0.9, val: 0.1, test: 0.1 } })).toThrow(/must be 1/);
    expect(() => resolveConfig({ length: { min_tokens: 100, max_tokens: 10 } })).toThrow(/min_tokens > max_tokens/);
  });
});
