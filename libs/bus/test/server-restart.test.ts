import { afterEach, describe, expect, it } from 'vitest';
import { subjects } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';
import { connectBus } from '../src/index.ts';
import type { Bus, PublishResult } from '../src/index.ts';
import { startNatsServer } from '../src/testing.ts';
import type { OwnedNatsServer } from '../src/testing.ts';

const TOTAL = 10_000;
const IN_FLIGHT = 200;
const KILL_AT = 2_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Admin queries right after a restart may time out while JetStream recovers: retry them. */
async function patiently<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= 5) throw e;
      await sleep(500);
    }
  }
}

describe('bus server restart', () => {
  let server: OwnedNatsServer | undefined;
  let bus: Bus | undefined;
  afterEach(async () => {
    await bus?.close();
    await server?.stop();
    bus = undefined;
    server = undefined;
  });

  it('bus - nats-server kill -9 during 10,000 publishes, restarted on its store: no acked message lost, no duplicate, consumer resumes', async () => {
    server = await startNatsServer();
    bus = await connectBus({
      servers: server.url,
      reconnectTimeWaitMs: 100,
      publishRetryMs: 30_000,
      publishAttemptTimeoutMs: 1_000,
    });
    const b = bus;
    const processed = new Map<string, number>(); // event id -> times handled
    let restarted = false;
    const seqsAfterRestart: number[] = [];
    // Closed from the kill until the persisted ack floor has been read after
    // the restart, so no handler acks anything in between.
    let gate: Promise<void> | undefined;
    let openGate: () => void = () => undefined;
    await b.consume(
      subjects.servingSample,
      async (e, d) => {
        if (restarted) seqsAfterRestart.push(d.streamSequence);
        if (gate !== undefined) await gate;
        processed.set(e.id, (processed.get(e.id) ?? 0) + 1);
      },
      { durable: 'eval-samples', concurrency: 32, backoffMs: [1_000], maxDeliver: 20 },
    );

    const acked: PublishResult[] = [];
    let next = 0;
    let killed: Promise<void> | undefined;
    let floorBeforeKill = 0;
    let floorAfterRestart = 0;
    const kill = async (): Promise<void> => {
      floorBeforeKill = (await b.jsm.consumers.info(b.layout.events, 'eval-samples')).ack_floor.stream_seq;
      gate = new Promise<void>((r) => (openGate = r));
      await server?.kill('SIGKILL');
      await sleep(300);
      await server?.restart();
      restarted = true;
      floorAfterRestart = (await patiently(() => b.jsm.consumers.info(b.layout.events, 'eval-samples'))).ack_floor.stream_seq;
      gate = undefined;
      openGate();
    };
    // Paced at ~2,000/s so the kill (about 2 s in) lands mid-stream.
    const start = Date.now();
    const worker = async (): Promise<void> => {
      while (next < TOTAL) {
        const i = next++;
        const due = start + i / 2;
        if (due > Date.now()) await sleep(due - Date.now());
        if (i === KILL_AT) killed = kill();
        const data = { ...validPayloads[subjects.servingSample], requestId: `req-${i}` };
        acked.push(await b.publish(subjects.servingSample, data));
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    await killed;

    // Every publish was acked (after retries); the stream holds each exactly once.
    expect(acked).toHaveLength(TOTAL);
    const info = await patiently(() => b.jsm.streams.info(b.layout.events));
    expect(info.state.messages).toBe(TOTAL);
    expect(new Set(acked.map((a) => a.seq)).size).toBe(TOTAL);
    const retried = acked.filter((a) => a.attempts > 1);
    expect(retried.length).toBeGreaterThan(0); // the kill really hit publishes in flight

    // The consumer catches up after the restart: every acked event handled.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ci = await patiently(() => b.jsm.consumers.info(b.layout.events, 'eval-samples'));
      if (ci.ack_floor.stream_seq === TOTAL && ci.num_ack_pending === 0 && ci.num_pending === 0) break;
      if (Date.now() > deadline) throw new Error(`consumer stuck: ${JSON.stringify(ci.ack_floor)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const a of acked) expect(processed.has(a.id)).toBe(true);
    expect(processed.size).toBe(TOTAL);
    // Resumed from its (persisted) ack floor: nothing at or below it returns.
    // (The event right above it need not be redelivered: a handler that was
    // held at the gate through the restart may ack it late, and the restarted
    // server accepts that ack.)
    expect(floorAfterRestart).toBeGreaterThan(0);
    expect(Math.min(...seqsAfterRestart)).toBeGreaterThan(floorAfterRestart);
    const handledTwice = [...processed.values()].filter((n) => n > 1).length;
    console.log(
      `server-restart: ${retried.length} publishes retried; consumer ack floor ${floorBeforeKill} just before the kill, ` +
        `${floorAfterRestart} after the restart (nats-server persists acks asynchronously); ` +
        `${seqsAfterRestart.length} deliveries after the restart, ${handledTwice} events handled twice`,
    );
  }, 120_000);
});
