import { describe, expect, it } from 'vitest';
import { resolveConfig } from './config.ts';
import { assignSplits, splitKey, stratumOf } from './split.ts';
import type { CleanRecord } from './types.ts';

const cfg = resolveConfig({}).split;
const recs: CleanRecord[] = Array.from({ length: 1000 }, (_, i) => ({ id: String(i), text: `document number ${i}`, fields: { lang: i % 10 === 0 ? 'zh' : 'en' } }));

function split(rs: CleanRecord[], c = cfg): Map<string, number> {
  const keys = Float64Array.from(rs.map((r) => splitKey(r, c.seed)));
  const a = assignSplits(keys, rs.map((r) => stratumOf(r, c.stratify_by)), c);
  return new Map(rs.map((r, i) => [r.id, a[i]!]));
}

describe('split', () => {
  it('split - has the configured proportions and does not depend on input order', () => {
    const a = split(recs);
    const counts = [0, 0, 0];
    for (const v of a.values()) counts[v]!++;
    expect(counts).toEqual([800, 100, 100]);
    const shuffled = [...recs].reverse();
    expect(split(shuffled)).toEqual(a);
  });

  it('split - depends on content, not ids, and changes with the seed', () => {
    const renamed = recs.map((r, i) => ({ ...r, id: String(i) }));
    expect(split(renamed)).toEqual(split(recs));
    const other = split(recs, { ...cfg, seed: 99 });
    expect(other).not.toEqual(split(recs));
  });

  it('split - stratifies: each stratum split in the same proportions', () => {
    const a = split(recs, { ...cfg, stratify_by: 'lang' });
    const per = { zh: [0, 0, 0], en: [0, 0, 0] };
    for (const r of recs) per[r.fields!.lang as 'zh' | 'en'][a.get(r.id)!]!++;
    expect(per.zh).toEqual([80, 10, 10]);
    expect(per.en).toEqual([720, 90, 90]);
  });

  it('split - stratum of a missing field is the empty stratum; non-strings are JSON', () => {
    expect(stratumOf({ id: '1', text: 'x' }, 'lang')).toBe('');
    expect(stratumOf({ id: '1', text: 'x', fields: { n: 3 } }, 'n')).toBe('3');
    expect(stratumOf({ id: '1', text: 'x', fields: { n: 3 } }, undefined)).toBe('');
  });
});
