/**
 * Helpers of the pipeline's temporary state: buffered writes with
 * backpressure, the sequential reader of the kept-token file, and the
 * growable store of signature sketches used to confirm LSH candidates.
 */
import type { WriteStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** Buffered append to a file with backpressure. */
export async function put(ws: WriteStream, chunk: string | Uint8Array): Promise<void> {
  if (ws.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (e?: Error) => {
      ws.off('drain', done);
      ws.off('error', done);
      if (e) reject(e);
      else resolve();
    };
    ws.on('drain', done);
    ws.on('error', done);
  });
}
export const endStream = (ws: WriteStream) => new Promise<void>((resolve, reject) => ws.end((e?: Error | null) => (e ? reject(e) : resolve())));

/** Sequential reader of the kept-token file: per record u32 n, u32 promptLen, n x u32. */
export class TokenReader {
  private buf = Buffer.alloc(0);
  private pos = 0;
  private fh: FileHandle;
  constructor(fh: FileHandle) {
    this.fh = fh;
  }
  private async need(n: number): Promise<void> {
    if (this.buf.length - this.pos >= n) return;
    const rest = this.buf.subarray(this.pos);
    const chunk = Buffer.allocUnsafe(Math.max(n, 1 << 20));
    const { bytesRead } = await this.fh.read(chunk, 0, chunk.length, null);
    this.buf = Buffer.concat([rest, chunk.subarray(0, bytesRead)]);
    this.pos = 0;
    if (this.buf.length < n) throw new Error('token file truncated');
  }
  async next(): Promise<{ ids: Uint32Array; promptLen: number }> {
    await this.need(8);
    const n = this.buf.readUInt32LE(this.pos);
    const promptLen = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    await this.need(4 * n);
    const start = this.buf.byteOffset + this.pos;
    const ids = new Uint32Array(this.buf.buffer.slice(start, start + 4 * n)); // little-endian host, as written
    this.pos += 4 * n;
    return { ids, promptLen };
  }
}

/** Growable store of 16-bit signature sketches (the low half of each MinHash value). */
export class SketchStore {
  private data: Uint16Array;
  private readonly P: number;
  constructor(P: number) {
    this.P = P;
    this.data = new Uint16Array(P * 1024);
  }
  set(ordinal: number, sig: Uint32Array): void {
    const need = (ordinal + 1) * this.P;
    if (need > this.data.length) {
      const next = new Uint16Array(Math.max(need, this.data.length * 2));
      next.set(this.data);
      this.data = next;
    }
    for (let i = 0; i < this.P; i++) this.data[ordinal * this.P + i] = sig[i]! & 0xffff;
  }
  /** Jaccard estimate, corrected for chance 16-bit collisions. */
  similarity(ordinal: number, sig: Uint32Array): number {
    let eq = 0;
    const base = ordinal * this.P;
    for (let i = 0; i < this.P; i++) if (this.data[base + i] === (sig[i]! & 0xffff)) eq++;
    const c = 1 / 65536;
    return Math.max(0, (eq / this.P - c) / (1 - c));
  }
}
