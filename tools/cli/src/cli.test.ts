/**
 * The `flywheel` command against a real trainer process (real NATS, Postgres
 * and fw_worker): submit --watch with its progress output and exit code,
 * list/get/cancel with --json, usage errors, a refused request, an
 * unreachable trainer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createArtifactStore } from '@flywheel/artifacts';
import { createTestBus, freePort, type TestBus } from '@flywheel/bus/testing';
import { createTestDb, type TestDb } from '@flywheel/db/testing';

const CLI = new URL('./main.ts', import.meta.url).pathname;
const TRAINER = new URL('../../../services/trainer/src/main.ts', import.meta.url).pathname;
const CONFIG = {
  model_type: 'llama', vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 4, max_position_embeddings: 64, rms_norm_eps: 1e-5, tie_word_embeddings: true,
};
let tdb: TestDb;
let tbus: TestBus;
let root: string;
let trainer: ChildProcess;
let url: string;
let manifestUri: string;
let configPath: string;
const token = randomBytes(20).toString('hex');

/** A FWSHARD1 shard (docs/formats.md) of random documents. */
function shard(nDocs: number): Buffer {
  const docs = Array.from({ length: nDocs }, (_, d) => Array.from({ length: 40 }, (_, i) => (i === 39 ? 2 : 3 + ((d * 31 + i * 17) % 290))));
  const n = nDocs * 40;
  const buf = Buffer.alloc(64 + 8 * (nDocs + 1) + 2 * n);
  buf.write('FWSHARD1', 0, 'ascii');
  buf.writeUInt32LE(1, 8);
  buf.writeUInt32LE(2, 12);
  buf.writeBigUInt64LE(BigInt(n), 16);
  buf.writeBigUInt64LE(BigInt(nDocs), 24);
  buf.writeUInt32LE(300, 32);
  for (let d = 0; d <= nDocs; d++) buf.writeBigUInt64LE(BigInt(d * 40), 64 + 8 * d);
  let off = 64 + 8 * (nDocs + 1);
  for (const doc of docs)
    for (const t of doc) {
      buf.writeUInt16LE(t, off);
      off += 2;
    }
  return buf;
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FW_TRAINER_URL: url, FW_API_TOKEN: token, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  tdb = await createTestDb({ prefix: 'trainer' });
  tbus = await createTestBus({ source: 'cli-test' });
  root = await mkdtemp(join(tmpdir(), 'fw-cli-test-'));
  const artifacts = createArtifactStore(`file://${root}/artifacts/`);
  const train = shard(60);
  const t = await artifacts.put('datasets/cli/v1/train-00000.bin', train);
  const manifest = { dataset: 'cli', version: '00000000', splits: [{ name: 'train', shards: [{ file: 'train-00000.bin', uri: t.uri, sha256: createHash('sha256').update(train).digest('hex'), n_tokens: 2400 }] }] };
  manifestUri = (await artifacts.put('datasets/cli/v1/manifest.json', Buffer.from(JSON.stringify(manifest)))).uri;
  configPath = join(root, 'config.json');
  await writeFile(configPath, JSON.stringify(CONFIG));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  trainer = spawn(process.execPath, [TRAINER], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      FW_API_TOKENS: token,
      FW_TRAINER_DB_SCHEMA: tdb.schema,
      FW_BUS_NAMESPACE: tbus.namespace,
      FW_ARTIFACT_ROOT: `file://${root}/artifacts/`,
      FW_WORK_DIR: join(root, 'work'),
      PORT: String(port),
      FW_STORE_PORT: '0',
      FW_MAX_RANKS: '2',
      LOG_LEVEL: 'warn',
    },
  });
  for (let i = 0; i < 300; i++) {
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('trainer did not start');
}, 60_000);

afterAll(async () => {
  if (trainer && trainer.exitCode === null) {
    trainer.kill('SIGTERM');
    await new Promise((r) => trainer.once('exit', r));
  }
  await tbus?.cleanup();
  await tdb?.drop();
  await rm(root, { recursive: true, force: true });
});

describe('cli', () => {
  it('cli - runs submit --watch shows progress with loss, tokens/s and ETA, and exits 0 when the run completes', async () => {
    const r = await cli(['runs', 'submit', '--manifest', manifestUri, '--config', configPath, '--steps', '60', '--lr', '1e-3', '--batch-size', '4', '--seq-len', '32', '--checkpoint-interval', '10', '--watch']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^run [0-9a-f-]{36} queued/m);
    expect(r.stdout).toMatch(/\[#{30}\] 60\/60 100% {2}loss \d+\.\d{4} {2}[\d.]+k? tok\/s {2}ETA /);
    expect(r.stdout).toMatch(/^completed: file:\/\/.*\/models\/[0-9a-f-]{36}\/$/m);
  });

  it('cli - list, get and cancel with --json', async () => {
    const sub = await cli(['runs', 'submit', '--manifest', manifestUri, '--config', configPath, '--steps', '100000', '--batch-size', '4', '--seq-len', '32', '--recompute', '--json']);
    expect(sub.code, sub.stderr).toBe(0);
    const id = (JSON.parse(sub.stdout) as { id: string }).id;
    expect(JSON.parse(sub.stdout)).toMatchObject({ spec: { hyperparameters: { recompute: true } } });
    const list = await cli(['runs', 'list', '--json']);
    expect((JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id)).toContain(id);
    const table = await cli(['runs', 'list']);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+DATASET\s+STEP\s+LOSS\s+RESTARTS\s+CREATED$/);
    const cancel = await cli(['runs', 'cancel', id, '--json']);
    expect(cancel.code, cancel.stderr).toBe(0);
    const watched = await cli(['runs', 'watch', id]);
    expect(watched.code).toBe(1);
    expect(watched.stdout).toMatch(/cancelled: cancelled on request/);
    const got = await cli(['runs', 'get', id, '--json']);
    expect(JSON.parse(got.stdout)).toMatchObject({ id, status: 'cancelled' });
    const text = await cli(['runs', 'get', id]);
    expect(text.stdout).toMatch(/^attempt 0 {2}cancelled/m);
    expect(text.stdout).toMatch(/^ranks {6}1 on cpu \(fp32\)$/m);
  });

  it('cli - a run that fails exits 1 with the reason', async () => {
    await writeFile(join(root, 'bad.json'), JSON.stringify({ ...CONFIG, num_attention_heads: 5 }));
    const r = await cli(['runs', 'submit', '--manifest', manifestUri, '--config', join(root, 'bad.json'), '--steps', '5', '--batch-size', '4', '--seq-len', '32', '--watch']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^failed: rank 0 exited with code 2/m);
  });

  it('cli - usage errors exit 2, refused requests 1, an unreachable trainer 3; help exits 0', async () => {
    expect((await cli([])).code).toBe(2);
    expect((await cli(['runs', 'frobnicate'])).code).toBe(2);
    expect((await cli(['runs', 'submit', '--steps', 'ten', '--manifest', manifestUri, '--config', configPath])).code).toBe(2);
    expect((await cli(['runs', 'submit', '--config', configPath, '--steps', '5'])).stderr).toMatch(/--dataset NAME\[@VERSION\] or --manifest URI/);
    expect((await cli(['runs', 'get'])).code).toBe(2);
    const dev = await cli(['runs', 'submit', '--manifest', manifestUri, '--config', configPath, '--steps', '5', '--device', 'tpu']);
    expect(dev.code).toBe(2);
    expect(dev.stderr).toMatch(/--device must be cpu or cuda/);
    expect((await cli(['runs', 'list', '--bogus'])).code).toBe(2);
    const help = await cli(['runs', 'submit', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--dataset NAME\[@VERSION\]/);
    expect((await cli(['--help'])).stdout).toMatch(/Exit codes: 0 ok/);
    const unknown = await cli(['runs', 'submit', '--dataset', 'nope@latest', '--config', configPath, '--steps', '5']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/404: dataset nope@latest is unknown/);
    // this trainer has no GPUs (FW_GPUS unset): a cuda run is refused with the reason
    const gpu = await cli(['runs', 'submit', '--manifest', manifestUri, '--config', configPath, '--steps', '5', '--device', 'cuda']);
    expect(gpu.code).toBe(1);
    expect(gpu.stderr).toMatch(/FW_GPUS=0/);
    const zero1 = await cli(['runs', 'submit', '--manifest', manifestUri, '--config', configPath, '--steps', '5', '--zero1']);
    expect(zero1.code).toBe(1);
    expect(zero1.stderr).toMatch(/zero1 needs device cuda/);
    expect((await cli(['runs', 'list'], { FW_API_TOKEN: 'wrong-token-wrong-token' })).code).toBe(1);
    const port = await freePort();
    const down = await cli(['runs', 'list'], { FW_TRAINER_URL: `http://127.0.0.1:${port}` });
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/cannot reach the trainer/);
  });
});
