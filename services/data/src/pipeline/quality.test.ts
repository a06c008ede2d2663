import { describe, expect, it } from 'vitest';
import { resolveConfig } from './config.ts';
import { chineseDoc, englishDoc, rng } from './corpus.ts';
import { applyC4, checkQuality } from './quality.ts';

const q = resolveConfig({}).quality;
const good = englishDoc(rng(7), 1500);

describe('quality', () => {
  it('quality - keeps ordinary English and Chinese prose', () => {
    expect(checkQuality(good, q)).toEqual({ ok: true });
    expect(checkQuality(chineseDoc(rng(3), 20), q)).toEqual({ ok: true });
    expect(checkQuality('I think that the answer is yes, and the reason is simple.', q)).toEqual({ ok: true });
  });

  it('quality - drops repeated lines and paragraphs', () => {
    const lines = Array.from({ length: 10 }, () => 'Click here to subscribe to the newsletter today.').join('\n');
    expect(checkQuality(lines, q)).toEqual({ ok: false, reason: 'dup_line_fraction' });
    const paras = ['The cat sat on the mat and it was happy.', 'The cat sat on the mat and it was happy.', 'Then it left.'].join('\n\n');
    expect(checkQuality(paras, { ...q, max_dup_line_fraction: 1, max_dup_line_char_fraction: 1 })).toEqual({ ok: false, reason: 'dup_para_fraction' });
  });

  it('quality - drops a dominant word n-gram and duplicated long n-grams', () => {
    const spam = `${'buy cheap watches online now '.repeat(20)}`;
    expect(checkQuality(spam, q)).toMatchObject({ ok: false, reason: 'top_2gram_char_fraction' });
    const s = 'the engineer carefully explained how the old bridge was rebuilt after the storm of last year';
    const text = `${s}. I was there and saw it. ${s}. Everyone agreed with the plan.`;
    expect(checkQuality(text, q)).toMatchObject({ ok: false, reason: expect.stringMatching(/gram_char_fraction/) });
  });

  it('quality - drops symbol spam, bullet lists and ellipsis lines', () => {
    expect(checkQuality('#sale #deal #win #free the of and to be #now', q)).toEqual({ ok: false, reason: 'symbol_word_ratio' });
    const bullets = Array.from({ length: 10 }, (_, i) => `• item number ${i} is on the list for the shop`).join('\n');
    expect(checkQuality(bullets, q)).toEqual({ ok: false, reason: 'bullet_lines' });
    const ell = Array.from({ length: 5 }, (_, i) => `The story of the river number ${i} continues in the next issue...`).join('\n');
    expect(checkQuality(ell, { ...q, max_symbol_word_ratio: 1 })).toEqual({ ok: false, reason: 'ellipsis_lines' });
  });

  it('quality - checks stop words, word length and alphabetic words for Latin text only', () => {
    expect(checkQuality('Quarterly revenue grew strongly; margins improved; guidance raised.', q)).toEqual({ ok: false, reason: 'stop_words' });
    expect(checkQuality('a b c d e f of the to and in is it', q)).toEqual({ ok: false, reason: 'mean_word_length' });
    expect(checkQuality('the 1234 5678 9012 3456 7890 and 1111 2222 of 3333 4444', q)).toEqual({ ok: false, reason: 'alpha_word_fraction' });
    expect(checkQuality('Дом стоит на берегу реки уже много лет подряд.', q)).toEqual({ ok: true });
    expect(checkQuality('Quarterly revenue grew strongly.', { ...q, min_stop_words: 0 })).toEqual({ ok: true });
  });

  it('quality - repetition-only mode (prompt/completion pairs) keeps code and lists but not loops', () => {
    const code = 'Q: sum a list in Python?\n\nx = [1, 2, 3]\n# total\nprint(sum(x) + 2 * 3)  # 12';
    expect(checkQuality(code, q)).toMatchObject({ ok: false });
    expect(checkQuality(code, q, true)).toEqual({ ok: true });
    const list = ['- preheat the oven', '- mix flour and sugar', '- add two eggs', '- pour into a tin', '- bake for an hour', '- let it cool'].join('\n');
    expect(checkQuality(list, q, true)).toEqual({ ok: true });
    const loop = `Answer: ${'I am not sure. '.repeat(12)}`;
    expect(checkQuality(loop, q, true)).toMatchObject({ ok: false, reason: expect.stringMatching(/gram_char_fraction/) });
  });

  it('quality - C4 filters drop lorem ipsum documents and configured lines', () => {
    expect(applyC4('Lorem ipsum dolor sit amet.', q.c4)).toEqual({ reason: 'c4_lorem_ipsum' });
    expect(applyC4('const x = { a: 1 };', { ...q.c4, drop_curly_brace: true })).toEqual({ reason: 'c4_curly_brace' });
    expect(applyC4('function f() { return 1; }', q.c4)).toEqual({ text: 'function f() { return 1; }', changed: [] });
    const c4 = { ...q.c4, drop_javascript_lines: true, drop_lines_without_terminal_punct: true, drop_policy_lines: true };
    const page = 'The bridge opened in May.\nPlease enable JavaScript to continue.\nRead our privacy policy.\nMenu\nIt was busy all week!';
    expect(applyC4(page, c4)).toEqual({
      text: 'The bridge opened in May.\nIt was busy all week!',
      changed: ['c4_javascript_line', 'c4_policy_line', 'c4_no_terminal_punct'],
    });
    expect(applyC4('Menu\nHome', c4)).toEqual({ reason: 'c4_no_lines_left' });
  });
});
