import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactExistsError, ArtifactKeyError, ArtifactNotFoundError, createArtifactStore, createFileStore } from './index.ts';
import type { ArtifactStore } from './index.ts';
import { collect } from './testing.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Recursively every file name under dir, temporary ones included. */
async function allFiles(dir: string): Promise<string[]> {
  const out = await readdir(dir, { recursive: true, withFileTypes: true });
  return out.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

describe('file store', () => {
  let base: string;
  let root: string;
  let store: ArtifactStore;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'fw-artifacts-'));
    root = join(base, 'root');
    store = createFileStore({ root });
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  it('file store - put streams, hashes and reads back', async () => {
    const chunks = Array.from({ length: 50 }, (_, i) => Buffer.alloc(10_000, i));
    const whole = Buffer.concat(chunks);
    const res = await store.put('datasets/v1/shard-0.bin', Readable.from(chunks));
    expect(res).toEqual({ uri: `file://${root}/datasets/v1/shard-0.bin`, key: 'datasets/v1/shard-0.bin', sha256: sha(whole), size: whole.length });
    const back = Buffer.concat(await (await store.get(res.uri)).toArray());
    expect(back.equals(whole)).toBe(true);
    const st = await store.stat('datasets/v1/shard-0.bin');
    expect(st.size).toBe(whole.length);
    expect(await store.exists(res.uri)).toBe(true);
    expect(await store.exists('datasets/v1/nope')).toBe(false);
  });

  it('file store - put refuses to replace an object unless overwrite is set', async () => {
    await store.put('a/b.txt', Buffer.from('first'));
    await expect(store.put('a/b.txt', Buffer.from('second'))).rejects.toBeInstanceOf(ArtifactExistsError);
    expect(await text(await store.get('a/b.txt'))).toBe('first');
    await store.put('a/b.txt', Buffer.from('second'), { overwrite: true });
    expect(await text(await store.get('a/b.txt'))).toBe('second');
    expect(await allFiles(root)).toEqual(['a/b.txt']);
  });

  it('file store - a source that fails halfway leaves no file at the target and no temp file', async () => {
    async function* failing() {
      yield Buffer.alloc(64 * 1024, 1);
      yield Buffer.alloc(64 * 1024, 2);
      throw new Error('upstream died');
    }
    await expect(store.put('models/m.safetensors', Readable.from(failing()))).rejects.toThrow('upstream died');
    expect(await store.exists('models/m.safetensors')).toBe(false);
    expect(await allFiles(root)).toEqual([]);

    // The same when a whole object was there before: it is untouched.
    await store.put('models/m.safetensors', Buffer.from('v1'));
    const src = new Readable({ read() { /* pushed by hand */ } });
    src.push(Buffer.alloc(1000, 7));
    setTimeout(() => src.destroy(new Error('connection reset')), 20);
    await expect(store.put('models/m.safetensors', src, { overwrite: true })).rejects.toThrow('connection reset');
    expect(await text(await store.get('models/m.safetensors'))).toBe('v1');
    expect(await allFiles(root)).toEqual(['models/m.safetensors']);
  });

  it('file store - content-addressed puts are stored by hash and de-duplicated', async () => {
    const body = 'the same bytes';
    const h = sha(body);
    const first = await store.putContentAddressed(Readable.from([Buffer.from(body)]));
    expect(first).toEqual({ uri: `file://${root}/sha256/${h.slice(0, 2)}/${h}`, key: `sha256/${h.slice(0, 2)}/${h}`, sha256: h, size: body.length, created: true });
    const second = await store.putContentAddressed(Buffer.from(body));
    expect(second.created).toBe(false);
    expect(second.uri).toBe(first.uri);
    expect(await allFiles(root)).toEqual([`sha256/${h.slice(0, 2)}/${h}`]);
    async function* failing() {
      yield Buffer.from('partial');
      throw new Error('gone');
    }
    await expect(store.putContentAddressed(Readable.from(failing()))).rejects.toThrow('gone');
    expect(await allFiles(root)).toEqual([`sha256/${h.slice(0, 2)}/${h}`]);
  });

  it('file store - list walks a prefix in key order and skips temp files', async () => {
    for (const k of ['b/2', 'a/1', 'a/sub/3', 'ab/4', 'c']) await store.put(k, Buffer.from(k));
    await writeFile(join(root, 'a', '.fwtmp-deadbeef'), 'half');
    const keys = async (p?: string) => (await collect(store.list(p))).map((s) => s.key);
    expect(await keys()).toEqual(['a/1', 'a/sub/3', 'ab/4', 'b/2', 'c']);
    expect(await keys('a/')).toEqual(['a/1', 'a/sub/3']);
    expect(await keys('a')).toEqual(['a/1', 'a/sub/3', 'ab/4']);
    expect(await keys('zzz/')).toEqual([]);
    await expect(keys('../')).rejects.toBeInstanceOf(ArtifactKeyError);
  });

  it('file store - delete removes the object; missing objects are NotFound', async () => {
    await store.put('x/y', Buffer.from('1'));
    await store.delete(`file://${root}/x/y`);
    expect(await store.exists('x/y')).toBe(false);
    await expect(store.delete('x/y')).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await expect(store.get('x/y')).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await expect(store.stat('x')).rejects.toBeInstanceOf(ArtifactNotFoundError);
  });

  it('file store - keys and URIs round-trip, with percent-encoding', async () => {
    const res = await store.put('with space/ü.txt', Buffer.from('x'));
    expect(res.uri).toBe(`file://${root}/with%20space/%C3%BC.txt`);
    expect(store.keyFor(res.uri)).toBe('with space/ü.txt');
    expect(store.uriFor('with space/ü.txt')).toBe(res.uri);
    expect(await text(await store.get(`file://localhost${root}/with%20space/%C3%BC.txt`))).toBe('x');
    expect(createArtifactStore(`file://${root}`).uriFor('k')).toBe(`file://${root}/k`);
    expect(createArtifactStore(root).rootUri).toBe(`file://${root}/`);
    await expect(store.ping()).resolves.toBeUndefined();
  });
});
