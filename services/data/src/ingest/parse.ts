/**
 * Streaming parsers for JSONL, CSV, Parquet and plain text. Each yields
 * records or quarantine entries one at a time; none holds more than one
 * record (or one Parquet row group) in memory.
 */
import { isUtf8 } from 'node:buffer';
import { pipeline } from 'node:stream/promises';
import { parse as csvParse, type Options as CsvOptions } from 'csv-parse';
import { parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { splitLines } from './lines.ts';
import {
  InputError,
  type InputFormat,
  type ParsedItem,
  type ParseOptions,
  type RandomAccessSource,
  type SourceRecord,
} from './types.ts';

const SAMPLE_CHARS = 120;

/** Guesses a format from a file name, then from the first bytes. */
export function detectFormat(name: string | undefined, head: Buffer): InputFormat {
  const lower = (name ?? '').toLowerCase();
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return 'jsonl';
  if (lower.endsWith('.csv')) return 'csv';
  if (lower.endsWith('.parquet')) return 'parquet';
  if (lower.endsWith('.txt') || lower.endsWith('.md')) return 'text';
  if (head.subarray(0, 4).toString('latin1') === 'PAR1') return 'parquet';
  const first = head.toString('utf8').trimStart();
  if (first.startsWith('{')) return 'jsonl';
  return 'text';
}

/** Decodes bytes by the UTF-8 policy; `undefined` means the record must be rejected. */
function decode(bytes: Buffer, policy: ParseOptions['utf8']): { text: string; repaired: boolean } | undefined {
  if (isUtf8(bytes)) return { text: bytes.toString('utf8'), repaired: false };
  if (policy === 'reject') return undefined;
  return { text: bytes.toString('utf8'), repaired: true };
}

const sampleOf = (b: Buffer | string) =>
  (typeof b === 'string' ? b : b.subarray(0, SAMPLE_CHARS * 4).toString('utf8')).slice(0, SAMPLE_CHARS);

/** Maps one object (JSON line, CSV row, Parquet row) onto the source record shape. */
export function toRecord(id: string, obj: Record<string, unknown>, textField: string): SourceRecord | string {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (k !== textField && k !== 'prompt' && k !== 'completion') fields[k] = v;
  const text = obj[textField];
  const { prompt, completion } = obj;
  if (typeof prompt === 'string' && typeof completion === 'string') return { id, prompt, completion, fields };
  if (prompt !== undefined || completion !== undefined)
    return 'a record with prompt must have completion too, both strings';
  if (typeof text === 'string') return { id, text, fields };
  if (text === undefined) return `no "${textField}" field, and no prompt/completion pair`;
  return `"${textField}" must be a string, got ${text === null ? 'null' : typeof text}`;
}

async function* parseJsonl(source: AsyncIterable<Buffer>, o: ParseOptions): AsyncGenerator<ParsedItem> {
  for await (const item of splitLines(source, o.maxRecordBytes)) {
    const ref = `line ${item.lineNo}`;
    if (item.kind === 'oversized') {
      yield quarantine(ref, `line of ${item.size} bytes exceeds the record limit of ${o.maxRecordBytes} bytes`, '');
      continue;
    }
    if (item.bytes.length === 0 || /^\s*$/.test(item.bytes.toString('latin1'))) continue;
    const decoded = decode(item.bytes, o.utf8);
    if (!decoded) {
      yield quarantine(ref, 'invalid UTF-8 (policy: reject)', sampleOf(item.bytes));
      continue;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(decoded.text);
    } catch (e) {
      yield quarantine(ref, `malformed JSON: ${(e as Error).message}`, sampleOf(decoded.text));
      continue;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      yield quarantine(ref, 'a JSON line must be an object', sampleOf(decoded.text));
      continue;
    }
    yield fromObject(String(item.lineNo), ref, obj as Record<string, unknown>, o, decoded.repaired);
  }
}

async function* parseText(source: AsyncIterable<Buffer>, o: ParseOptions): AsyncGenerator<ParsedItem> {
  // Paragraph mode gathers lines until a blank one; `file` mode the whole input
  // (bounded by maxRecordBytes like any record).
  let para: Buffer[] = [];
  let paraBytes = 0;
  let startLine = 1;
  let oversized = false;
  const flush = function* (): Generator<ParsedItem> {
    if (para.length === 0 && !oversized) return;
    const ref = `line ${startLine}`;
    if (oversized) {
      yield quarantine(ref, `document exceeds the record limit of ${o.maxRecordBytes} bytes`, '');
    } else {
      const bytes = Buffer.concat(para);
      const decoded = decode(bytes, o.utf8);
      if (!decoded) yield quarantine(ref, 'invalid UTF-8 (policy: reject)', sampleOf(bytes));
      else if (decoded.text.trim().length > 0)
        yield fromObject(String(startLine), ref, { [o.textField]: decoded.text }, o, decoded.repaired);
    }
    para = [];
    paraBytes = 0;
    oversized = false;
  };
  for await (const item of splitLines(source, o.maxRecordBytes)) {
    if (item.kind === 'line' && o.textSplit !== 'file' && item.bytes.toString('latin1').trim() === '') {
      yield* flush();
      startLine = item.lineNo + 1;
      continue;
    }
    if (para.length === 0 && !oversized) startLine = item.lineNo;
    if (item.kind === 'oversized' || paraBytes + (item.kind === 'line' ? item.bytes.length + 1 : 0) > o.maxRecordBytes) {
      oversized = true;
      para = [];
      paraBytes = 0;
    } else if (!oversized) {
      if (para.length > 0) para.push(Buffer.from('\n'));
      para.push(item.bytes);
      paraBytes += item.bytes.length + 1;
    }
    if (o.textSplit === 'line') {
      yield* flush();
      startLine = item.lineNo + 1;
    }
  }
  yield* flush();
}

async function* parseCsv(source: AsyncIterable<Buffer>, o: ParseOptions): AsyncGenerator<ParsedItem> {
  const parser = csvParse({
    columns: (header: unknown[]) => header.map((h) => String(h)),
    bom: true,
    skip_empty_lines: true,
    relax_column_count: false,
    max_record_size: o.maxRecordBytes,
    info: true,
    encoding: null as unknown as BufferEncoding, // keep raw bytes so the UTF-8 policy can see them
    cast: false,
  } as unknown as CsvOptions);
  // pipeline() forwards a source error into the parser and ends it properly.
  const feed = pipeline(source, parser).catch(() => undefined);
  let row = 1;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, Buffer | string>; info: { lines: number } }>) {
      row++;
      const ref = `row ${row} (line ${info.lines})`;
      const obj: Record<string, unknown> = {};
      let repaired = false;
      let rejected = false;
      for (const [k, v] of Object.entries(record)) {
        const d = decode(Buffer.isBuffer(v) ? v : Buffer.from(String(v)), o.utf8);
        if (!d) rejected = true;
        else {
          obj[k] = d.text;
          repaired ||= d.repaired;
        }
      }
      if (rejected) yield quarantine(ref, 'invalid UTF-8 (policy: reject)', '');
      else yield fromObject(String(row), ref, obj, o, repaired);
    }
  } catch (e) {
    throw new InputError(`CSV could not be parsed after row ${row}: ${(e as Error).message}`, { cause: e });
  } finally {
    await feed;
  }
}

async function* parseParquet(file: RandomAccessSource, o: ParseOptions): AsyncGenerator<ParsedItem> {
  const asyncBuffer = { byteLength: file.byteLength, slice: (s: number, e?: number) => file.read(s, e ?? file.byteLength) };
  let meta;
  try {
    meta = await parquetMetadataAsync(asyncBuffer);
  } catch (e) {
    throw new InputError(`not a readable Parquet file: ${(e as Error).message}`, { cause: e });
  }
  // One row group at a time keeps memory at the size of the largest group.
  let rowStart = 0;
  for (const group of meta.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    const rows = (await parquetReadObjects({ file: asyncBuffer, metadata: meta, rowStart, rowEnd })) as Record<string, unknown>[];
    for (let i = 0; i < rows.length; i++) {
      const n = rowStart + i + 1;
      yield fromObject(String(n), `row ${n}`, rows[i]!, o, false);
    }
    rowStart = rowEnd;
  }
}

function fromObject(id: string, ref: string, obj: Record<string, unknown>, o: ParseOptions, repaired: boolean): ParsedItem {
  const rec = toRecord(id, obj, o.textField);
  if (typeof rec === 'string') return quarantine(ref, rec, sampleOf(JSON.stringify(obj)));
  if (repaired) rec.fields['_utf8Repaired'] = true;
  return { kind: 'record', record: rec };
}

const quarantine = (ref: string, reason: string, sample: string): ParsedItem => ({
  kind: 'quarantine',
  entry: { ref, reason, sample },
});

/**
 * Parses a stored upload. Streaming formats read `stream()`; Parquet needs
 * random access and reads `random()`.
 */
export function parseInput(
  format: InputFormat,
  input: { stream: () => AsyncIterable<Buffer>; random: () => Promise<RandomAccessSource> },
  options: ParseOptions,
): AsyncGenerator<ParsedItem> {
  switch (format) {
    case 'jsonl':
      return parseJsonl(input.stream(), options);
    case 'csv':
      return parseCsv(input.stream(), options);
    case 'text':
      return parseText(input.stream(), options);
    case 'parquet':
      return (async function* () {
        yield* parseParquet(await input.random(), options);
      })();
  }
}
