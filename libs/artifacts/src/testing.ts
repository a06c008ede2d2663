/** Small helpers for tests of code that uses a store. */
import type { ArtifactStat } from './types.ts';

/** Drains an async iterable (e.g. store.list()) into an array. */
export async function collect<T = ArtifactStat>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
