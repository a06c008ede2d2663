import { afterEach, describe, expect, it } from 'vitest';
import { subjects } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';
import { createTestBus } from './testing.ts';
import type { TestBus } from './testing.ts';

describe('bus dedup', () => {
  let t: TestBus | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('bus - 1,000 events published three times each with the same id are stored exactly once', async () => {
    t = await createTestBus();
    const { bus } = t;
    const ids = Array.from({ length: 1000 }, () => crypto.randomUUID());
    const data = validPayloads[subjects.dataDatasetFailed];
    let duplicates = 0;
    const seqById = new Map<string, number>();
    for (let round = 0; round < 3; round++) {
      // 100 publishes in flight at a time.
      for (let i = 0; i < ids.length; i += 100) {
        const acks = await Promise.all(ids.slice(i, i + 100).map((id) => bus.publish(subjects.dataDatasetFailed, data, { id })));
        for (const a of acks) {
          if (a.duplicate) {
            duplicates++;
            expect(a.seq).toBe(seqById.get(a.id)); // a duplicate reports the original's sequence
          } else {
            expect(seqById.has(a.id)).toBe(false);
            seqById.set(a.id, a.seq);
          }
        }
      }
    }
    const info = await bus.jsm.streams.info(bus.layout.events);
    expect(info.state.messages).toBe(1000);
    expect(seqById.size).toBe(1000);
    expect(duplicates).toBe(2000);
  });

  it('bus - publish refuses an invalid payload and an unknown subject without sending', async () => {
    t = await createTestBus();
    const { bus } = t;
    await expect(
      bus.publish(subjects.dataDatasetFailed, { jobId: 'j' } as never),
    ).rejects.toMatchObject({ name: 'InvalidEventError', subject: subjects.dataDatasetFailed });
    await expect(bus.publish('fw.nope.x' as never, {} as never)).rejects.toThrow(/unknown subject/);
    const info = await bus.jsm.streams.info(bus.layout.events);
    expect(info.state.messages).toBe(0);
  });

  it('bus - provisioning is idempotent and keeps stored events', async () => {
    t = await createTestBus({ streams: { duplicateWindowMs: 60_000 } });
    const { bus } = t;
    await bus.publish(subjects.dataDatasetFailed, validPayloads[subjects.dataDatasetFailed]);
    await bus.provision();
    await bus.provision();
    const info = await bus.jsm.streams.info(bus.layout.events);
    expect(info.state.messages).toBe(1);
    expect(info.config.duplicate_window).toBe(60_000 * 1_000_000);
    expect(info.config.subjects).toContain(`${t.namespace}.fw.data.>`);
    const dlq = await bus.jsm.streams.info(bus.layout.deadLetters);
    expect(dlq.config.subjects).toEqual([`${t.namespace}.fw.dlq.>`]);
  });
});
