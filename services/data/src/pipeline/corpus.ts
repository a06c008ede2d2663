/**
 * Seeded synthetic text for tests, benchmarks and the bundled sample corpus:
 * English prose from a small grammar with a few hundred words, Chinese
 * sentences from phrase lists, and helpers that plant near-duplicates at a
 * chosen word-level edit rate. Not part of the public API.
 */
import { splitmix32 } from './minhash.ts';

const W = {
  adj: 'quiet bright early careful modern ancient simple complex narrow broad gentle rapid distant local sudden steady curious formal rural urban coastal northern southern wooden golden silent patient honest clever famous humble ordinary unusual practical abstract musical hidden open crowded empty fragile sturdy tired eager warm cold'.split(' '),
  noun: 'river teacher engine garden library village market student painter harbour mountain window kitchen council farmer bridge journey question letter museum doctor orchard forest factory valley island station theory method lesson recipe signal planet author reader machine network surface pattern island meadow carpenter sailor novel harvest museum ledger lantern compass blanket chimney'.split(' '),
  verb: 'crossed repaired described noticed painted measured followed visited explained collected built opened studied watched carried improved reviewed tested shared protected designed finished remembered discovered questioned planted'.split(' '),
  prep: 'near behind across beyond beside under above along through around toward'.split(' '),
  adv: 'slowly quickly carefully quietly happily rarely often gently openly boldly'.split(' '),
  conn: 'However, Meanwhile, Later, In the morning, After a while, By evening, Because of this, For that reason, In the end, At first,'.split(', ').map((s) => s.replace(/,$/, '')),
  name: 'Alice Bruno Chen Dara Elena Farid Grace Hiro Ines Jonas Kofi Lena Mateo Nadia Omar Priya'.split(' '),
};

const ZH = [
  '今天的天气非常好', '我们在河边散步', '老师认真地讲解了这个问题', '图书馆里有很多新书', '他每天早上都去公园跑步',
  '这个城市的交通越来越方便', '农民们正在收获稻谷', '孩子们在操场上玩耍', '研究人员发表了新的论文', '市场上的水果很新鲜',
  '她喜欢在周末画画', '我们需要更多的时间来讨论', '这座桥是去年修建的', '工程师正在检查机器', '山上的风景十分美丽',
  '学生们准备参加考试', '医生建议他多休息', '博物馆展出了古代的文物', '火车站的人很多', '厨房里飘出饭菜的香味',
  '作者花了三年时间写这本小说', '村子里新开了一家商店', '大家对这个计划都很满意', '港口停着许多渔船', '晚上的星空格外明亮',
];

export type Rng = () => number;
export const rng = (seed: number): Rng => {
  const next = splitmix32(seed);
  return () => next() / 0x100000000;
};
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

export function englishSentence(r: Rng): string {
  const forms = [
    () => `The ${pick(r, W.adj)} ${pick(r, W.noun)} ${pick(r, W.verb)} the ${pick(r, W.noun)} ${pick(r, W.prep)} the ${pick(r, W.adj)} ${pick(r, W.noun)}.`,
    () => `${pick(r, W.name)} ${pick(r, W.adv)} ${pick(r, W.verb)} a ${pick(r, W.adj)} ${pick(r, W.noun)} and then ${pick(r, W.verb)} it with the ${pick(r, W.noun)}.`,
    () => `${pick(r, W.conn)}, the ${pick(r, W.noun)} was ${pick(r, W.adj)} because ${pick(r, W.name)} had ${pick(r, W.verb)} the ${pick(r, W.noun)}.`,
    () => `Why was the ${pick(r, W.noun)} so ${pick(r, W.adj)} when ${pick(r, W.name)} ${pick(r, W.verb)} it ${pick(r, W.prep)} the ${pick(r, W.noun)}?`,
    () => `It is ${pick(r, W.adj)} to see how the ${pick(r, W.noun)} of this ${pick(r, W.noun)} has ${pick(r, W.verb)} so many ${pick(r, W.noun)}s.`,
  ];
  return pick(r, forms)();
}

/** English prose of about `bytes` bytes in paragraphs of 3-6 sentences. */
export function englishDoc(r: Rng, bytes: number): string {
  const paras: string[] = [];
  let len = 0;
  while (len < bytes) {
    const n = 3 + Math.floor(r() * 4);
    const p = Array.from({ length: n }, () => englishSentence(r)).join(' ');
    paras.push(p);
    len += p.length + 2;
  }
  return paras.join('\n\n');
}

export function chineseDoc(r: Rng, sentences: number): string {
  return Array.from({ length: sentences }, () => `${pick(r, ZH)}${r() < 0.3 ? '，' + pick(r, ZH) : ''}。`).join('');
}

/**
 * A near-duplicate: replaces words at random positions with `edits`
 * replacements (the word-level edit rate sets the shingle Jaccard).
 */
export function perturb(r: Rng, text: string, edits: number): string {
  const words = text.split(' ');
  for (let e = 0; e < edits; e++) {
    const i = Math.floor(r() * words.length);
    words[i] = pick(r, [...W.noun, ...W.adj]);
  }
  return words.join(' ');
}

/** Exact Jaccard of word n-gram sets (lower-cased, letters and digits) — the reference for the MinHash estimate. */
export function exactJaccard(a: string, b: string, n = 5): number {
  const grams = (t: string) => {
    const w = t.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((x) => x.length > 0);
    const s = new Set<string>();
    for (let i = 0; i + n <= w.length; i++) s.add(w.slice(i, i + n).join(' '));
    if (w.length > 0 && w.length < n) s.add(w.join(' '));
    return s;
  };
  const x = grams(a);
  const y = grams(b);
  let inter = 0;
  for (const g of x) if (y.has(g)) inter++;
  const union = x.size + y.size - inter;
  return union === 0 ? 1 : inter / union;
}
