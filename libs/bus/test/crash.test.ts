import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { subjects } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';
import { createTestBus, natsUrl } from '../src/testing.ts';
import type { TestBus } from '../src/testing.ts';

const CHILD = fileURLToPath(new URL('./crash-consumer.ts', import.meta.url));
const N = 200;
const KILLS = 50;

function runChild(env: Record<string, string>): { exited: Promise<string | null>; stop: () => void } {
  const p = spawn(process.execPath, [CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<string | null>((resolve) => p.once('exit', (_code, signal) => resolve(signal)));
  return { exited, stop: () => p.kill('SIGTERM') };
}

describe('bus crash safety', () => {
  let t: TestBus | undefined;
  let db: pg.Client | undefined;
  let table = '';
  afterEach(async () => {
    if (db !== undefined) {
      await db.query(`DROP TABLE IF EXISTS ${table}, ${table}_log`);
      await db.end();
    }
    await t?.cleanup();
    db = undefined;
    t = undefined;
  });

  it('bus - a consumer SIGKILLed between its database write and its ack, 50 times: every event applied exactly once', async () => {
    t = await createTestBus();
    const { bus, namespace } = t;
    table = `bus_crash_${namespace.toLowerCase()}`;
    db = new pg.Client({ connectionString: process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres' });
    await db.connect();
    await db.query(`CREATE TABLE ${table} (event_id uuid PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(`CREATE TABLE ${table}_log (event_id uuid NOT NULL, delivery int NOT NULL)`);

    // The durable must exist before the first child, so no child races to create it.
    await bus.jsm.consumers.add(bus.layout.events, {
      durable_name: 'crash',
      ack_policy: 'explicit',
      filter_subject: bus.layout.wireSubject(subjects.dataIngestRequested),
      max_deliver: 1000,
      ack_wait: 250_000_000,
      backoff: [250_000_000],
    });
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const r = await bus.publish(subjects.dataIngestRequested, validPayloads[subjects.dataIngestRequested]);
      ids.push(r.id);
    }

    const env = { NATS_URL: natsUrl(), FW_NS: namespace, FW_TABLE: table };
    let kills = 0;
    for (let i = 0; i < KILLS; i++) {
      const killAfter = 1 + Math.floor(Math.random() * 3);
      const child = runChild({ ...env, FW_KILL_AFTER: String(killAfter) });
      const signal = await child.exited;
      expect(signal).toBe('SIGKILL');
      kills++;
    }

    // A last consumer that lives: it must finish everything, redeliveries included.
    const survivor = runChild({ ...env, FW_KILL_AFTER: '0' });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ci = await bus.jsm.consumers.info(bus.layout.events, 'crash');
      if (ci.num_pending === 0 && ci.num_ack_pending === 0) break;
      if (Date.now() > deadline) throw new Error(`consumer did not finish: ${JSON.stringify(ci)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    survivor.stop();
    await survivor.exited;

    const rows = await db.query<{ event_id: string }>(`SELECT event_id FROM ${table}`);
    expect(rows.rowCount).toBe(N);
    expect(new Set(rows.rows.map((r) => r.event_id))).toEqual(new Set(ids));
    const log = await db.query<{ writes: string; redelivered: string }>(
      `SELECT count(*) AS writes, count(*) FILTER (WHERE delivery > 1) AS redelivered FROM ${table}_log`,
    );
    // Every kill left one written-but-unacked event, which came back and was a no-op the second time.
    expect(kills).toBe(KILLS);
    expect(Number(log.rows[0]?.writes)).toBeGreaterThanOrEqual(N + KILLS);
    expect(Number(log.rows[0]?.redelivered)).toBeGreaterThanOrEqual(KILLS);
    const dlq = await bus.jsm.streams.info(bus.layout.deadLetters);
    expect(dlq.state.messages).toBe(0);
  }, 180_000);

  it('bus - a consumer killed on the last allowed delivery: the event is dead-lettered, not silently dropped', async () => {
    t = await createTestBus();
    const { bus, namespace } = t;
    table = `bus_crash_${namespace.toLowerCase()}`;
    db = new pg.Client({ connectionString: process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres' });
    await db.connect();
    await db.query(`CREATE TABLE ${table} (event_id uuid PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    await db.query(`CREATE TABLE ${table}_log (event_id uuid NOT NULL, delivery int NOT NULL)`);
    const pub = await bus.publish(subjects.dataIngestRequested, validPayloads[subjects.dataIngestRequested]);
    // maxDeliver 1: the child's only delivery dies unacked.
    const child = runChild({ NATS_URL: natsUrl(), FW_NS: namespace, FW_TABLE: table, FW_KILL_AFTER: '1', FW_MAX_DELIVER: '1' });
    expect(await child.exited).toBe('SIGKILL');
    // A surviving replica of the same consumer hears JetStream give up.
    let handled = 0;
    await bus.consume(subjects.dataIngestRequested, () => void handled++, { durable: 'crash', backoffMs: [250], maxDeliver: 1 });
    const deadline = Date.now() + 10_000;
    while ((await bus.jsm.streams.info(bus.layout.deadLetters)).state.messages === 0) {
      if (Date.now() > deadline) throw new Error('no dead letter after max deliveries');
      await new Promise((r) => setTimeout(r, 50));
    }
    const dl = await bus.jsm.streams.getMessage(bus.layout.deadLetters, { seq: 1 });
    expect(dl?.json()).toMatchObject({
      kind: 'max-deliveries',
      subject: subjects.dataIngestRequested,
      streamSequence: pub.seq,
      deliveryCount: 1,
      consumer: 'crash',
      eventId: pub.id,
    });
    expect(handled).toBe(0);
  }, 60_000);
});
