/**
 * Test kit of the trainer: a real Postgres schema, a real NATS namespace, a
 * temporary artifact root and work folder, the real app with the local
 * launcher running the real fw_worker. Nothing is mocked. `tinyDataset`
 * stores a small token dataset (shards + manifest) in the artifact store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventEnvelope, Subject } from '@flywheel/contracts';
import { createArtifactStore, type ArtifactStore } from '@flywheel/artifacts';
import type { Bus, Subscription } from '@flywheel/bus';
import { createTestBus } from '@flywheel/bus/testing';
import { createTestDb } from '@flywheel/db/testing';
import { buildTrainerService, MIGRATIONS_DIR, type TrainerService } from '../src/app.ts';
import { DEFAULT_WORKER_BIN } from '../src/config.ts';
import { createLocalLauncher } from '../src/launchers/local.ts';

export const TINY_CONFIG = {
  model_type: 'llama',
  vocab_size: 658,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

export interface Harness extends TrainerService {
  bus: Bus;
  namespace: string;
  root: string;
  workRoot: string;
  artifacts: ArtifactStore;
  db: Awaited<ReturnType<typeof createTestDb>>['db'];
  schema: string;
  token: string;
  auth: { authorization: string };
  events<S extends Subject>(subject: S): EventEnvelope<S>[];
  /** Polls the run until `pred` holds. */
  waitRun(id: string, pred: (r: NonNullable<Awaited<ReturnType<TrainerService['runs']['get']>>>) => boolean, timeoutMs?: number): Promise<NonNullable<Awaited<ReturnType<TrainerService['runs']['get']>>>>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Share another harness's bus (same namespace) and artifact store, e.g. the data service's. */
  bus?: Bus;
  artifacts?: ArtifactStore;
  maxRanks?: number;
  /** GPUs the local launcher hands to cuda runs (FW_GPUS; default 0). */
  gpus?: number;
  workerBin?: string;
  killGraceMs?: number;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const tdb = await createTestDb({ prefix: 'trainer', migrationsDir: MIGRATIONS_DIR });
  const tbus = opts.bus ? { bus: opts.bus, namespace: opts.bus.namespace ?? '', cleanup: async () => undefined } : await createTestBus({ source: 'trainer' });
  const root = await mkdtemp(join(tmpdir(), 'fw-trainer-test-'));
  const artifacts = opts.artifacts ?? createArtifactStore(`file://${root}/artifacts/`);
  const token = randomBytes(20).toString('hex');
  const workRoot = join(root, 'work');
  const svc = await buildTrainerService({
    db: tdb.db,
    bus: tbus.bus,
    artifacts,
    logger: false,
    apiTokens: [token],
    launchers: { local: createLocalLauncher({ maxRanks: opts.maxRanks ?? 2, gpus: opts.gpus ?? 0 }) },
    defaultLauncher: 'local',
    workRoot,
    workerBin: opts.workerBin ?? DEFAULT_WORKER_BIN,
    maxRanks: opts.maxRanks ?? 2,
    threadsPerRank: 1,
    instanceId: `test-${process.pid}`,
    store: { host: '127.0.0.1', port: 0, advertiseHost: '127.0.0.1' },
    progressIntervalMs: 0,
    killGraceMs: opts.killGraceMs ?? 3000,
    ssePollMs: 200,
  });
  const seen = new Map<string, EventEnvelope[]>();
  const subs: Subscription[] = [];
  for (const subject of ['fw.trainer.run.started', 'fw.trainer.run.completed', 'fw.trainer.run.failed', 'fw.trainer.run.checkpointed'] as const) {
    seen.set(subject, []);
    subs.push(
      await tbus.bus.consume(subject, (e) => void seen.get(subject)!.push(e as EventEnvelope), {
        durable: `test-watch-${subject.replace(/\./g, '-')}`,
        maxDeliver: 2,
        backoffMs: [500],
      }),
    );
  }
  return {
    ...svc,
    bus: tbus.bus,
    namespace: tbus.namespace,
    root,
    workRoot,
    artifacts,
    db: tdb.db,
    schema: tdb.schema,
    token,
    auth: { authorization: `Bearer ${token}` },
    events: <S extends Subject>(subject: S) => (seen.get(subject) ?? []) as EventEnvelope<S>[],
    async waitRun(id, pred, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const r = await svc.runs.get(id);
        if (r && pred(r)) return r;
        if (Date.now() > end) throw new Error(`run ${id} did not reach the expected state (now ${r?.status}, step ${r?.last_step}, reason ${r?.reason})`);
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    async close() {
      await svc.scheduler.stop();
      for (const s of subs) await s.stop();
      await svc.app.close();
      await svc.storeServer.close();
      await tbus.cleanup();
      await tdb.drop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A FWSHARD1 file (docs/formats.md) of `nDocs` seeded random documents, uint16 tokens. */
export function shardBytes(nDocs: number, seed: number, vocab = 658): Buffer {
  let x = seed * 2654435761 + 1;
  const rnd = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x;
  };
  const docs: number[][] = [];
  for (let d = 0; d < nDocs; d++) {
    const len = 20 + (rnd() % 60);
    const t = Array.from({ length: len - 1 }, () => 3 + (rnd() % (vocab - 4)));
    t.push(2);
    docs.push(t);
  }
  const nTokens = docs.reduce((n, d) => n + d.length, 0);
  const buf = Buffer.alloc(64 + 8 * (nDocs + 1) + 2 * nTokens);
  buf.write('FWSHARD1', 0, 'ascii');
  buf.writeUInt32LE(1, 8);
  buf.writeUInt32LE(2, 12);
  buf.writeBigUInt64LE(BigInt(nTokens), 16);
  buf.writeBigUInt64LE(BigInt(nDocs), 24);
  buf.writeUInt32LE(vocab, 32);
  let off = 64;
  let pos = 0;
  for (const d of docs) {
    buf.writeBigUInt64LE(BigInt(pos), off);
    off += 8;
    pos += d.length;
  }
  buf.writeBigUInt64LE(BigInt(pos), off);
  off += 8;
  for (const d of docs)
    for (const t of d) {
      buf.writeUInt16LE(t, off);
      off += 2;
    }
  return buf;
}

/** Stores a dataset (one train shard, one val shard, manifest) and returns the manifest URI. */
export async function tinyDataset(artifacts: ArtifactStore, name = 'tiny', nDocs = 80): Promise<string> {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const train = shardBytes(nDocs, 1);
  const val = shardBytes(10, 2);
  const t = await artifacts.put(`datasets/${name}/v1/train-00000.bin`, train, { overwrite: true });
  const v = await artifacts.put(`datasets/${name}/v1/val-00000.bin`, val, { overwrite: true });
  const manifest = {
    format_version: 1,
    dataset: name,
    version: '0123456789abcdef',
    splits: [
      { name: 'train', shards: [{ file: 'train-00000.bin', uri: t.uri, sha256: sha(train), n_tokens: 0, n_docs: nDocs, bytes: train.length }] },
      { name: 'val', shards: [{ file: 'val-00000.bin', uri: v.uri, sha256: sha(val), n_tokens: 0, n_docs: 10, bytes: val.length }] },
    ],
  };
  const m = await artifacts.put(`datasets/${name}/v1/manifest.json`, Buffer.from(JSON.stringify(manifest)), { overwrite: true });
  return m.uri;
}

/** A from-scratch run body on the tiny model. */
export function tinyRun(manifestUri: string, over: Record<string, unknown> = {}) {
  return {
    dataset: { manifestUri },
    model: { config: TINY_CONFIG },
    hyperparameters: { maxSteps: 40, learningRate: 1e-3, batchSize: 4, seqLen: 32 },
    checkpointInterval: 5,
    restartBudget: 3,
    seed: 7,
    ...over,
  };
}
