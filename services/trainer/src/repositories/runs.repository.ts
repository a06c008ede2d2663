/** SQL for runs, their attempts and ranks, checkpoints and the metric series. */
import type { Device, Precision } from '@flywheel/contracts';
import type { Queryable } from '@flywheel/db';

export type RunStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export type AttemptStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface RunRow {
  id: string;
  status: RunStatus;
  trigger: string;
  spec: RunSpec;
  dataset_name: string | null;
  dataset_version: string | null;
  manifest_uri: string;
  world_size: number;
  max_steps: number;
  restart_budget: number;
  restarts: number;
  attempt: number;
  last_step: number;
  last_loss: number | null;
  model_uri: string | null;
  reason: string | null;
  stage: string | null;
  owner: string | null;
  cancel_requested: boolean;
  /** The fw.trainer.run.completed / .failed payload, stored with the final state. */
  final_event: Record<string, unknown> | null;
  announced: boolean;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

/** The normalised run request, as stored: everything a restart needs. */
export interface RunSpec {
  manifestUri: string;
  datasetId?: string | undefined;
  baseModelUri?: string | undefined;
  modelConfig?: Record<string, unknown> | undefined;
  initSeed?: number | undefined;
  method: 'full' | 'lora';
  lora?: { rank: number; alpha: number; dropout?: number | undefined; targetModules?: string[] | undefined; merge?: boolean | undefined } | undefined;
  distillation?: { teacherUri: string; temperature: number; alpha: number } | undefined;
  hyperparameters: {
    maxSteps: number;
    learningRate: number;
    minLearningRate?: number | undefined;
    batchSize: number;
    seqLen: number;
    gradAccumSteps?: number | undefined;
    warmupSteps?: number | undefined;
    weightDecay?: number | undefined;
    gradClip?: number | undefined;
    beta1?: number | undefined;
    beta2?: number | undefined;
    eps?: number | undefined;
    recompute?: boolean | undefined;
    zero1?: boolean | undefined;
  };
  worldSize: number;
  checkpointInterval: number;
  restartBudget: number;
  seed: number;
  launcher: string;
  /** Where every rank trains: `cuda` is one GPU per rank (LOCAL_RANK). */
  device: Device;
  /** `bf16` only with `cuda` (resolveRunRequest refuses it on cpu). */
  precision: Precision;
  collectiveTimeoutMs?: number | undefined;
  joinTimeoutMs?: number | undefined;
}

export interface AttemptRow {
  run_id: string;
  attempt: number;
  status: AttemptStatus;
  resumed_from_step: number;
  reason: string | null;
  started_at: Date;
  ended_at: Date | null;
}

export interface RankRow {
  run_id: string;
  attempt: number;
  rank: number;
  pid: number | null;
  host: string | null;
  exit_code: number | null;
  signal: string | null;
}

export interface MetricRow {
  run_id: string;
  rank: number;
  step: number;
  attempt: number;
  loss: number | null;
  lr: number | null;
  grad_norm: number | null;
  tokens_per_s: number | null;
  val_loss: number | null;
}

export interface NewRun {
  id: string;
  trigger: string;
  spec: RunSpec;
  datasetName: string | null;
  datasetVersion: string | null;
}

const RUN_COLUMNS = `id, status, trigger, spec, dataset_name, dataset_version, manifest_uri, world_size, max_steps,
  restart_budget, restarts, attempt, last_step, last_loss, model_uri, reason, stage, owner, cancel_requested,
  final_event, announced, created_at, started_at, finished_at`;

export function createRunsRepository(db: Queryable) {
  return {
    /** Inserts a run; one with the same id already there is returned unchanged (idempotent requests). */
    async insert(run: NewRun): Promise<{ run: RunRow; created: boolean }> {
      const ins = await db.query<RunRow>(
        `INSERT INTO runs (id, trigger, spec, dataset_name, dataset_version, manifest_uri, world_size, max_steps, restart_budget)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING RETURNING ${RUN_COLUMNS}`,
        [
          run.id,
          run.trigger,
          JSON.stringify(run.spec),
          run.datasetName,
          run.datasetVersion,
          run.spec.manifestUri,
          run.spec.worldSize,
          run.spec.hyperparameters.maxSteps,
          run.spec.restartBudget,
        ],
      );
      if (ins.rows[0]) return { run: ins.rows[0], created: true };
      const existing = await this.get(run.id);
      if (!existing) throw new Error(`run ${run.id} vanished`);
      return { run: existing, created: false };
    },

    async get(id: string): Promise<RunRow | undefined> {
      const r = await db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`, [id]);
      return r.rows[0];
    },

    async list(opts: { status?: string | undefined; limit: number }): Promise<RunRow[]> {
      const r = await db.query<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM runs WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2`,
        [opts.status ?? null, opts.limit],
      );
      return r.rows;
    },

    /** Queued runs, oldest first. */
    async queued(): Promise<RunRow[]> {
      const r = await db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE status = 'queued' ORDER BY created_at, id`);
      return r.rows;
    },

    async running(): Promise<RunRow[]> {
      const r = await db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY created_at, id`);
      return r.rows;
    },

    /** queued -> running under this owner; false when another owner took it first. */
    async claim(id: string, owner: string): Promise<boolean> {
      const r = await db.query(
        `UPDATE runs SET status = 'running', owner = $2, started_at = coalesce(started_at, now()), updated_at = now()
         WHERE id = $1 AND status = 'queued'`,
        [id, owner],
      );
      return r.rowCount === 1;
    },

    async setOwner(id: string, owner: string): Promise<void> {
      await db.query(`UPDATE runs SET owner = $2, updated_at = now() WHERE id = $1`, [id, owner]);
    },

    /** Starts attempt `attempt` (0 first); a restart also counts in `restarts`. */
    async beginAttempt(id: string, attempt: number, resumedFromStep: number): Promise<void> {
      await db.query(
        `INSERT INTO attempts (run_id, attempt, resumed_from_step) VALUES ($1, $2, $3)
         ON CONFLICT (run_id, attempt) DO UPDATE SET status = 'running', resumed_from_step = $3, ended_at = NULL, reason = NULL`,
        [id, attempt, resumedFromStep],
      );
      await db.query(
        `UPDATE runs SET attempt = $2, restarts = CASE WHEN $2 > 0 THEN restarts + 1 ELSE restarts END, updated_at = now()
         WHERE id = $1`,
        [id, attempt],
      );
    },

    async endAttempt(id: string, attempt: number, status: AttemptStatus, reason: string | null): Promise<void> {
      await db.query(
        `UPDATE attempts SET status = $3, reason = $4, ended_at = now() WHERE run_id = $1 AND attempt = $2 AND ended_at IS NULL`,
        [id, attempt, status, reason],
      );
    },

    async rankStarted(id: string, attempt: number, rank: number, pid: number | null, host: string | null): Promise<void> {
      await db.query(
        `INSERT INTO ranks (run_id, attempt, rank, pid, host) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, attempt, rank) DO UPDATE SET pid = $4, host = $5`,
        [id, attempt, rank, pid, host],
      );
    },

    async rankExited(id: string, attempt: number, rank: number, exitCode: number | null, signal: string | null): Promise<void> {
      await db.query(
        `UPDATE ranks SET exit_code = $4, signal = $5, ended_at = now() WHERE run_id = $1 AND attempt = $2 AND rank = $3`,
        [id, attempt, rank, exitCode, signal],
      );
    },

    async attempts(id: string): Promise<AttemptRow[]> {
      const r = await db.query<AttemptRow>(
        `SELECT run_id, attempt, status, resumed_from_step, reason, started_at, ended_at FROM attempts WHERE run_id = $1 ORDER BY attempt`,
        [id],
      );
      return r.rows;
    },

    async ranks(id: string, attempt?: number): Promise<RankRow[]> {
      const r = await db.query<RankRow>(
        `SELECT run_id, attempt, rank, pid, host, exit_code, signal FROM ranks
         WHERE run_id = $1 AND ($2::int IS NULL OR attempt = $2) ORDER BY attempt, rank`,
        [id, attempt ?? null],
      );
      return r.rows;
    },

    /** Ranks recorded as started and never seen to exit (the orphans a restarted trainer looks for). */
    async liveRanks(id: string): Promise<RankRow[]> {
      const r = await db.query<RankRow>(
        `SELECT run_id, attempt, rank, pid, host, exit_code, signal FROM ranks WHERE run_id = $1 AND ended_at IS NULL`,
        [id],
      );
      return r.rows;
    },

    async checkpoint(id: string, step: number, attempt: number, path: string, reason: string): Promise<void> {
      await db.query(
        `INSERT INTO checkpoints (run_id, step, attempt, path, reason) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, step) DO UPDATE SET attempt = $3, path = $4, reason = $5, created_at = now()`,
        [id, step, attempt, path, reason],
      );
    },

    async dropCheckpoint(id: string, step: number): Promise<void> {
      await db.query(`DELETE FROM checkpoints WHERE run_id = $1 AND step = $2`, [id, step]);
    },

    async checkpoints(id: string): Promise<{ step: number; attempt: number; reason: string; path: string }[]> {
      const r = await db.query<{ step: number; attempt: number; reason: string; path: string }>(
        `SELECT step, attempt, reason, path FROM checkpoints WHERE run_id = $1 ORDER BY step`,
        [id],
      );
      return r.rows;
    },

    async recordMetrics(input: MetricRow[]): Promise<void> {
      // One row per key in a statement (ON CONFLICT cannot touch a row twice): a step's
      // `step` and `eval` events merge, later values win.
      const merged = new Map<string, MetricRow>();
      for (const r of input) {
        const k = `${r.run_id}\0${r.rank}\0${r.step}`;
        const prev = merged.get(k);
        merged.set(k, prev ? { ...prev, ...Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null)) } : r);
      }
      const rows = [...merged.values()];
      if (rows.length === 0) return;
      const cols = ['run_id', 'rank', 'step', 'attempt', 'loss', 'lr', 'grad_norm', 'tokens_per_s', 'val_loss'] as const;
      const params: unknown[] = [];
      const tuples = rows.map((row) => {
        const ph = cols.map((c) => {
          params.push(row[c]);
          return `$${params.length}`;
        });
        return `(${ph.join(', ')})`;
      });
      await db.query(
        `INSERT INTO metrics (${cols.join(', ')}) VALUES ${tuples.join(', ')}
         ON CONFLICT (run_id, rank, step) DO UPDATE SET attempt = excluded.attempt,
           loss = coalesce(excluded.loss, metrics.loss), lr = coalesce(excluded.lr, metrics.lr),
           grad_norm = coalesce(excluded.grad_norm, metrics.grad_norm),
           tokens_per_s = coalesce(excluded.tokens_per_s, metrics.tokens_per_s),
           val_loss = coalesce(excluded.val_loss, metrics.val_loss), at = now()`,
        params,
      );
    },

    async metrics(id: string, fromStep: number): Promise<MetricRow[]> {
      const r = await db.query<MetricRow>(
        `SELECT run_id, rank, step, attempt, loss, lr, grad_norm, tokens_per_s, val_loss FROM metrics
         WHERE run_id = $1 AND step >= $2 ORDER BY step, rank`,
        [id, fromStep],
      );
      return r.rows;
    },

    async progress(id: string, step: number, loss: number | null): Promise<void> {
      await db.query(`UPDATE runs SET last_step = $2, last_loss = coalesce($3, last_loss), updated_at = now() WHERE id = $1`, [id, step, loss]);
    },

    /** running -> queued (a trainer restart found it without live ranks); it resumes from its checkpoint. */
    async requeue(id: string, reason: string): Promise<void> {
      await db.query(`UPDATE runs SET status = 'queued', owner = NULL, reason = $2, updated_at = now() WHERE id = $1 AND status = 'running'`, [
        id,
        reason,
      ]);
    },

    async requestCancel(id: string): Promise<RunRow | undefined> {
      const r = await db.query<RunRow>(
        `UPDATE runs SET cancel_requested = true, updated_at = now() WHERE id = $1 RETURNING ${RUN_COLUMNS}`,
        [id],
      );
      return r.rows[0];
    },

    /**
     * Moves an unfinished run to a final state with the event that announces it
     * (published later, see `unannounced`); false when it had already finished.
     */
    async finish(
      id: string,
      status: 'completed' | 'failed' | 'cancelled',
      fields: { reason?: string | null; stage?: string | null; modelUri?: string | null; event: object },
    ): Promise<boolean> {
      const r = await db.query(
        `UPDATE runs SET status = $2, reason = $3, stage = $4, model_uri = $5, final_event = $6, announced = false,
           finished_at = now(), updated_at = now()
         WHERE id = $1 AND status IN ('queued', 'running')`,
        [id, status, fields.reason ?? null, fields.stage ?? null, fields.modelUri ?? null, JSON.stringify(fields.event)],
      );
      return r.rowCount === 1;
    },

    /** Finished runs whose final event has not been acked by the bus yet. */
    async unannounced(): Promise<RunRow[]> {
      const r = await db.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE NOT announced AND final_event IS NOT NULL ORDER BY finished_at`);
      return r.rows;
    },

    async markAnnounced(id: string): Promise<void> {
      await db.query(`UPDATE runs SET announced = true WHERE id = $1`, [id]);
    },
  };
}

export type RunsRepository = ReturnType<typeof createRunsRepository>;
