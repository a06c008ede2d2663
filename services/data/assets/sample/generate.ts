// Generates sample.jsonl, the bundled sample corpus (seeded, reproducible):
//   node services/data/assets/sample/generate.ts > services/data/assets/sample/sample.jsonl
// English and Chinese prose, prompt/completion pairs, and planted exact
// duplicates, near-duplicates, junk, personal data and invalid UTF-8 marks.
import { chineseDoc, englishDoc, englishSentence, perturb, rng } from '../../src/pipeline/corpus.ts';

const r = rng(20261122);
const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const digits = (n: number) => Array.from({ length: n }, () => int(0, 9)).join('');
const sources = ['web', 'books', 'forum'] as const;

function luhnComplete(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = Number(body[body.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}
function cnId(): string {
  const W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const body = `110105${int(1950, 2005)}${String(int(1, 12)).padStart(2, '0')}${String(int(1, 28)).padStart(2, '0')}${digits(3)}`;
  const s = [...body].reduce((acc, c, i) => acc + Number(c) * W[i]!, 0);
  return body + '10X98765432'[s % 11]!;
}
const pii = () => {
  const kinds = [
    () => `Write to ${['anna', 'j.smith', 'li.wei', 'ops-team'][int(0, 3)]}@${['example.com', 'mail.example.org', 'corp.example.net'][int(0, 2)]} for details.`,
    () => `Call me on +44 20 7946 ${digits(4)} or (${int(201, 989)}) 555-${digits(4)} after six.`,
    () => `My card number is ${luhnComplete('4' + digits(14)).replace(/(\d{4})(?=\d)/g, '$1 ')} and it expires soon.`,
    () => `Please transfer the deposit to IBAN GB82 WEST 1234 5698 7654 32 before Friday.`,
    () => `The form asked for the SSN ${int(100, 599)}-${int(10, 99)}-${int(1000, 9999)} and a signature.`,
    () => `The server at 192.168.${int(0, 255)}.${int(1, 254)} and 2001:db8::${int(1, 99)} stopped answering.`,
    () => `His National Insurance number is AB ${digits(2)} ${digits(2)} ${digits(2)} C, he said.`,
  ];
  return kinds[int(0, kinds.length - 1)]!();
};

type Out = { text?: string; prompt?: string; completion?: string; source: string; lang: string };
const out: Out[] = [];
const en = (bytes: number) => englishDoc(r, bytes);
for (let i = 0; i < 1800; i++) out.push({ text: en(int(300, 1500)), source: sources[int(0, 2)]!, lang: 'en' });
for (let i = 0; i < 300; i++) out.push({ text: chineseDoc(r, int(8, 20)), source: sources[int(0, 2)]!, lang: 'zh' });
for (let i = 0; i < 300; i++)
  out.push({ prompt: `Summarise the following note.\n\n${en(int(200, 600))}`, completion: englishSentence(r) + ' ' + englishSentence(r), source: 'sft', lang: 'en' });
// Planted duplicates of earlier records.
for (let i = 0; i < 150; i++) out.push({ ...out[int(0, 2000)]! });
for (let i = 0; i < 150; i++) {
  const base = out[int(0, 1799)]!;
  out.push({ ...base, text: perturb(r, base.text!, int(1, 2)) });
}
// Personal data inside otherwise good documents (English and Chinese).
for (let i = 0; i < 120; i++) out.push({ text: `${en(int(200, 600))} ${pii()} ${englishSentence(r)}`, source: 'forum', lang: 'en' });
for (let i = 0; i < 30; i++)
  out.push({ text: `${chineseDoc(r, 6)}我的手机号是1${int(3, 9)}${digits(9)}，身份证号${cnId()}，邮箱wang${digits(3)}@example.cn。${chineseDoc(r, 6)}`, source: 'forum', lang: 'zh' });
// Junk.
const junk = [
  () => `Lorem ipsum dolor sit amet, consectetur adipiscing elit. ${en(300)}`,
  () => Array.from({ length: 12 }, () => 'Click here to subscribe to our newsletter!').join('\n'),
  () => Array.from({ length: 40 }, () => `#${['sale', 'deal', 'win', 'free'][int(0, 3)]}`).join(' '),
  () => Array.from({ length: 15 }, () => `• ${englishSentence(r).slice(0, 30)}...`).join('\n'),
  () => 'ok thanks',
  () => Array.from({ length: 60 }, () => `${digits(3)} ${digits(2)}`).join(' '),
  () => Array.from({ length: 20 }, () => 'buy cheap watches online now').join(' '),
];
for (let i = 0; i < 120; i++) out.push({ text: junk[int(0, junk.length - 1)]!(), source: 'web', lang: 'en' });
// Text the parser decoded from invalid UTF-8 (U+FFFD) and text needing NFC.
for (let i = 0; i < 10; i++) out.push({ text: `${en(400)} caf\uFFFD au lait`, source: 'web', lang: 'en' });
for (let i = 0; i < 10; i++) out.push({ text: `${en(400)} The cafe\u0301 on the corner was na\u0131\u0308ve.`, source: 'web', lang: 'en' });

// Deterministic shuffle, so planted records are spread through the file.
for (let i = out.length - 1; i > 0; i--) {
  const j = Math.floor(r() * (i + 1));
  [out[i], out[j]] = [out[j]!, out[i]!];
}
for (const o of out) process.stdout.write(`${JSON.stringify(o)}\n`);
