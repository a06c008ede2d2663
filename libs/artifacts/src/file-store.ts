/**
 * file:// backend: every object is a regular file under one root directory.
 *
 * Containment: keys are validated first (keys.ts); then every path is
 * resolved with realpath and must lie under the real root before it is
 * opened, and final components are opened with O_NOFOLLOW. Folders are
 * created one level at a time after checking that an existing component is
 * not a symlink leading out of the root (mkdir -p would follow it).
 *
 * Atomicity: a write goes to a temporary file (".fwtmp-<random>") in the
 * target's folder, is fsynced, and only then renamed (or hard-linked, when
 * overwriting is not allowed) to its name, and the folder is fsynced. A
 * failed or interrupted write leaves at most a temporary file, which keys
 * cannot name and list() skips.
 */
import { constants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, realpath, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { ArtifactError, ArtifactExistsError, ArtifactKeyError, ArtifactNotFoundError } from './errors.ts';
import { chunksOf, hashingCounter } from './hashing.ts';
import { contentKey, decodeUriPath, encodeKeyPath, hasScheme, TMP_PREFIX, validateKey, validatePrefix } from './keys.ts';
import type { ArtifactStat, ArtifactStore, Body, ContentAddressedResult, PutOptions, PutResult } from './types.ts';

export interface FileStoreOptions {
  /** Absolute path of the root directory; created if missing. */
  root: string;
}

const code = (e: unknown): string | undefined =>
  typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : undefined;

export function createFileStore(options: FileStoreOptions): ArtifactStore {
  if (!isAbsolute(options.root)) throw new ArtifactKeyError(options.root, 'the store root must be an absolute path');
  const root = resolve(options.root);
  const rootSegments = root.split(sep).filter(Boolean);
  if (rootSegments.length === 0) throw new ArtifactKeyError(root, 'the store root cannot be the file system root');
  const rootUri = `file:///${encodeKeyPath(rootSegments.join('/'))}/`;
  let realRootP: Promise<string> | undefined;
  const realRoot = () =>
    (realRootP ??= mkdir(root, { recursive: true }).then(() => realpath(root)).catch((err: unknown) => {
      realRootP = undefined;
      throw new ArtifactError(`cannot open artifact root ${root}`, root, { cause: err });
    }));

  function keyFor(ref: string): string {
    if (!hasScheme(ref)) return validateKey(ref);
    if (!ref.startsWith('file://')) throw new ArtifactKeyError(ref, 'not a file:// URI of this store');
    let rest = ref.slice('file://'.length);
    if (rest.startsWith('localhost/')) rest = rest.slice('localhost'.length);
    if (!rest.startsWith('/')) throw new ArtifactKeyError(ref, 'file URI with a host');
    const segs = decodeUriPath(rest.slice(1), ref);
    const under = rootSegments.every((s, i) => segs[i] === s) && segs.length > rootSegments.length;
    if (!under) throw new ArtifactKeyError(ref, `outside the store root ${root}`);
    return validateKey(segs.slice(rootSegments.length).join('/'), ref);
  }
  const uriFor = (ref: string) => rootUri + encodeKeyPath(keyFor(ref));

  /** Throws unless the real path `p` is the real root or inside it. */
  async function assertInside(ref: string, p: string): Promise<void> {
    const rr = await realRoot();
    if (p !== rr && !p.startsWith(rr + sep)) throw new ArtifactKeyError(ref, 'resolves outside the store root (symlink)');
  }

  /** Real path of an existing object, checked to be a regular file inside the root. */
  async function resolveExisting(ref: string, key: string): Promise<string> {
    const rr = await realRoot();
    let real: string;
    try {
      real = await realpath(join(rr, key));
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') throw new ArtifactNotFoundError(ref, { cause: err });
      throw err;
    }
    await assertInside(ref, real);
    return real;
  }

  /** Creates the folders of `key` (not the last segment) inside the root; returns the real folder. */
  async function ensureDir(ref: string, key: string): Promise<string> {
    let dir = await realRoot();
    for (const seg of key.split('/').slice(0, -1)) {
      const next = join(dir, seg);
      try {
        const st = await lstat(next);
        if (st.isSymbolicLink()) {
          const real = await realpath(next);
          await assertInside(ref, real);
          if (!(await stat(real)).isDirectory()) throw new ArtifactKeyError(ref, `"${seg}" is not a folder`);
          dir = real;
          continue;
        }
        if (!st.isDirectory()) throw new ArtifactKeyError(ref, `"${seg}" is not a folder`);
      } catch (err) {
        if (code(err) !== 'ENOENT') throw err;
        await mkdir(next).catch((e: unknown) => {
          if (code(e) !== 'EEXIST') throw e;
        });
      }
      dir = next;
    }
    const real = await realpath(dir);
    await assertInside(ref, real);
    return real;
  }

  async function fsyncDir(dir: string): Promise<void> {
    const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Streams `body` into a fresh temporary file in `dir`; returns its path, hash and size. */
  async function writeTemp(dir: string, body: Body) {
    const tmp = join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    let fh: FileHandle | undefined = await open(tmp, flags, 0o644);
    try {
      const hc = hashingCounter();
      for await (const chunk of chunksOf(body)) {
        hc.update(chunk);
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      return { tmp, ...hc.digest() };
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  async function put(ref: string, body: Body, opts: PutOptions = {}): Promise<PutResult> {
    const key = keyFor(ref);
    const dir = await ensureDir(ref, key);
    const target = join(dir, key.slice(key.lastIndexOf('/') + 1));
    const { tmp, sha256, size } = await writeTemp(dir, body);
    try {
      if (opts.overwrite) {
        const existing = await lstat(target).catch(() => undefined);
        if (existing && !existing.isFile()) throw new ArtifactKeyError(ref, 'the target exists and is not a regular file');
        await rename(tmp, target);
      } else {
        // link() fails with EEXIST instead of replacing: no check-then-write race.
        await link(tmp, target).catch((err: unknown) => {
          if (code(err) === 'EEXIST') throw new ArtifactExistsError(ref, { cause: err });
          throw err;
        });
        await unlink(tmp);
      }
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fsyncDir(dir);
    return { uri: rootUri + encodeKeyPath(key), key, sha256, size };
  }

  async function putContentAddressed(body: Body): Promise<ContentAddressedResult> {
    const tmpDir = await ensureDir('sha256/', 'sha256/x');
    const { tmp, sha256, size } = await writeTemp(tmpDir, body);
    const key = contentKey(sha256);
    try {
      const dir = await ensureDir(key, key);
      const target = join(dir, sha256);
      let created = true;
      await link(tmp, target).catch(async (err: unknown) => {
        if (code(err) !== 'EEXIST') throw err;
        created = false;
        const st = await stat(target);
        if (st.size !== size) throw new ArtifactError(`stored ${key} has ${st.size} bytes, expected ${size}`, key);
      });
      await unlink(tmp);
      if (created) await fsyncDir(dir);
      return { uri: rootUri + encodeKeyPath(key), key, sha256, size, created };
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  async function openFile(ref: string): Promise<{ key: string; fh: FileHandle }> {
    const key = keyFor(ref);
    const real = await resolveExisting(ref, key);
    const fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: unknown) => {
      if (code(err) === 'ENOENT') throw new ArtifactNotFoundError(ref, { cause: err });
      throw err;
    });
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new ArtifactNotFoundError(ref);
    }
    return { key, fh };
  }

  async function statOf(ref: string): Promise<ArtifactStat> {
    const { key, fh } = await openFile(ref);
    try {
      const st = await fh.stat();
      return { uri: rootUri + encodeKeyPath(key), key, size: st.size, modifiedAt: st.mtime };
    } finally {
      await fh.close();
    }
  }

  async function* walk(dir: string, keyPrefix: string, want: string): AsyncGenerator<ArtifactStat> {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return [];
      throw err;
    });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(TMP_PREFIX)) continue;
      const key = keyPrefix + e.name;
      // Symlinks are never followed while listing.
      if (e.isDirectory()) {
        if (want.startsWith(key + '/') || (key + '/').startsWith(want)) yield* walk(join(dir, e.name), key + '/', want);
      } else if (e.isFile() && key.startsWith(want)) {
        const st = await stat(join(dir, e.name)).catch(() => undefined);
        if (st) yield { uri: rootUri + encodeKeyPath(key), key, size: st.size, modifiedAt: st.mtime };
      }
    }
  }

  async function sweepDir(dir: string, cutoff: number): Promise<number> {
    let removed = 0;
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) removed += await sweepDir(p, cutoff);
      else if (e.isFile() && e.name.startsWith(TMP_PREFIX)) {
        const st = await stat(p).catch(() => undefined);
        if (st && st.mtimeMs < cutoff && (await unlink(p).then(() => true, () => false))) removed++;
      }
    }
    return removed;
  }

  return {
    scheme: 'file',
    rootUri,
    uriFor,
    keyFor,
    put,
    putContentAddressed,
    async get(ref: string): Promise<Readable> {
      const { fh } = await openFile(ref);
      return fh.createReadStream({ autoClose: true });
    },
    stat: statOf,
    async exists(ref: string) {
      return statOf(ref).then(
        () => true,
        (err: unknown) => {
          if (err instanceof ArtifactNotFoundError) return false;
          throw err;
        },
      );
    },
    async *list(prefix = '') {
      validatePrefix(prefix);
      yield* walk(await realRoot(), '', prefix);
    },
    async delete(ref: string) {
      const key = keyFor(ref);
      await resolveExisting(ref, key);
      const parent = await realpath(dirname(join(await realRoot(), key)));
      await assertInside(ref, parent);
      const target = join(parent, key.slice(key.lastIndexOf('/') + 1));
      const st = await lstat(target);
      if (!st.isFile() && !st.isSymbolicLink()) throw new ArtifactNotFoundError(ref);
      await unlink(target);
      await fsyncDir(parent);
    },
    async sweepTemporary(olderThanMs: number) {
      return sweepDir(await realRoot(), Date.now() - olderThanMs);
    },
    async ping() {
      const rr = await realRoot();
      const { tmp } = await writeTemp(rr, Buffer.alloc(0));
      await unlink(tmp);
    },
  };
}
