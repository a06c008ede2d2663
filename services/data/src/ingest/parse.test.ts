import { describe, expect, it } from 'vitest';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { detectFormat, parseInput } from './parse.ts';
import type { InputFormat, ParsedItem, ParseOptions } from './types.ts';

const opts: ParseOptions = { maxRecordBytes: 1024, utf8: 'repair', textField: 'text', textSplit: 'paragraph' };

async function* chunks(...parts: (string | Buffer)[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield typeof p === 'string' ? Buffer.from(p) : p;
}

async function collect(format: InputFormat, data: Buffer | string, o: Partial<ParseOptions> = {}): Promise<ParsedItem[]> {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const out: ParsedItem[] = [];
  const input = {
    stream: () => chunks(buf.subarray(0, 7), buf.subarray(7)), // split mid-record on purpose
    random: async () => ({
      byteLength: buf.length,
      read: async (s: number, e: number) => buf.buffer.slice(buf.byteOffset + s, buf.byteOffset + e) as ArrayBuffer,
    }),
  };
  for await (const item of parseInput(format, input, { ...opts, ...o })) out.push(item);
  return out;
}

const records = (items: ParsedItem[]) => items.flatMap((i) => (i.kind === 'record' ? [i.record] : []));
const quarantined = (items: ParsedItem[]) => items.flatMap((i) => (i.kind === 'quarantine' ? [i.entry] : []));

describe('parse', () => {
  it('parse - jsonl keeps good lines and quarantines malformed ones with the line number', async () => {
    const items = await collect(
      'jsonl',
      '{"text":"hello","lang":"en"}\n{"text": broken\n\n{"prompt":"q","completion":"a"}\n[1,2]\n{"body":"x"}\r\n',
    );
    expect(records(items)).toEqual([
      { id: '1', text: 'hello', fields: { lang: 'en' } },
      { id: '4', prompt: 'q', completion: 'a', fields: {} },
    ]);
    const q = quarantined(items);
    expect(q.map((e) => e.ref)).toEqual(['line 2', 'line 5', 'line 6']);
    expect(q[0]!.reason).toMatch(/malformed JSON/);
    expect(q[1]!.reason).toMatch(/must be an object/);
    expect(q[2]!.reason).toMatch(/no "text" field/);
  });

  it('parse - invalid UTF-8 is repaired or rejected by policy', async () => {
    const bad = Buffer.concat([Buffer.from('{"text":"caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]);
    const repaired = records(await collect('jsonl', bad));
    expect(repaired[0]!.text).toContain('\uFFFD');
    expect(repaired[0]!.fields['_utf8Repaired']).toBe(true);
    const rejected = await collect('jsonl', bad, { utf8: 'reject' });
    expect(records(rejected)).toHaveLength(0);
    expect(quarantined(rejected)[0]!.reason).toMatch(/invalid UTF-8/);
  });

  it('parse - an oversized line is quarantined and the following lines survive', async () => {
    const items = await collect('jsonl', `{"text":"${'x'.repeat(5000)}"}\n{"text":"after"}\n`);
    expect(quarantined(items)[0]!.reason).toMatch(/exceeds the record limit/);
    expect(records(items).map((r) => r.text)).toEqual(['after']);
  });

  it('parse - a single 100 MB line is skipped in bounded memory', async () => {
    const mb = Buffer.alloc(1 << 20, 0x61);
    async function* huge(): AsyncGenerator<Buffer> {
      yield Buffer.from('{"text":"');
      for (let i = 0; i < 100; i++) yield mb;
      yield Buffer.from('"}\n{"text":"next"}\n');
    }
    const before = process.memoryUsage().rss;
    let peak = before;
    const out: ParsedItem[] = [];
    for await (const it of parseInput('jsonl', { stream: huge, random: () => Promise.reject(new Error('unused')) }, { ...opts, maxRecordBytes: 1 << 20 })) {
      out.push(it);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(quarantined(out)[0]!.reason).toMatch(/104857\d+ bytes exceeds/);
    expect(records(out).map((r) => r.text)).toEqual(['next']);
    expect(peak - before).toBeLessThan(50 * (1 << 20));
  });

  it('parse - csv maps columns, keeps extra fields, quarantines rows without text', async () => {
    const items = await collect('csv', 'text,label\n"hello, world",a\n"multi\nline",b\n,c\n');
    expect(records(items)).toEqual([
      { id: '2', text: 'hello, world', fields: { label: 'a' } },
      { id: '3', text: 'multi\nline', fields: { label: 'b' } },
      { id: '4', text: '', fields: { label: 'c' } },
    ]);
  });

  it('parse - csv with an unbalanced quote fails the input with a clear error', async () => {
    await expect(collect('csv', 'text\n"never closed\n')).rejects.toThrow(/CSV could not be parsed/);
  });

  it('parse - parquet rows become records', async () => {
    const buf = Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'text', data: ['one', 'two', 'three'], type: 'STRING' },
          { name: 'label', data: ['x', 'y', 'z'], type: 'STRING' },
        ],
        rowGroupSize: 2,
      }),
    );
    expect(records(await collect('parquet', buf)).map((r) => [r.id, r.text, r.fields['label']])).toEqual([
      ['1', 'one', 'x'],
      ['2', 'two', 'y'],
      ['3', 'three', 'z'],
    ]);
    await expect(collect('parquet', Buffer.from('not parquet at all'))).rejects.toThrow(/not a readable Parquet/);
  });

  it('parse - plain text splits on blank lines, per line, or not at all', async () => {
    const txt = 'first para\nstill first\n\n\nsecond\n';
    expect(records(await collect('text', txt)).map((r) => r.text)).toEqual(['first para\nstill first', 'second']);
    expect(records(await collect('text', txt, { textSplit: 'line' })).map((r) => r.text)).toEqual([
      'first para',
      'still first',
      'second',
    ]);
    expect(records(await collect('text', txt, { textSplit: 'file' }))).toHaveLength(1);
  });

  it('parse - format detection uses the name, then the bytes', () => {
    expect(detectFormat('a.jsonl', Buffer.alloc(0))).toBe('jsonl');
    expect(detectFormat(undefined, Buffer.from('PAR1xxxx'))).toBe('parquet');
    expect(detectFormat(undefined, Buffer.from('  {"text":1}'))).toBe('jsonl');
    expect(detectFormat('notes', Buffer.from('hello'))).toBe('text');
  });
});
