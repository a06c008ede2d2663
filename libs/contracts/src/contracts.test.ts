import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DLQ_PREFIX,
  createEnvelope,
  dlqSubject,
  eventRegistry,
  isSubject,
  renderEventCatalogue,
  subjects,
  validateEnvelope,
  validateEvent,
} from './index.ts';
import type { Subject } from './index.ts';
import { validPayloads } from './fixtures.ts';

/** Per subject, payloads that must be rejected, with a fragment of the expected error. */
const invalid: { [S in Subject]: [string, unknown, string][] } = {
  [subjects.dataIngestRequested]: [
    ['bad format', { datasetName: 'x', source: { uri: 'file:///a' }, format: 'xml' }, '/format'],
    ['missing source', { datasetName: 'x', format: 'csv' }, '/source'],
    ['uri without scheme', { datasetName: 'x', source: { uri: '/tmp/a' }, format: 'csv' }, '/source/uri'],
    ['bad dataset name', { datasetName: '../etc', source: { uri: 'file:///a' }, format: 'csv' }, '/datasetName'],
  ],
  [subjects.dataDatasetReady]: [
    ['negative records', withSplit({ name: 'train', records: -1, tokens: 1, shards: 1 }), '/splits/0/records'],
    ['bad sha', { ...validPayloads[subjects.dataDatasetReady], contentSha256: 'xyz' }, '/contentSha256'],
    ['no splits', { ...validPayloads[subjects.dataDatasetReady], splits: [] }, '/splits'],
  ],
  [subjects.dataDatasetFailed]: [
    ['empty reason', { jobId: 'j', datasetName: 'd', reason: '' }, '/reason'],
    ['missing jobId', { datasetName: 'd', reason: 'x' }, '/jobId'],
  ],
  [subjects.trainerRunRequested]: [
    ['bad method', { ...validPayloads[subjects.trainerRunRequested], method: 'qlora' }, '/method'],
    [
      'zero learning rate',
      {
        ...validPayloads[subjects.trainerRunRequested],
        hyperparameters: { maxSteps: 1, learningRate: 0, batchSize: 1, seqLen: 8 },
      },
      '/hyperparameters/learningRate',
    ],
  ],
  [subjects.trainerRunStarted]: [
    ['bad time', { ...validPayloads[subjects.trainerRunStarted], startedAt: 'yesterday' }, '/startedAt'],
    ['bad device', { ...validPayloads[subjects.trainerRunStarted], device: 'tpu' }, '/device'],
  ],
  [subjects.trainerRunProgress]: [['string step', { ...validPayloads[subjects.trainerRunProgress], step: '10' }, '/step']],
  [subjects.trainerRunCheckpointed]: [
    ['fractional step', { ...validPayloads[subjects.trainerRunCheckpointed], step: 1.5 }, '/step'],
  ],
  [subjects.trainerRunCompleted]: [
    ['zero steps', { ...validPayloads[subjects.trainerRunCompleted], steps: 0 }, '/steps'],
  ],
  [subjects.trainerRunFailed]: [['missing reason', { runId: 'r', restarts: 0 }, '/reason']],
  [subjects.evalCompleted]: [
    ['non-numeric metric', { ...validPayloads[subjects.evalCompleted], metrics: { loss: 'low' } }, '/metrics'],
    ['bad decision', { ...validPayloads[subjects.evalCompleted], decision: 'maybe' }, '/decision'],
  ],
  [subjects.modelPromoted]: [
    ['previous missing', { ...validPayloads[subjects.modelPromoted], previousModelId: undefined }, '/previousModelId'],
  ],
  [subjects.driftDetected]: [
    ['no features', { ...validPayloads[subjects.driftDetected], features: [] }, '/features'],
    [
      'p-value above 1',
      {
        ...validPayloads[subjects.driftDetected],
        features: [{ name: 'x', test: 'ks', statistic: 1, pValue: 2, threshold: 0.05, drifted: true }],
      },
      '/features/0/pValue',
    ],
  ],
  [subjects.servingSample]: [
    ['positive logprob', { ...validPayloads[subjects.servingSample], meanLogprob: 0.5 }, '/meanLogprob'],
    ['sketch too long', { ...validPayloads[subjects.servingSample], sketch: new Array(65).fill(0) }, '/sketch'],
  ],
};

function withSplit(split: unknown): unknown {
  return { ...validPayloads[subjects.dataDatasetReady], splits: [split] };
}

const allSubjects = Object.values(subjects);

describe('contracts', () => {
  it('contracts - every subject in `subjects` has a schema, a version and fixtures', () => {
    expect(allSubjects.length).toBe(13);
    for (const s of allSubjects) {
      const def = eventRegistry[s];
      expect(def, s).toBeDefined();
      expect(def.version).toBeGreaterThanOrEqual(1);
      expect(isSubject(s)).toBe(true);
      expect(invalid[s].length, s).toBeGreaterThan(0);
    }
    expect(Object.keys(eventRegistry).sort()).toEqual([...allSubjects].sort());
    expect(isSubject('fw.nope')).toBe(false);
  });

  it.each(allSubjects)('contracts - %s accepts its valid payload', (s) => {
    const r = validateEvent(s, validPayloads[s]);
    expect(r).toEqual({ ok: true, value: validPayloads[s] });
  });

  it.each(allSubjects)('contracts - %s rejects invalid payloads with readable errors', (s) => {
    for (const [name, payload, path] of invalid[s]) {
      const r = validateEvent(s, payload);
      expect(r.ok, name).toBe(false);
      if (!r.ok) expect(r.errors.join('\n'), name).toContain(path);
    }
  });

  it.each(allSubjects)('contracts - %s rejects unknown fields (closed objects)', (s) => {
    const r = validateEvent(s, { ...validPayloads[s], surprise: 1 });
    expect(r.ok).toBe(false);
  });

  it('contracts - validateEvent rejects an unknown subject and a foreign version', () => {
    expect(validateEvent('fw.nope.x', {})).toEqual({ ok: false, errors: ["unknown subject 'fw.nope.x'"] });
    const r = validateEvent(subjects.dataDatasetFailed, validPayloads[subjects.dataDatasetFailed], 2);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatch(/unsupported schema version 2/);
  });

  it('contracts - validateEvent caps the number of errors for garbage', () => {
    const r = validateEvent(subjects.servingSample, { sketch: new Array(64).fill('x') });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.length).toBeLessThanOrEqual(21);
  });

  it('contracts - createEnvelope + validateEnvelope round-trip through JSON', () => {
    const env = createEnvelope(subjects.dataDatasetFailed, validPayloads[subjects.dataDatasetFailed], { source: 'data' });
    expect(env.version).toBe(1);
    const r = validateEnvelope(JSON.parse(JSON.stringify(env)), subjects.dataDatasetFailed);
    expect(r).toEqual({ ok: true, value: env });
  });

  it('contracts - validateEnvelope reports envelope, subject, version and data errors', () => {
    const env = createEnvelope(subjects.dataDatasetFailed, validPayloads[subjects.dataDatasetFailed]);
    const cases: [unknown, string | undefined, string][] = [
      [{ ...env, id: 'not-a-uuid' }, undefined, '/id'],
      [env, subjects.dataDatasetReady, '/subject'],
      [{ ...env, subject: 'fw.unknown' }, undefined, "unknown subject 'fw.unknown'"],
      [{ ...env, version: 9 }, undefined, '/version'],
      [{ ...env, data: { jobId: 'j' } }, undefined, '/data/datasetName'],
      ['just a string', undefined, '/'],
    ];
    for (const [raw, expected, fragment] of cases) {
      const r = validateEnvelope(raw, expected);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.errors.join('\n')).toContain(fragment);
    }
  });

  it('contracts - dead-letter subjects live under fw.dlq.', () => {
    expect(dlqSubject(subjects.dataIngestRequested)).toBe('fw.dlq.fw.data.ingest.requested');
    expect(DLQ_PREFIX).toBe('fw.dlq.');
  });

  it('contracts - docs/events.md matches the registry (run scripts/render-events-doc.ts)', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../docs/events.md', import.meta.url)), 'utf8');
    expect(doc).toBe(renderEventCatalogue());
    for (const s of allSubjects) expect(doc).toContain(`\`${s}\` (v${eventRegistry[s].version})`);
  });
});
