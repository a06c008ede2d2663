/**
 * Every way a key or URI could reach outside the store's root is refused
 * with ArtifactKeyError, by every method, before any file is touched.
 */
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactKeyError, createArtifactStore, createFileStore, validateKey } from './index.ts';
import type { ArtifactStore } from './index.ts';
import { collect } from './testing.ts';

describe('artifact security', () => {
  let base: string;
  let root: string;
  let outside: string;
  let store: ArtifactStore;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'fw-artifacts-sec-'));
    root = join(base, 'root');
    outside = join(base, 'outside');
    await mkdir(root);
    await mkdir(outside);
    await writeFile(join(outside, 'secret'), 'top secret');
    store = createFileStore({ root });
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  const hostile = () => [
    '../outside/secret',
    'a/../../outside/secret',
    './a',
    'a/./b',
    '..',
    '/etc/passwd',
    `${'a/'}\u0000/b`,
    'a\u0000b',
    'a\\..\\..\\outside\\secret',
    '..\\outside',
    '%2e%2e/outside/secret',
    'a%2fb',
    'a//b',
    'a/',
    '',
    'a/.fwtmp-1234',
    'line\nbreak',
    `file://${root}/../outside/secret`,
    `file://${root}/%2e%2e/outside/secret`,
    `file://${root}/%2E%2E/outside/secret`,
    `file://${root}/a%2f..%2f..%2foutside/secret`,
    `file://${root}/a%5c..%5csecret`,
    `file://${root}/a%00b`,
    `file://${root}/%zz`,
    `file://${root}/a?x=1`,
    `file://${base}/outside/secret`,
    `file://${root}`,
    `file:///etc/passwd`,
    `file://evil.example${root}/a`,
    `s3://bucket/a`,
    `http://example.com/a`,
  ];

  it('artifact security - hostile keys and URIs are refused by every method', async () => {
    for (const ref of hostile()) {
      expect(() => store.keyFor(ref), ref).toThrow(ArtifactKeyError);
      await expect(store.put(ref, Buffer.from('x')), ref).rejects.toBeInstanceOf(ArtifactKeyError);
      await expect(store.get(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
      await expect(store.stat(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
      await expect(store.exists(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
      await expect(store.delete(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
    }
    expect(await readdir(outside)).toEqual(['secret']);
    expect(await readdir(root)).toEqual([]);
  });

  it('artifact security - a symlink inside the root that points outside is not followed', async () => {
    await symlink(outside, join(root, 'link'));
    await symlink(join(outside, 'secret'), join(root, 'secret-link'));
    for (const ref of ['link/secret', 'secret-link', `file://${root}/link/secret`]) {
      await expect(store.get(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
      await expect(store.stat(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
      await expect(store.delete(ref), ref).rejects.toBeInstanceOf(ArtifactKeyError);
    }
    await expect(store.put('link/new', Buffer.from('x'))).rejects.toBeInstanceOf(ArtifactKeyError);
    await expect(store.put('link/deeper/new', Buffer.from('x'))).rejects.toBeInstanceOf(ArtifactKeyError);
    await expect(store.put('secret-link', Buffer.from('pwned'), { overwrite: true })).rejects.toBeInstanceOf(ArtifactKeyError);
    expect(await readdir(outside)).toEqual(['secret']);
    const listed = await collect(store.list());
    expect(listed).toEqual([]);
  });

  it('artifact security - a symlink that stays inside the root is allowed', async () => {
    await store.put('real/file', Buffer.from('ok'));
    await symlink(join(root, 'real'), join(root, 'alias'));
    expect((await store.stat('alias/file')).size).toBe(2);
  });

  it('artifact security - the root itself must be absolute and store URLs must be known schemes', () => {
    expect(() => createFileStore({ root: 'relative/root' })).toThrow(ArtifactKeyError);
    expect(() => createFileStore({ root: '/' })).toThrow(ArtifactKeyError);
    expect(() => createArtifactStore('ftp://host/x')).toThrow(ArtifactKeyError);
    expect(() => createArtifactStore('relative')).toThrow(ArtifactKeyError);
    expect(() => validateKey('a'.repeat(1025))).toThrow(ArtifactKeyError);
    expect(validateKey('datasets/v1/train.jsonl')).toBe('datasets/v1/train.jsonl');
  });
});
