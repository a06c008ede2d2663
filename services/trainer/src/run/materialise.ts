/**
 * Brings what a run reads into its work folder: the dataset's shard files
 * (sha256-checked against the manifest), its tokenizer, the base model and
 * the teacher folder. The worker only reads local files. A file already there
 * with the right digest is kept, so a restart does not download again.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { ArtifactStore } from '@flywheel/artifacts';

export class MaterialiseError extends Error {
  override name = 'MaterialiseError';
  readonly stage: string;
  constructor(stage: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.stage = stage;
  }
}

export interface ManifestShard {
  file: string;
  uri: string;
  sha256: string;
  n_tokens: number;
}

export interface Manifest {
  dataset: string;
  version: string;
  tokenizer?: { uri: string; sha256?: string; vocab_size?: number };
  splits: { name: string; shards: ManifestShard[] }[];
}

export interface Materialised {
  manifest: Manifest;
  train: string[];
  val: string[];
  tokenizer: string | undefined;
  baseModel: string | undefined;
  teacher: string | undefined;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

/** Streams `uri` to `dest` (via a temp file), checking its sha256 when one is given. */
async function fetchTo(store: ArtifactStore, uri: string, dest: string, sha256: string | undefined, stage: string): Promise<void> {
  if (sha256 && (await stat(dest).catch(() => undefined)) && (await sha256File(dest)) === sha256) return;
  await mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.part-${process.pid}`;
  const h = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(await store.get(uri), tap, createWriteStream(tmp));
  } catch (e) {
    await rm(tmp, { force: true });
    throw new MaterialiseError(stage, `cannot read ${uri}: ${(e as Error).message}`, { cause: e });
  }
  const got = h.digest('hex');
  if (sha256 && got !== sha256) {
    await rm(tmp, { force: true });
    throw new MaterialiseError(stage, `${uri}: sha256 ${got} does not match the manifest's ${sha256}`);
  }
  await rename(tmp, dest);
}

/** Copies every file under a folder URI of the store into `dest`. */
async function fetchFolder(store: ArtifactStore, uri: string, dest: string, stage: string): Promise<string> {
  let prefix: string;
  try {
    prefix = store.keyFor(uri.replace(/\/+$/, '')) + '/';
  } catch (e) {
    throw new MaterialiseError(stage, `${uri} is not a folder of the artifact store: ${(e as Error).message}`, { cause: e });
  }
  let n = 0;
  for await (const s of store.list(prefix)) {
    const rel = s.key.slice(prefix.length);
    if (!rel || rel.split('/').some((p) => p === '..' || p === '')) continue;
    await fetchTo(store, s.uri, join(dest, rel), undefined, stage);
    n++;
  }
  if (n === 0) throw new MaterialiseError(stage, `no files under ${uri}`);
  if (!(await stat(join(dest, 'config.json')).catch(() => undefined)) && !(await stat(join(dest, 'adapter_config.json')).catch(() => undefined)))
    throw new MaterialiseError(stage, `${uri} holds no config.json: not a model folder`);
  return dest;
}

export async function readManifest(store: ArtifactStore, uri: string): Promise<Manifest> {
  let text: string;
  try {
    const chunks: Buffer[] = [];
    for await (const c of await store.get(uri)) chunks.push(c as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
  } catch (e) {
    throw new MaterialiseError('dataset', `cannot read the manifest ${uri}: ${(e as Error).message}`, { cause: e });
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch {
    throw new MaterialiseError('dataset', `the manifest ${uri} is not JSON`);
  }
  if (!Array.isArray(m.splits) || !m.splits.some((s) => s.name === 'train' && s.shards.length > 0))
    throw new MaterialiseError('dataset', `the manifest ${uri} lists no train shards`);
  return m;
}

export async function materialise(
  store: ArtifactStore,
  workDir: string,
  src: { manifestUri: string; baseModelUri?: string | undefined; teacherUri?: string | undefined },
): Promise<Materialised> {
  const manifest = await readManifest(store, src.manifestUri);
  const split = async (name: string) => {
    const out: string[] = [];
    for (const s of manifest.splits.find((x) => x.name === name)?.shards ?? []) {
      if (!/^[A-Za-z0-9._-]+$/.test(s.file)) throw new MaterialiseError('dataset', `bad shard file name ${JSON.stringify(s.file)}`);
      const dest = join(workDir, 'data', s.file);
      await fetchTo(store, s.uri, dest, s.sha256, 'dataset');
      out.push(dest);
    }
    return out;
  };
  const train = await split('train');
  const val = await split('val');
  let tokenizer: string | undefined;
  if (manifest.tokenizer?.uri) {
    tokenizer = join(workDir, 'tokenizer.json');
    await fetchTo(store, manifest.tokenizer.uri, tokenizer, manifest.tokenizer.sha256, 'dataset');
  }
  const baseModel = src.baseModelUri ? await fetchFolder(store, src.baseModelUri, join(workDir, 'base'), 'model') : undefined;
  const teacher = src.teacherUri ? await fetchFolder(store, src.teacherUri, join(workDir, 'teacher'), 'teacher') : undefined;
  return { manifest, train, val, tokenizer, baseModel, teacher };
}
