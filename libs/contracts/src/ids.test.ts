import { describe, expect, it } from 'vitest';
import { stableUuid } from './ids.ts';

describe('ids', () => {
  it('ids - a name always gives the same RFC 4122 UUID, different names different ones', () => {
    const a = stableUuid('dataset-ready:x:1');
    expect(a).toBe(stableUuid('dataset-ready:x:1'));
    expect(a).not.toBe(stableUuid('dataset-ready:x:2'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
