/**
 * Test harness for the data service: a real Postgres schema, a real NATS
 * namespace and a temporary artifact root per test file, the real app and
 * the real ingest consumer. Nothing is mocked.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventEnvelope, Subject } from '@flywheel/contracts';
import { createArtifactStore } from '@flywheel/artifacts';
import type { Bus, Subscription } from '@flywheel/bus';
import { createTestBus } from '@flywheel/bus/testing';
import { createTestDb } from '@flywheel/db/testing';
import { buildDataService, MIGRATIONS_DIR, type DataService } from '../src/app.ts';
import { startIngestConsumer } from '../src/consumer.ts';

export interface Harness extends DataService {
  bus: Bus;
  namespace: string;
  token: string;
  root: string;
  artifacts: ReturnType<typeof createArtifactStore>;
  db: Awaited<ReturnType<typeof createTestDb>>['db'];
  schema: string;
  auth: { authorization: string };
  /** Every event of `subject` seen since the harness started, in order. */
  events<S extends Subject>(subject: S): EventEnvelope<S>[];
  waitFor<S extends Subject>(subject: S, pred: (e: EventEnvelope<S>) => boolean, timeoutMs?: number): Promise<EventEnvelope<S>>;
  /** The ready event of the dataset; rejects with the reason when a failed event for it comes first. */
  waitReady(datasetName: string, timeoutMs?: number): Promise<EventEnvelope<'fw.data.dataset.ready'>>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  maxUploadBytes?: number;
  maxRecordBytes?: number;
  consumer?: boolean;
  staleAfterMs?: number;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const tdb = await createTestDb({ prefix: 'data', migrationsDir: MIGRATIONS_DIR });
  const tbus = await createTestBus({ source: 'data' });
  const root = await mkdtemp(join(tmpdir(), 'fw-data-test-'));
  const artifacts = createArtifactStore(`file://${root}/artifacts/`);
  const token = randomBytes(20).toString('hex');
  const svc = await buildDataService({
    db: tdb.db,
    bus: tbus.bus,
    artifacts,
    logger: false,
    apiTokens: [token],
    maxUploadBytes: opts.maxUploadBytes ?? 512 * 1024 ** 2,
    maxRecordBytes: opts.maxRecordBytes ?? 1024 ** 2,
    workRoot: join(root, 'work'),
    instanceId: `test-${process.pid}`,
    staleAfterMs: opts.staleAfterMs ?? 3_000,
  });
  const subs: Subscription[] = [];
  if (opts.consumer ?? true)
    subs.push(await startIngestConsumer(tbus.bus, { job: svc.job, jobs: svc.jobs }, { concurrency: 1, maxDeliver: 4, backoffMs: [500, 1000, 2000] }));

  const seen = new Map<string, EventEnvelope[]>();
  const watchers: (() => void)[] = [];
  for (const subject of ['fw.data.dataset.ready', 'fw.data.dataset.failed', 'fw.data.ingest.requested'] as const) {
    seen.set(subject, []);
    subs.push(
      await tbus.bus.consume(
        subject,
        (e) => {
          seen.get(subject)!.push(e as EventEnvelope);
          for (const w of watchers) w();
        },
        { durable: `test-watch-${subject.replace(/\./g, '-')}`, maxDeliver: 2, backoffMs: [500] },
      ),
    );
  }

  const harness: Harness = {
    ...svc,
    bus: tbus.bus,
    namespace: tbus.namespace,
    token,
    root,
    artifacts,
    db: tdb.db,
    schema: tdb.schema,
    auth: { authorization: `Bearer ${token}` },
    events: <S extends Subject>(subject: S) => (seen.get(subject) ?? []) as EventEnvelope<S>[],
    waitFor<S extends Subject>(subject: S, pred: (e: EventEnvelope<S>) => boolean, timeoutMs = 60_000) {
      return new Promise<EventEnvelope<S>>((resolve, reject) => {
        const check = () => {
          const hit = ((seen.get(subject) ?? []) as EventEnvelope<S>[]).find(pred);
          if (!hit) return false;
          clearTimeout(timer);
          watchers.splice(watchers.indexOf(check as () => void), 1);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          watchers.splice(watchers.indexOf(check as () => void), 1);
          reject(new Error(`no ${subject} event matched within ${timeoutMs} ms`));
        }, timeoutMs);
        if (!check()) watchers.push(check as () => void);
      });
    },
    waitReady(datasetName: string, timeoutMs = 60_000) {
      const ready = harness.waitFor('fw.data.dataset.ready', (e) => e.data.datasetName === datasetName, timeoutMs);
      const failed = harness.waitFor('fw.data.dataset.failed', (e) => e.data.datasetName === datasetName, timeoutMs).then((e) => {
        throw new Error(`dataset ${datasetName} failed at ${e.data.stage}: ${e.data.reason}`);
      });
      failed.catch(() => undefined);
      return Promise.race([ready, failed]);
    },
    async close() {
      for (const s of subs) await s.stop();
      await svc.app.close();
      await tbus.cleanup();
      await tdb.drop();
      await rm(root, { recursive: true, force: true });
    },
  };
  return harness;
}

/** A JSONL corpus of `n` distinct, natural-looking English documents (about 600 characters each). */
export function corpus(n: number, seed = 1): string {
  const subj = 'the engineer|a careful student|our old teacher|the night guard|a young farmer|the museum keeper|my neighbour|the station master|a quiet painter|the librarian|an eager pilot|the baker'.split('|');
  const verb = 'walked to|looked at|wrote about|repaired|painted|visited|remembered|studied|carried|measured|described|opened'.split('|');
  const obj = 'the river bridge|a broken window|the northern market|an old letter|the stone tower|a small garden|the evening train|a wooden boat|the city library|a forgotten map|the harvest field|a silver lamp'.split('|');
  const tail = 'before the rain started|because it was needed|while the others slept|after a long winter|with great patience|for the first time|in the early morning|without saying a word|as the sun went down|when nobody was watching'.split('|');
  let x = seed * 7919 + 17;
  const pick = <T>(a: T[]) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return a[(x >>> 12) % a.length]!;
  };
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const sentences: string[] = [];
    for (let s = 0; s < 8; s++) {
      const t = `${pick(subj)} ${pick(verb)} ${pick(obj)} ${pick(tail)}.`;
      sentences.push(t[0]!.toUpperCase() + t.slice(1));
    }
    sentences.push(`It was entry ${seed}-${i} in the diary.`);
    lines.push(JSON.stringify({ text: sentences.join(' '), topic: i % 3 === 0 ? 'a' : 'b' }));
  }
  return lines.join('\n') + '\n';
}
