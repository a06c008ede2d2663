/**
 * The worker's job spec (docs/worker.md) for a run: the same for every
 * attempt, so a restarted attempt resumes from the run's checkpoints.
 */
import { join } from 'node:path';
import type { RunSpec } from '../repositories/runs.repository.ts';
import type { Materialised } from './materialise.ts';

export function buildJobSpec(spec: RunSpec, m: Materialised, workDir: string): Record<string, unknown> {
  const h = spec.hyperparameters;
  const model: Record<string, unknown> = m.baseModel ? { path: m.baseModel } : { config: spec.modelConfig, init_seed: spec.initSeed ?? spec.seed };
  if (m.tokenizer) model['tokenizer'] = m.tokenizer;
  const train: Record<string, unknown> = {
    lr: h.learningRate,
    total_steps: h.maxSteps,
    batch_size: h.batchSize,
    seq_len: h.seqLen,
  };
  const opt: [keyof RunSpec['hyperparameters'], string][] = [
    ['minLearningRate', 'min_lr'],
    ['warmupSteps', 'warmup_steps'],
    ['gradAccumSteps', 'grad_accum'],
    ['weightDecay', 'weight_decay'],
    ['gradClip', 'grad_clip'],
    ['beta1', 'beta1'],
    ['beta2', 'beta2'],
    ['eps', 'eps'],
    ['recompute', 'recompute'],
    ['zero1', 'zero1'],
  ];
  for (const [from, to] of opt) if (h[from] !== undefined) train[to] = h[from];
  const job: Record<string, unknown> = {
    model,
    data: { train: m.train, ...(m.val.length ? { val: m.val } : {}) },
    train,
    checkpoint: { dir: join(workDir, 'ckpt'), interval: spec.checkpointInterval, keep_last: 2, resume: true },
    log_interval: 1,
    output_dir: join(workDir, 'model'),
    seed: spec.seed,
    // Always written, so the job file says what the run asked for rather than leaning on the worker's defaults.
    device: spec.device,
    precision: spec.precision,
  };
  if (spec.method === 'lora' && spec.lora) {
    job['lora'] = {
      r: spec.lora.rank,
      alpha: spec.lora.alpha,
      ...(spec.lora.dropout !== undefined ? { dropout: spec.lora.dropout } : {}),
      ...(spec.lora.targetModules ? { target_modules: spec.lora.targetModules } : {}),
      merge: spec.lora.merge ?? false,
    };
  }
  if (spec.distillation && m.teacher)
    job['distill'] = { teacher: m.teacher, alpha: spec.distillation.alpha, temperature: spec.distillation.temperature };
  if (m.val.length) job['eval'] = { interval: 0, batches: 8 };
  return job;
}
