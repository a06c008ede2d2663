import { afterEach, describe, expect, it } from 'vitest';
import { createTestBus } from './testing.ts';
import type { TestBus } from './testing.ts';
import { kvBucketName, openKv } from './kv.ts';
import { isBusConfigError } from './errors.ts';
import { idempotent, kvIdempotencyStore } from './idempotency.ts';
import { subjects } from '@flywheel/contracts';
import type { DeliveryContext } from './types.ts';
import { createEnvelope } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';

describe('bus kv', () => {
  let t: TestBus | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('bus - openKv creates a namespaced bucket once and reopens it with its data', async () => {
    t = await createTestBus();
    const { bus, namespace } = t;
    const kv = await openKv(bus, 'rendezvous');
    await kv.put('run-1.rank-0', 'tcp://10.0.0.1:29500');
    const again = await openKv(bus, 'rendezvous');
    expect((await again.get('run-1.rank-0'))?.string()).toBe('tcp://10.0.0.1:29500');
    expect(kvBucketName(bus, 'rendezvous')).toBe(`${namespace}_rendezvous`);
    const names: string[] = [];
    for await (const n of bus.jsm.streams.names()) names.push(n);
    expect(names).toContain(`KV_${namespace}_rendezvous`);
    await expect(openKv(bus, 'bad name')).rejects.toSatisfy(isBusConfigError);
  });

  it('bus - kvIdempotencyStore makes a handler skip an event it already handled', async () => {
    t = await createTestBus();
    const kv = await openKv(t.bus, 'done');
    let runs = 0;
    const handler = idempotent<typeof subjects.dataDatasetFailed>(kvIdempotencyStore(kv), () => void runs++);
    const event = createEnvelope(subjects.dataDatasetFailed, validPayloads[subjects.dataDatasetFailed]);
    const delivery = { deliveryCount: 1 } as DeliveryContext;
    await handler(event, delivery);
    await handler(event, { ...delivery, deliveryCount: 2 });
    expect(runs).toBe(1);
  });
});
