/** Rows to API views. */
import type { AttemptView, MetricPoint, RunView } from '@flywheel/contracts';
import type { AttemptRow, MetricRow, RankRow, RunRow } from '../repositories/runs.repository.ts';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function runView(r: RunRow): RunView {
  return {
    id: r.id,
    status: r.status,
    trigger: r.trigger,
    datasetName: r.dataset_name,
    datasetVersion: r.dataset_version,
    manifestUri: r.manifest_uri,
    worldSize: r.world_size,
    maxSteps: r.max_steps,
    step: r.last_step,
    loss: r.last_loss,
    restartBudget: r.restart_budget,
    restarts: r.restarts,
    attempt: r.attempt,
    modelUri: r.model_uri,
    reason: r.reason,
    stage: r.stage,
    createdAt: r.created_at.toISOString(),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    spec: r.spec as unknown as Record<string, unknown>,
  };
}

export function attemptView(a: AttemptRow, ranks: RankRow[]): AttemptView {
  return {
    attempt: a.attempt,
    status: a.status,
    resumedFromStep: a.resumed_from_step,
    reason: a.reason,
    startedAt: a.started_at.toISOString(),
    endedAt: iso(a.ended_at),
    ranks: ranks
      .filter((k) => k.attempt === a.attempt)
      .map((k) => ({ rank: k.rank, pid: k.pid, host: k.host, exitCode: k.exit_code, signal: k.signal })),
  };
}

export function metricView(m: MetricRow): MetricPoint {
  return {
    step: m.step,
    rank: m.rank,
    attempt: m.attempt,
    loss: m.loss,
    lr: m.lr,
    gradNorm: m.grad_norm,
    tokensPerSecond: m.tokens_per_s,
    valLoss: m.val_loss,
  };
}
