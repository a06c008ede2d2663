/**
 * The data service as real processes: replicas share one JetStream queue, a
 * replica killed with SIGKILL mid-job leaves no half-made version and the job
 * is picked up again, and a 1 GiB upload streams through in bounded memory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestBus, freePort, type TestBus } from '@flywheel/bus/testing';
import { createTestDb, type TestDb } from '@flywheel/db/testing';
import { createArtifactStore } from '@flywheel/artifacts';
import { MIGRATIONS_DIR } from '../src/app.ts';
import { createJobsRepository } from '../src/repositories/jobs.repository.ts';
import { createDatasetsRepository } from '../src/repositories/datasets.repository.ts';
import { corpus } from './harness.ts';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const token = randomBytes(20).toString('hex');
const auth = { authorization: `Bearer ${token}` };

let tdb: TestDb;
let tbus: TestBus;
let root: string;
const children: ChildProcess[] = [];

interface Replica {
  proc: ChildProcess;
  url: string;
  id: string;
}

async function startReplica(id: string): Promise<Replica> {
  const port = await freePort();
  const proc = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      PORT: String(port),
      FW_API_TOKENS: token,
      FW_BUS_NAMESPACE: tbus.namespace,
      FW_DATA_DB_SCHEMA: tdb.schema,
      FW_ARTIFACT_ROOT: `file://${root}/artifacts/`,
      FW_WORK_DIR: join(root, `work-${id}`),
      FW_INSTANCE_ID: id,
      FW_JOB_STALE_MS: '2000',
      FW_INGEST_BACKOFF_MS: '500,1000,2000,4000',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  children.push(proc);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`replica ${id} exited ${proc.exitCode}: ${stderr}`);
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) return { proc, url, id };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`replica ${id} did not become ready: ${stderr}`);
}

function kill9(r: Replica): Promise<void> {
  return new Promise((resolve) => {
    r.proc.once('exit', () => resolve());
    r.proc.kill('SIGKILL');
  });
}

async function submit(r: Replica, name: string, body: string): Promise<string> {
  const res = await fetch(`${r.url}/v1/datasets/${name}/uploads?format=jsonl`, { method: 'POST', headers: auth, body });
  expect(res.status).toBe(202);
  return ((await res.json()) as { job: { id: string } }).job.id;
}

const jobs = () => createJobsRepository(tdb.db);

async function waitJob(id: string, pred: (j: NonNullable<Awaited<ReturnType<ReturnType<typeof jobs>['get']>>>) => boolean, timeoutMs = 90_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const j = await jobs().get(id);
    if (j && pred(j)) return j;
    if (Date.now() > until) throw new Error(`job ${id}: condition not met (status ${j?.status}, ${JSON.stringify(j?.progress)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  tdb = await createTestDb({ prefix: 'datarep', migrationsDir: MIGRATIONS_DIR });
  tbus = await createTestBus();
  root = await mkdtemp(join(tmpdir(), 'fw-data-rep-'));
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) await new Promise<void>((res) => { c.once('exit', () => res()); c.kill('SIGTERM'); });
});
afterAll(async () => {
  await tbus?.cleanup();
  await tdb?.drop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('data replicas', () => {
  it('data replicas - two processes share the ingest queue; every job runs once', async () => {
    const a = await startReplica('rep-a');
    const b = await startReplica('rep-b');
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await submit(i % 2 ? b : a, `shared-${i}`, corpus(1500, 100 + i)));
    const done = await Promise.all(ids.map((id) => waitJob(id, (j) => j.status === 'succeeded' || j.status === 'failed')));
    for (const j of done) expect(j).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(new Set(done.map((j) => j.owner))).toEqual(new Set(['rep-a', 'rep-b']));
  }, 180_000);

  it('data replicas - a replica killed mid-job leaves no half-made version; another picks the job up', async () => {
    const a = await startReplica('crash-a');
    const id = await submit(a, 'crashy', corpus(12000, 200));
    await waitJob(id, (j) => j.status === 'running' && Number(j.progress['recordsRead'] ?? 0) > 0);
    await kill9(a);
    const datasets = createDatasetsRepository(tdb.db);
    expect(await datasets.versions('crashy')).toEqual([]);
    expect((await jobs().get(id))!.status).toBe('running');

    await startReplica('crash-b');
    const job = await waitJob(id, (j) => j.status === 'succeeded' || j.status === 'failed', 120_000);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2, owner: 'crash-b' });
    const versions = await datasets.versions('crashy');
    expect(versions).toHaveLength(1);
    // Every stored artifact of the version is whole: shard bytes match the manifest's hashes.
    const store = createArtifactStore(`file://${root}/artifacts/`);
    const manifest = versions[0]!.manifest as { splits: { shards: { uri: string; sha256: string }[] }[] };
    const { createHash } = await import('node:crypto');
    for (const s of manifest.splits.flatMap((x) => x.shards)) {
      const h = createHash('sha256');
      for await (const chunk of await store.get(s.uri)) h.update(chunk as Buffer);
      expect(h.digest('hex')).toBe(s.sha256);
    }
  }, 240_000);

  it('data replicas - a 1 GiB upload streams through in bounded memory', async () => {
    const a = await startReplica('mem-a');
    const peak = async () => Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${a.proc.pid}/status`, 'utf8'))![1]) * 1024;
    const before = await peak();
    const GiB = 1024 ** 3;
    const chunk = Buffer.alloc(1024 ** 2, 0x61);
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= GiB) return this.push(null);
        sent += chunk.length;
        this.push(chunk);
      },
    });
    const res = await fetch(`${a.url}/v1/uploads`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: Readable.toWeb(body) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(201);
    expect(((await res.json()) as { size: number }).size).toBe(GiB);
    const grown = (await peak()) - before;
    console.log(`1 GiB upload: replica peak RSS grew by ${(grown / 1024 ** 2).toFixed(1)} MiB`);
    expect(grown).toBeLessThan(256 * 1024 ** 2);
  }, 180_000);
});
