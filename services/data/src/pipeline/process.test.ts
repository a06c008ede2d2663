import { describe, expect, it } from 'vitest';
import { resolveConfig, type PipelineConfigInput } from './config.ts';
import { englishDoc, rng } from './corpus.ts';
import { createRecordProcessor } from './process.ts';

const proc = (c: PipelineConfigInput = {}) => createRecordProcessor(resolveConfig({ length: { enabled: false }, tokenise: { enabled: false }, ...c }), undefined);

describe('process', () => {
  it('process - a kept record carries its JSON line, keys, signature and snippet', () => {
    const text = englishDoc(rng(1), 600);
    const p = proc()({ id: '7', text, fields: { lang: 'en' } });
    expect(p.dropped).toBeUndefined();
    expect(JSON.parse(p.json!)).toEqual({ id: '7', text, fields: { lang: 'en' } });
    expect(p.signature).toHaveLength(128);
    expect(p.exactKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(Number.isSafeInteger(p.splitKey)).toBe(true);
    expect(p.snippet!.length).toBeLessThanOrEqual(201);
  });

  it('process - quality.pairs picks the checks for prompt/completion records', () => {
    const pair = { id: '1', prompt: 'Fix this:', completion: 'function f() { return [1, 2, 3].map((x) => x * 2); }', fields: {} };
    expect(proc()(pair).dropped).toBeUndefined(); // repetition only
    expect(proc({ quality: { pairs: 'all' } })(pair)).toMatchObject({ dropped: 'quality' });
    const loop = { id: '2', prompt: 'Say something.', completion: 'I do not know. '.repeat(15), fields: {} };
    expect(proc()(loop)).toMatchObject({ dropped: 'quality' });
    expect(proc({ quality: { pairs: 'none' } })(loop).dropped).toBeUndefined();
    const curly = { ...pair, completion: `${englishDoc(rng(2), 300)} {}` };
    expect(proc({ quality: { c4: { drop_curly_brace: true } } })(curly).dropped).toBeUndefined();
  });

  it('process - an invalid-UTF-8 record rejected from bytes shows its decoded text, redacted', () => {
    const bytes = Buffer.concat([Buffer.from('mail a.b@example.com now '), Buffer.from([0xff])]);
    const p = proc({ normalise: { utf8: 'reject' } })({ id: '3', text: bytes, fields: {} });
    expect(p.dropped).toBe('normalise');
    expect(p.events[0]).toMatchObject({ reason: 'invalid_utf8', before: 'mail <EMAIL> now \uFFFD' });
  });
});
