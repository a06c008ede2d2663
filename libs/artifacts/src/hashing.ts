import { createHash } from 'node:crypto';
import type { Body } from './types.ts';

/** Iterates a body chunk by chunk (a Buffer is one chunk); never buffers a stream whole. */
export async function* chunksOf(body: Body): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(body)) {
    yield body;
    return;
  }
  if (body instanceof Uint8Array) {
    yield Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    return;
  }
  for await (const chunk of body) {
    yield typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
  }
}

/** Running sha256 and byte count over the chunks that pass through it. */
export function hashingCounter() {
  const hash = createHash('sha256');
  let size = 0;
  return {
    update(chunk: Buffer) {
      hash.update(chunk);
      size += chunk.length;
    },
    digest() {
      return { sha256: hash.digest('hex'), size };
    },
  };
}
