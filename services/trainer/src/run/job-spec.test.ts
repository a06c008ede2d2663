import { describe, expect, it } from 'vitest';
import type { RunSpec } from '../repositories/runs.repository.ts';
import { buildJobSpec } from './job-spec.ts';
import type { Materialised } from './materialise.ts';

const spec: RunSpec = {
  manifestUri: 'file:///a/manifest.json',
  modelConfig: { model_type: 'llama' },
  method: 'full',
  hyperparameters: { maxSteps: 10, learningRate: 1e-3, batchSize: 4, seqLen: 32, warmupSteps: 2 },
  worldSize: 2,
  checkpointInterval: 5,
  restartBudget: 1,
  seed: 7,
  launcher: 'local',
  device: 'cpu',
  precision: 'fp32',
};
const m: Materialised = {
  manifest: { dataset: 'tiny', version: '0123456789abcdef', splits: [] },
  train: ['/w/data/train-00000.bin'],
  val: [],
  tokenizer: undefined,
  baseModel: undefined,
  teacher: undefined,
};

describe('job spec', () => {
  it('job spec - always names the device and the precision at the top level', () => {
    expect(buildJobSpec(spec, m, '/w')).toMatchObject({ device: 'cpu', precision: 'fp32', seed: 7, train: { lr: 1e-3, warmup_steps: 2 } });
    expect(buildJobSpec({ ...spec, device: 'cuda', precision: 'bf16' }, m, '/w')).toMatchObject({ device: 'cuda', precision: 'bf16' });
    expect(buildJobSpec({ ...spec, device: 'cuda', precision: 'fp32' }, m, '/w')).toMatchObject({ device: 'cuda', precision: 'fp32' });
  });
});
