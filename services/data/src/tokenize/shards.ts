/**
 * Token shard writer and reader (format: docs/formats.md, FWSHARD1).
 *
 * Tokens stream to a temporary body file while doc offsets and prompt
 * lengths stay in memory (8 + 4 bytes per document); closing a shard writes
 * header + tables + body into a temporary file, hashes it and renames it into
 * place, so a crash never leaves a half-written shard under its final name.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { CleanRecord, ShardInfo, SplitName } from '../pipeline/types.ts';
import type { TextTokenizer } from './tokenizer.ts';

export const SHARD_MAGIC = 'FWSHARD1';
export const SHARD_VERSION = 1;
export const HEADER_BYTES = 64;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('token shards are written on little-endian hosts only');

export interface ShardWriteOptions {
  /** Max tokens per shard file; a document never spans two shards. */
  maxTokensPerShard?: number;
  /** File name prefix inside outDir (default: the split name). */
  prefix?: string;
  /**
   * Where finished shards go, instead of staying in outDir: called once per
   * closed shard with its file name and local path; returns the location to
   * report (an artifact URI, say). The local file is removed afterwards.
   */
  sink?: (name: string, localPath: string) => Promise<string>;
}

/** A record routed to a split, as writeShards consumes them. */
export interface ShardedRecord {
  split: SplitName;
  record: CleanRecord;
}

/** Token ids of one document, EOS appended; promptLen = leading prompt tokens (0 for plain text). */
export function encodeRecord(tk: TextTokenizer, r: CleanRecord): { ids: number[]; promptLen: number } {
  if ('prompt' in r) {
    const p = tk.encode(r.prompt);
    const c = tk.encode(r.completion);
    return { ids: [...p, ...c, tk.eosId], promptLen: p.length };
  }
  const ids = tk.encode(r.text);
  ids.push(tk.eosId);
  return { ids, promptLen: 0 };
}

/** Writes the shards of one split, one after the other. */
export class SplitShardWriter {
  readonly shards: ShardInfo[] = [];
  private readonly outDir: string;
  private readonly split: SplitName;
  private readonly prefix: string;
  private readonly sink: ShardWriteOptions['sink'];
  private readonly maxTokens: number;
  private readonly vocabSize: number;
  private readonly width: 2 | 4;
  private body: FileHandle | undefined;
  private bodyPath = '';
  private offsets: number[] = [0];
  private promptLens: number[] = [];
  private hasPrompt = false;
  private nTokens = 0;
  /** Tokens not yet written to the body file (the body is written in 1 MiB chunks). */
  private buf = Buffer.from(new ArrayBuffer(1 << 20)); // own ArrayBuffer: offset 0, so 16-bit views align
  private pending = 0;

  constructor(outDir: string, split: SplitName, vocabSize: number, opts: ShardWriteOptions = {}) {
    this.outDir = outDir;
    this.split = split;
    this.prefix = opts.prefix ?? split;
    this.sink = opts.sink;
    this.maxTokens = opts.maxTokensPerShard ?? 64 * 1024 * 1024;
    this.vocabSize = vocabSize;
    this.width = vocabSize <= 65536 ? 2 : 4;
  }

  async add(ids: ArrayLike<number>, promptLen: number): Promise<void> {
    if (this.body && this.nTokens > 0 && this.nTokens + ids.length > this.maxTokens) await this.closeShard();
    if (!this.body) {
      await mkdir(this.outDir, { recursive: true });
      this.bodyPath = join(this.outDir, `.${this.prefix}-${String(this.shards.length).padStart(5, '0')}.body.tmp`);
      this.body = await open(this.bodyPath, 'w');
    }
    const need = ids.length * this.width;
    if (this.pending + need > this.buf.length) await this.flush();
    if (need > this.buf.length) this.buf = Buffer.from(new ArrayBuffer(need));
    const view = this.width === 2 ? new Uint16Array(this.buf.buffer, this.buf.byteOffset + this.pending, ids.length) : undefined;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!(id >= 0 && id < this.vocabSize)) throw new RangeError(`token id ${id} outside the vocabulary (${this.vocabSize})`);
      if (view) view[i] = id; // little-endian hosts only (x86-64, arm64): checked at load
      else this.buf.writeUInt32LE(id, this.pending + i * 4);
    }
    this.pending += need;
    this.nTokens += ids.length;
    this.offsets.push(this.nTokens);
    this.promptLens.push(promptLen);
    if (promptLen > 0) this.hasPrompt = true;
  }

  private async flush(): Promise<void> {
    if (this.pending === 0 || !this.body) return;
    await this.body.write(this.buf, 0, this.pending);
    this.pending = 0;
  }

  private async closeShard(): Promise<void> {
    if (!this.body) return;
    await this.flush();
    await this.body.close();
    this.body = undefined;
    const nDocs = this.promptLens.length;
    const name = `${this.prefix}-${String(this.shards.length).padStart(5, '0')}.bin`;
    const finalPath = join(this.outDir, name);
    const tmpPath = `${finalPath}.tmp`;
    const head = Buffer.alloc(HEADER_BYTES + 8 * (nDocs + 1) + (this.hasPrompt ? 4 * nDocs : 0));
    head.write(SHARD_MAGIC, 0, 'ascii');
    head.writeUInt32LE(SHARD_VERSION, 8);
    head.writeUInt32LE(this.width, 12);
    head.writeBigUInt64LE(BigInt(this.nTokens), 16);
    head.writeBigUInt64LE(BigInt(nDocs), 24);
    head.writeUInt32LE(this.vocabSize, 32);
    head.writeUInt32LE(this.hasPrompt ? 1 : 0, 36);
    let o = HEADER_BYTES;
    for (const off of this.offsets) o = head.writeBigUInt64LE(BigInt(off), o);
    if (this.hasPrompt) for (const pl of this.promptLens) o = head.writeUInt32LE(pl, o);
    const hash = createHash('sha256').update(head);
    const out = await open(tmpPath, 'w');
    try {
      await out.write(head);
      for await (const chunk of createReadStream(this.bodyPath, { highWaterMark: 1 << 20 })) {
        hash.update(chunk as Buffer);
        await out.write(chunk as Buffer);
      }
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmpPath, finalPath);
    await rm(this.bodyPath, { force: true });
    let path = finalPath;
    if (this.sink) {
      path = await this.sink(name, finalPath);
      await rm(finalPath, { force: true });
    }
    this.shards.push({ path, split: this.split, n_tokens: this.nTokens, n_docs: nDocs, sha256: hash.digest('hex') });
    this.offsets = [0];
    this.promptLens = [];
    this.hasPrompt = false;
    this.nTokens = 0;
  }

  /** Closes the open shard; returns every shard written. */
  async finish(): Promise<ShardInfo[]> {
    await this.closeShard();
    return this.shards;
  }

  /** Removes temporary files after a failure. */
  async abort(): Promise<void> {
    if (this.body) await this.body.close().catch(() => undefined);
    this.body = undefined;
    this.pending = 0;
    if (this.bodyPath) await rm(this.bodyPath, { force: true });
  }
}

/**
 * Tokenises records (EOS appended; prompt tokens counted for masking) into
 * shards per split under outDir, streaming; returns one entry per shard.
 */
export async function writeShards(
  records: AsyncIterable<ShardedRecord> | Iterable<ShardedRecord>,
  tokenizer: TextTokenizer,
  outDir: string,
  opts: ShardWriteOptions = {},
): Promise<ShardInfo[]> {
  const writers = new Map<SplitName, SplitShardWriter>();
  try {
    for await (const { split, record } of records) {
      let w = writers.get(split);
      if (!w) writers.set(split, (w = new SplitShardWriter(outDir, split, tokenizer.vocabSize, opts)));
      const { ids, promptLen } = encodeRecord(tokenizer, record);
      await w.add(ids, promptLen);
    }
    const out: ShardInfo[] = [];
    for (const w of writers.values()) out.push(...(await w.finish()));
    return out;
  } catch (e) {
    for (const w of writers.values()) await w.abort();
    throw e;
  }
}

export interface ShardContents {
  vocabSize: number;
  width: 2 | 4;
  nTokens: number;
  docOffsets: number[];
  promptLens: number[] | undefined;
  tokens: Uint16Array | Uint32Array;
}

/** Reads a whole shard (tests, tools); checks the magic, version and sizes. */
export async function readShard(path: string): Promise<ShardContents> {
  const buf = await readFile(path);
  if (buf.length < HEADER_BYTES || buf.toString('ascii', 0, 8) !== SHARD_MAGIC) throw new Error(`${path}: not a FWSHARD1 file`);
  const version = buf.readUInt32LE(8);
  if (version !== SHARD_VERSION) throw new Error(`${path}: unsupported shard version ${version}`);
  const width = buf.readUInt32LE(12);
  if (width !== 2 && width !== 4) throw new Error(`${path}: bad token width ${width}`);
  const nTokens = Number(buf.readBigUInt64LE(16));
  const nDocs = Number(buf.readBigUInt64LE(24));
  const vocabSize = buf.readUInt32LE(32);
  const flags = buf.readUInt32LE(36);
  let o = HEADER_BYTES;
  const docOffsets: number[] = [];
  for (let i = 0; i <= nDocs; i++, o += 8) docOffsets.push(Number(buf.readBigUInt64LE(o)));
  let promptLens: number[] | undefined;
  if (flags & 1) {
    promptLens = [];
    for (let i = 0; i < nDocs; i++, o += 4) promptLens.push(buf.readUInt32LE(o));
  }
  if (buf.length !== o + width * nTokens) throw new Error(`${path}: size ${buf.length} does not match header`);
  const body = buf.subarray(o);
  const tokens = width === 2 ? new Uint16Array(nTokens) : new Uint32Array(nTokens);
  for (let i = 0; i < nTokens; i++) tokens[i] = width === 2 ? body.readUInt16LE(i * 2) : body.readUInt32LE(i * 4);
  return { vocabSize, width, nTokens, docOffsets, promptLens, tokens };
}
