/** In-process fan-out of a run's live metrics and status changes, for the server-sent event streams. */
import { EventEmitter } from 'node:events';
import type { MetricRow, RunStatus } from '../repositories/runs.repository.ts';

export interface RunHubEvents {
  metric: (m: MetricRow) => void;
  status: (s: { status: RunStatus | 'restarting'; attempt: number; reason?: string | null }) => void;
}

export interface RunHub {
  emitMetric(runId: string, m: MetricRow): void;
  emitStatus(runId: string, s: Parameters<RunHubEvents['status']>[0]): void;
  subscribe(runId: string, on: { metric: RunHubEvents['metric']; status: RunHubEvents['status'] }): () => void;
}

export function createRunHub(): RunHub {
  const ee = new EventEmitter();
  ee.setMaxListeners(0);
  return {
    emitMetric: (runId, m) => ee.emit(`m:${runId}`, m),
    emitStatus: (runId, s) => ee.emit(`s:${runId}`, s),
    subscribe(runId, on) {
      ee.on(`m:${runId}`, on.metric);
      ee.on(`s:${runId}`, on.status);
      return () => {
        ee.off(`m:${runId}`, on.metric);
        ee.off(`s:${runId}`, on.status);
      };
    },
  };
}
