import { afterEach, describe, expect, it } from 'vitest';
import { DeadLetterV1, subjects, validateEvent } from '@flywheel/contracts';
import type { DeadLetter } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Bus } from './types.ts';
import { createTestBus } from './testing.ts';
import type { TestBus } from './testing.ts';
import { idempotent, memoryIdempotencyStore } from './idempotency.ts';
import { isBusConfigError } from './errors.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Every dead letter stored for the bus's namespace, parsed and schema-checked. */
async function deadLetters(bus: Bus): Promise<DeadLetter[]> {
  const info = await bus.jsm.streams.info(bus.layout.deadLetters);
  const out: DeadLetter[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await bus.jsm.streams.getMessage(bus.layout.deadLetters, { seq });
    if (m === null) continue;
    const body: unknown = m.json();
    const { Value } = await import('@sinclair/typebox/value');
    expect(Value.Check(DeadLetterV1, body), JSON.stringify([...Value.Errors(DeadLetterV1, body)])).toBe(true);
    out.push(body as DeadLetter);
  }
  return out;
}

describe('bus consumer', () => {
  let t: TestBus | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('bus - a handler that always fails gets maxDeliver deliveries spaced by the backoff, then one dead letter', async () => {
    t = await createTestBus();
    const { bus } = t;
    const backoffMs = [150, 300, 600];
    const maxDeliver = 4;
    const times: number[] = [];
    const counts: number[] = [];
    await bus.consume(
      subjects.dataDatasetFailed,
      (_e, d) => {
        times.push(performance.now());
        counts.push(d.deliveryCount);
        throw new Error(`boom on delivery ${d.deliveryCount}`);
      },
      { durable: 'always-fails', maxDeliver, backoffMs },
    );
    const pub = await bus.publish(subjects.dataDatasetFailed, validPayloads[subjects.dataDatasetFailed]);
    await waitFor(async () => (await bus.jsm.streams.info(bus.layout.deadLetters)).state.messages > 0, 10_000, 'a dead letter');
    await sleep(1200); // longer than any backoff step: no further delivery, no second dead letter
    expect(counts).toEqual([1, 2, 3, 4]);
    for (let i = 1; i < times.length; i++) {
      const gap = (times[i] as number) - (times[i - 1] as number);
      const want = backoffMs[i - 1] as number;
      // Measured between two receipts, so a first delivery that reached the
      // handler late makes the gap look shorter than the server's timer (seen:
      // 131 ms for a 150 ms step); an immediate redelivery would be ~0 ms.
      expect(gap, `gap before delivery ${i + 1}`).toBeGreaterThanOrEqual(want * 0.6);
      // Upper bound with room for a loaded CI machine; still far below the 30 s default ack wait.
      expect(gap, `gap before delivery ${i + 1}`).toBeLessThan(want + 1000);
    }
    const dl = await deadLetters(bus);
    expect(dl).toHaveLength(1);
    const [d] = dl as [DeadLetter];
    expect(d).toMatchObject({
      kind: 'max-deliveries',
      subject: subjects.dataDatasetFailed,
      stream: bus.layout.events,
      streamSequence: pub.seq,
      deliveryCount: maxDeliver,
      consumer: 'always-fails',
      reason: 'boom on delivery 4',
      eventId: pub.id,
      payloadEncoding: 'json',
    });
    expect((d.payload as { data: unknown }).data).toEqual(validPayloads[subjects.dataDatasetFailed]);
    const ci = await bus.jsm.consumers.info(bus.layout.events, 'always-fails');
    expect(ci.num_ack_pending).toBe(0);
    expect(ci.num_pending).toBe(0);
  });

  it('bus - a message failing validation is dead-lettered with its errors, not dropped', async () => {
    t = await createTestBus();
    const { bus } = t;
    let handled = 0;
    await bus.consume(subjects.dataIngestRequested, () => void handled++, { durable: 'ingest', backoffMs: [100], maxDeliver: 3 });
    const wire = bus.layout.wireSubject(subjects.dataIngestRequested);
    const h = natsHeaders();
    h.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    const bad = {
      id: crypto.randomUUID(),
      subject: subjects.dataIngestRequested,
      version: 1,
      time: new Date().toISOString(),
      data: { datasetName: 'x', source: { uri: 'not a uri' }, format: 'xml' },
    };
    const a1 = await bus.js.publish(wire, JSON.stringify(bad), { headers: h });
    const a2 = await bus.js.publish(wire, new Uint8Array([0xff, 0x00, 0x7b]));
    const a3 = await bus.js.publish(wire, JSON.stringify({ ...bad, version: 7, data: validPayloads[subjects.dataIngestRequested] }));
    await waitFor(async () => (await bus.jsm.streams.info(bus.layout.deadLetters)).state.messages >= 3, 10_000, '3 dead letters');
    const dl = await deadLetters(bus);
    expect(dl.map((d) => d.streamSequence)).toEqual([a1.seq, a2.seq, a3.seq]);
    expect(dl.every((d) => d.kind === 'invalid' && d.deliveryCount === 1 && d.consumer === 'ingest')).toBe(true);
    const [d1, d2, d3] = dl as [DeadLetter, DeadLetter, DeadLetter];
    expect(d1.errors?.join('\n')).toContain('/data/format');
    expect(d1.errors?.join('\n')).toContain('/data/source/uri');
    expect(d1.eventId).toBe(bad.id);
    expect(d1.payload).toEqual(bad);
    expect(d1.headers?.['traceparent']).toEqual(['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']);
    expect(d2.payloadEncoding).toBe('base64');
    expect(Buffer.from(d2.payload as string, 'base64')).toEqual(Buffer.from([0xff, 0x00, 0x7b]));
    expect(d2.reason).toMatch(/not JSON/);
    expect(d3.reason).toMatch(/unsupported schema version 7/);
    expect(handled).toBe(0);
    // The original is termed right after its dead letter is stored.
    await waitFor(async () => {
      const ci = await bus.jsm.consumers.info(bus.layout.events, 'ingest');
      return ci.num_ack_pending + ci.num_pending === 0;
    }, 5_000, 'the originals to be termed');
  });

  it('bus - a redelivered event is processed once through the idempotency helper', async () => {
    t = await createTestBus();
    const { bus } = t;
    const effects: string[] = [];
    const deliveries: number[] = [];
    const once = idempotent<typeof subjects.dataDatasetReady>(memoryIdempotencyStore(), (e) => {
      effects.push(e.id);
    });
    await bus.consume(
      subjects.dataDatasetReady,
      async (e, d) => {
        deliveries.push(d.deliveryCount);
        await once(e, d);
        // The effect is done, but this first delivery is never acked (as if the
        // process died before its ack): JetStream must deliver it again.
        if (d.deliveryCount === 1) throw new Error('lost ack');
      },
      { durable: 'ready', backoffMs: [100], maxDeliver: 5 },
    );
    const pub = await bus.publish(subjects.dataDatasetReady, validPayloads[subjects.dataDatasetReady]);
    await waitFor(() => deliveries.length >= 2, 5_000, 'the redelivery');
    await waitFor(async () => (await bus.jsm.consumers.info(bus.layout.events, 'ready')).num_ack_pending === 0, 5_000, 'the ack');
    expect(deliveries).toEqual([1, 2]);
    expect(effects).toEqual([pub.id]);
  });

  it('bus - events reach the handler typed and validated, then are acked; stop() waits for in-flight handlers', async () => {
    t = await createTestBus();
    const { bus } = t;
    const seen: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const sub = await bus.consume(
      subjects.trainerRunProgress,
      async (e, d) => {
        expect(validateEvent(subjects.trainerRunProgress, e.data).ok).toBe(true);
        expect(d.subject).toBe(subjects.trainerRunProgress);
        await gate; // longer than the ack wait (100 ms): heartbeats keep it ours
        seen.push(`${e.data.runId}:${e.data.step}`);
      },
      { durable: 'progress', backoffMs: [100, 200], maxDeliver: 3 },
    );
    await bus.publish(subjects.trainerRunProgress, validPayloads[subjects.trainerRunProgress]);
    await sleep(400);
    const stopping = sub.stop();
    let stopped = false;
    void stopping.then(() => (stopped = true));
    await sleep(50);
    expect(stopped).toBe(false); // still waiting for the handler
    release();
    await stopping;
    expect(seen).toEqual(['run-1:10']);
    const ci = await bus.jsm.consumers.info(bus.layout.events, 'progress');
    expect(ci.num_ack_pending).toBe(0);
    expect(ci.num_redelivered).toBe(0);
  });

  it('bus - consumer provisioning is create-or-update and keeps the durable position', async () => {
    t = await createTestBus();
    const { bus } = t;
    const seen: number[] = [];
    const first = await bus.consume(subjects.evalCompleted, (_e, d) => void seen.push(d.streamSequence), {
      durable: 'eval-done',
      maxDeliver: 3,
      backoffMs: [100, 200],
    });
    await bus.publish(subjects.evalCompleted, validPayloads[subjects.evalCompleted]);
    await waitFor(() => seen.length === 1, 5_000, 'the first event');
    await first.stop();
    await bus.publish(subjects.evalCompleted, validPayloads[subjects.evalCompleted]);
    // Same durable, new settings: updated in place, resumes after the acked event.
    await bus.consume(subjects.evalCompleted, (_e, d) => void seen.push(d.streamSequence), {
      durable: 'eval-done',
      maxDeliver: 6,
      backoffMs: [150, 300, 600],
    });
    await waitFor(() => seen.length === 2, 5_000, 'the second event');
    expect(seen).toEqual([1, 2]);
    const ci = await bus.jsm.consumers.info(bus.layout.events, 'eval-done');
    expect(ci.config.max_deliver).toBe(6);
    expect(ci.config.backoff).toEqual([150e6, 300e6, 600e6]);
  });

  it('bus - consume rejects bad options with a clear error', async () => {
    t = await createTestBus();
    const { bus } = t;
    const noop = (): void => undefined;
    const bad = [
      { durable: 'has space' },
      { durable: 'x', maxDeliver: 0 },
      { durable: 'x', backoffMs: [] },
      { durable: 'x', backoffMs: [100, 200], maxDeliver: 2 },
      { durable: 'x', concurrency: 0 },
    ];
    for (const opts of bad) {
      const err = await bus.consume(subjects.servingSample, noop, opts).catch((e: unknown) => e);
      expect(isBusConfigError(err), JSON.stringify(opts)).toBe(true);
    }
  });
});
