// One valid payload per catalogued subject, for tests here and in other
// packages (`@flywheel/contracts/fixtures`). Not part of the runtime API.
import { subjects } from './subjects.ts';
import type { Subject } from './subjects.ts';
import type { EventData } from './registry.ts';

const SHA = 'a'.repeat(64);

export const validPayloads: { [S in Subject]: EventData<S> } = {
  [subjects.dataIngestRequested]: {
    jobId: 'job-1',
    datasetName: 'support-chats',
    source: { uri: 'file:///data/raw/chats.jsonl' },
    format: 'jsonl',
    config: { dedup: { threshold: 0.8 } },
    requestedBy: 'alice',
  },
  [subjects.dataDatasetReady]: {
    datasetId: '4f1c2d3e-0000-4000-8000-000000000001',
    datasetName: 'support-chats',
    version: 'abcdef0123456789',
    manifestUri: 'file:///artifacts/datasets/support-chats/abcdef01/manifest.json',
    splits: [
      { name: 'train', records: 900, tokens: 123456, shards: 2 },
      { name: 'validation', records: 100, tokens: 13000, shards: 1 },
    ],
    tokenizer: 'HuggingFaceTB/SmolLM2-135M',
    contentSha256: SHA,
  },
  [subjects.dataDatasetFailed]: { jobId: 'job-1', datasetName: 'support-chats', reason: 'no records', stage: 'parse' },
  [subjects.trainerRunRequested]: {
    trigger: 'manual',
    baseModelUri: 'file:///models/smollm2-135m',
    datasetId: 'ds-1',
    method: 'lora',
    lora: { rank: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] },
    hyperparameters: { maxSteps: 100, learningRate: 2e-4, batchSize: 8, seqLen: 512 },
    resources: { device: 'cpu', nodes: 1, processesPerNode: 2 },
  },
  [subjects.trainerRunStarted]: {
    runId: 'run-1',
    attempt: 0,
    worldSize: 2,
    device: 'cpu',
    startedAt: '2026-11-22T15:00:00Z',
    resumedFromStep: 0,
  },
  [subjects.trainerRunProgress]: {
    runId: 'run-1',
    step: 10,
    maxSteps: 100,
    loss: 2.5,
    learningRate: 1e-4,
    elapsedSeconds: 12.5,
  },
  [subjects.trainerRunCheckpointed]: {
    runId: 'run-1',
    step: 50,
    checkpointUri: 'file:///artifacts/runs/run-1/ckpt-50',
    sha256: SHA,
    bytes: 1024,
  },
  [subjects.trainerRunCompleted]: {
    runId: 'run-1',
    baseModelUri: 'file:///models/smollm2-135m',
    modelUri: 'file:///artifacts/runs/run-1/model',
    adapterUri: 'file:///artifacts/runs/run-1/adapter',
    datasetId: 'ds-1',
    steps: 100,
    finalLoss: 1.7,
    durationSeconds: 300,
    restarts: 0,
  },
  [subjects.trainerRunFailed]: { runId: 'run-1', reason: 'rank 1 died 4 times', restarts: 3, lastStep: 40 },
  [subjects.evalCompleted]: {
    evalId: 'ev-1',
    modelId: 'm-2',
    modelUri: 'file:///artifacts/runs/run-1/model',
    runId: 'run-1',
    metrics: { loss: 1.7, perplexity: 5.5 },
    baseline: { modelId: 'm-1', metrics: { loss: 1.9, perplexity: 6.7 } },
    decision: 'promote',
  },
  [subjects.modelPromoted]: {
    modelId: 'm-2',
    modelName: 'support-bot',
    modelUri: 'file:///artifacts/runs/run-1/model',
    previousModelId: 'm-1',
    evalId: 'ev-1',
    promotedAt: '2026-11-22T15:05:00.000Z',
  },
  [subjects.driftDetected]: {
    monitorId: 'mon-1',
    modelId: 'm-2',
    windowStart: '2026-11-22T14:00:00Z',
    windowEnd: '2026-11-22T15:00:00Z',
    sampleCount: 500,
    referenceCount: 10000,
    correction: 'holm',
    features: [{ name: 'promptTokens', test: 'ks', statistic: 0.31, pValue: 0.0001, threshold: 0.05, drifted: true }],
  },
  [subjects.servingSample]: {
    requestId: 'req-1',
    modelId: 'm-2',
    at: '2026-11-22T15:10:00+01:00',
    endpoint: 'chat',
    promptTokens: 42,
    outputTokens: 17,
    meanLogprob: -1.2,
    perplexity: 3.3,
    sketch: [0.1, -0.2, 0.3],
  },
};
