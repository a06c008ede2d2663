/**
 * Runs one training run to its end: materialise the inputs, then attempts
 * until one succeeds, the run is cancelled, a rank fails for a reason a
 * restart cannot fix, or the restart budget is spent. An attempt launches
 * every rank with a fresh rendezvous store; when one rank dies the others are
 * stopped (SIGTERM, then SIGKILL after a grace period) and the next attempt
 * resumes from the latest complete checkpoint. Every transition is written
 * to Postgres before the event that announces it.
 */
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join, relative } from 'node:path';
import type { ArtifactStore } from '@flywheel/artifacts';
import type { RunCheckpointed, RunCompleted, RunFailed, RunProgress, RunStarted } from '@flywheel/contracts';
import type { RendezvousStore } from '../rendezvous/store.ts';
import type { MetricRow, RunRow, RunsRepository } from '../repositories/runs.repository.ts';
import { LaunchError, type LaunchedAttempt, type Launcher, type RankExit } from '../launchers/types.ts';
import type { RunHub } from './hub.ts';
import { buildJobSpec } from './job-spec.ts';
import { MaterialiseError, materialise, type Materialised } from './materialise.ts';

/** Worker exit codes a restart cannot fix (docs/worker.md): bad spec, I/O, corrupt input, unsupported. */
export const NON_RETRIABLE_EXIT_CODES: ReadonlySet<number> = new Set([2, 3, 4, 5]);

export interface Publisher {
  started(d: RunStarted): Promise<void>;
  progress(d: RunProgress): Promise<void>;
  checkpointed(d: RunCheckpointed): Promise<void>;
  completed(d: RunCompleted): Promise<void>;
  failed(d: RunFailed): Promise<void>;
}

export interface SupervisorDeps {
  runs: RunsRepository;
  artifacts: ArtifactStore;
  launchers: Record<string, Launcher>;
  store: RendezvousStore;
  /** FW_STORE_URL of an attempt. */
  storeUrl(runId: string, attempt: number): string;
  workRoot: string;
  workerBin: string;
  threadsPerRank: number;
  progressIntervalMs: number;
  killGraceMs?: number;
  publish: Publisher;
  hub: RunHub;
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
}

export interface RunOptions {
  /** The host GPUs the scheduler gave a cuda run, one per rank (local launcher); every attempt uses them. */
  gpus?: number[] | undefined;
}

interface Active {
  launched: LaunchedAttempt | undefined;
  cancelled: boolean;
}

/** The newest complete checkpoint step in `dir` (0 when none). */
export async function latestCheckpointStep(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let best = 0;
  for (const n of names) {
    const m = /^step_([0-9]+)$/.exec(n);
    if (!m) continue;
    if (!(await stat(join(dir, n, 'manifest.json')).catch(() => undefined))) continue;
    best = Math.max(best, Number(m[1]));
  }
  return best;
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

/** The checkpoint folder (`step_NNNNNNNNNN`) a rank's corrupt-input error names, if it is one of the run's. */
export function corruptCheckpoint(errors: Map<number, string>, ckptDir: string): string | undefined {
  for (const msg of errors.values()) {
    const i = msg.indexOf(`${ckptDir}/step_`);
    if (i < 0) continue;
    const m = /^step_[0-9]{10}/.exec(msg.slice(i + ckptDir.length + 1));
    if (m) return m[0];
  }
  return undefined;
}

function describeExit(rank: number, e: RankExit, step: number, error: string | undefined): string {
  const how = e.signal ? `killed by ${e.signal}` : `exited with code ${e.code}`;
  return `rank ${rank} ${how} at step ${step}${error ? `: ${error}` : ''}`;
}

export function createSupervisor(deps: SupervisorDeps) {
  const active = new Map<string, Active>();
  const grace = deps.killGraceMs ?? 10_000;
  let shuttingDown = false;

  /** Publishes the stored final event of a finished run, then marks it announced (at least once). */
  async function announce(runId: string): Promise<void> {
    const r = await deps.runs.get(runId);
    if (!r || r.announced || !r.final_event) return;
    if (r.status === 'completed') await deps.publish.completed(r.final_event as unknown as RunCompleted);
    else await deps.publish.failed(r.final_event as unknown as RunFailed);
    await deps.runs.markAnnounced(runId);
  }

  async function fail(run: RunRow, reason: string, stage: string, lastStep: number): Promise<void> {
    const fresh = await deps.runs.get(run.id);
    const last = (await deps.runs.checkpoints(run.id)).at(-1);
    const event: RunFailed = {
      runId: run.id,
      reason,
      stage,
      restarts: fresh?.restarts ?? 0,
      lastStep,
      ...(last ? { lastCheckpointUri: `file://${last.path}` } : {}),
    };
    if (!(await deps.runs.finish(run.id, 'failed', { reason, stage, event }))) return;
    deps.hub.emitStatus(run.id, { status: 'failed', attempt: fresh?.attempt ?? 0, reason });
    await announce(run.id);
  }

  async function upload(run: RunRow, workDir: string): Promise<string> {
    const out = join(workDir, 'model');
    const prefix = `models/${run.id}`;
    for await (const f of walk(out)) await deps.artifacts.put(`${prefix}/${relative(out, f)}`, createReadStream(f), { overwrite: true });
    return `${deps.artifacts.uriFor(prefix)}/`;
  }

  /** One attempt: launch, follow, stop the rest when one dies. Resolves with every rank's exit. */
  async function attemptOnce(run: RunRow, attempt: number, resumedFrom: number, specPath: string, workDir: string, launcher: Launcher, a: Active, gpus: number[] | undefined) {
    const token = await deps.store.open(run.id, attempt);
    let launched: LaunchedAttempt;
    try {
      launched = await launcher.launch({
        runId: run.id,
        attempt,
        worldSize: run.world_size,
        workerBin: deps.workerBin,
        specPath,
        workDir,
        env: {
          FW_STORE_URL: deps.storeUrl(run.id, attempt),
          FW_STORE_TOKEN: token,
          FW_RUN_ID: run.id,
          FW_ATTEMPT: String(attempt),
          ...(run.spec.collectiveTimeoutMs ? { FW_COLLECTIVE_TIMEOUT_MS: String(run.spec.collectiveTimeoutMs) } : {}),
          ...(run.spec.joinTimeoutMs ? { FW_JOIN_TIMEOUT_MS: String(run.spec.joinTimeoutMs) } : {}),
        },
        threadsPerRank: deps.threadsPerRank,
        device: run.spec.device,
        gpus,
      });
    } catch (e) {
      await deps.store.close(run.id, attempt);
      throw e;
    }
    a.launched = launched;
    if (a.cancelled) launched.signal('SIGTERM');
    // Anything going wrong from here on (Postgres, NATS) must not leave ranks running.
    const follow = async () => {
      for (const r of launched.ranks) await deps.runs.rankStarted(run.id, attempt, r.rank, r.pid, r.host);
      const tasks: Promise<unknown>[] = [
        deps.publish.started({
          runId: run.id,
          attempt,
          worldSize: run.world_size,
          device: run.spec.device,
          startedAt: new Date().toISOString(),
          resumedFromStep: resumedFrom,
        }),
      ];

      const started = Date.now();
      let step = 0;
      let lastProgress = 0;
      const errors = new Map<number, string>();
      let pending: MetricRow[] = [];
      let flushing = Promise.resolve();
      const flush = () => {
        const rows = pending;
        pending = [];
        flushing = flushing.then(() => deps.runs.recordMetrics(rows)).catch((e: unknown) => deps.log.warn({ err: e, runId: run.id }, 'metrics not recorded'));
        return flushing;
      };
      const timer = setInterval(() => void flush(), 500);

      for (const r of launched.ranks) {
        r.onLine((line) => {
          let ev: Record<string, unknown>;
          try {
            ev = JSON.parse(line) as Record<string, unknown>;
          } catch {
            return;
          }
          const num = (k: string) => (typeof ev[k] === 'number' ? (ev[k] as number) : null);
          if (ev['event'] === 'step' || ev['event'] === 'eval') {
            const m: MetricRow = {
              run_id: run.id,
              rank: r.rank,
              step: num('step') ?? 0,
              attempt,
              loss: num('loss'),
              lr: num('lr'),
              grad_norm: num('grad_norm'),
              tokens_per_s: num('tokens_per_s'),
              val_loss: num('val_loss'),
            };
            pending.push(m);
            deps.hub.emitMetric(run.id, m);
            if (r.rank === 0 && ev['event'] === 'step') {
              step = m.step;
              const now = Date.now();
              if (now - lastProgress >= deps.progressIntervalMs || step === run.max_steps) {
                lastProgress = now;
                tasks.push(
                  deps.runs.progress(run.id, step, m.loss).then(() =>
                    deps.publish.progress({
                      runId: run.id,
                      step,
                      maxSteps: run.max_steps,
                      loss: m.loss ?? 0,
                      learningRate: Math.max(0, m.lr ?? 0),
                      ...(m.grad_norm !== null ? { gradNorm: Math.max(0, m.grad_norm) } : {}),
                      ...(m.tokens_per_s !== null ? { tokensPerSecond: Math.max(0, m.tokens_per_s) } : {}),
                      elapsedSeconds: (now - started) / 1000,
                    }),
                  ),
                );
              }
            }
          } else if (ev['event'] === 'checkpoint' && r.rank === 0) {
            const cstep = num('step') ?? 0;
            const path = String(ev['path']);
            tasks.push(
              deps.runs
                .checkpoint(run.id, cstep, attempt, path, String(ev['reason'] ?? 'interval'))
                .then(() => deps.publish.checkpointed({ runId: run.id, step: cstep, checkpointUri: `file://${path}` })),
            );
          } else if (ev['event'] === 'error') {
            errors.set(r.rank, String(ev['message'] ?? 'error'));
          }
        });
      }

      // The first rank to fail stops the others: survivors of a broken world would wait forever.
      let stopping = false;
      /** Ranks in the order they failed: the first one is the cause, the others were stopped. */
      const failedOrder: number[] = [];
      const stopAll = () => {
        if (stopping) return;
        stopping = true;
        launched.signal('SIGTERM');
        setTimeout(() => launched.signal('SIGKILL'), grace).unref();
      };
      const exits = await Promise.all(
        launched.ranks.map(async (r) => {
          const e = await r.exited;
          await deps.runs.rankExited(run.id, attempt, r.rank, e.code, e.signal);
          if (e.code !== 0) {
            failedOrder.push(r.rank);
            stopAll();
          }
          return e;
        }),
      );
      clearInterval(timer);
      await flush();
      await Promise.allSettled(tasks);
      for (const t of tasks) await t.catch((err: unknown) => deps.log.warn({ err, runId: run.id }, 'event not published'));
      await deps.store.close(run.id, attempt).catch((err: unknown) => deps.log.warn({ err, runId: run.id }, 'store not closed'));
      await deps.runs.progress(run.id, step, null);
      return { exits, errors, step, failedOrder, stderr: launched.ranks.map((r) => r.stderrTail().slice(-2000)) };
    };
    try {
      return await follow();
    } catch (e) {
      launched.signal('SIGKILL');
      await Promise.all(launched.ranks.map((r) => r.exited));
      await deps.store.close(run.id, attempt).catch(() => undefined);
      throw e;
    }
  }

  async function runToEnd(run: RunRow, opts: RunOptions = {}): Promise<void> {
    const a: Active = { launched: undefined, cancelled: false };
    active.set(run.id, a);
    try {
      const workDir = join(deps.workRoot, run.id);
      await mkdir(workDir, { recursive: true });
      const launcher = deps.launchers[run.spec.launcher];
      if (!launcher) return await fail(run, `no launcher named ${run.spec.launcher}`, 'launch', 0);
      let m: Materialised;
      try {
        m = await materialise(deps.artifacts, workDir, {
          manifestUri: run.manifest_uri,
          baseModelUri: run.spec.baseModelUri,
          teacherUri: run.spec.distillation?.teacherUri,
        });
      } catch (e) {
        if (e instanceof MaterialiseError) return await fail(run, e.message, e.stage, 0);
        throw e;
      }
      const specPath = join(workDir, 'job.json');
      await writeFile(specPath, JSON.stringify(buildJobSpec(run.spec, m, workDir), null, 2));

      for (;;) {
        const fresh = await deps.runs.get(run.id);
        if (!fresh || fresh.status !== 'running') return;
        if (fresh.cancel_requested || a.cancelled) {
          const event: RunFailed = { runId: run.id, reason: 'cancelled on request', stage: 'cancelled', restarts: fresh.restarts, lastStep: fresh.last_step };
          if (await deps.runs.finish(run.id, 'cancelled', { reason: 'cancelled on request', event })) {
            deps.hub.emitStatus(run.id, { status: 'cancelled', attempt: fresh.attempt });
            await announce(run.id);
          }
          return;
        }
        const previous = await deps.runs.attempts(run.id);
        const attempt = previous.length === 0 ? 0 : fresh.attempt + 1;
        if (attempt > 0 && fresh.restarts >= fresh.restart_budget) {
          const last = previous.at(-1)?.reason ?? 'unknown';
          return await fail(run, `restart budget of ${fresh.restart_budget} spent; last failure: ${last}`, 'train', fresh.last_step);
        }
        const resumedFrom = await latestCheckpointStep(join(workDir, 'ckpt'));
        await deps.runs.beginAttempt(run.id, attempt, resumedFrom);
        deps.hub.emitStatus(run.id, { status: attempt === 0 ? 'running' : 'restarting', attempt });
        let result: Awaited<ReturnType<typeof attemptOnce>>;
        try {
          result = await attemptOnce(fresh, attempt, resumedFrom, specPath, workDir, launcher, a, opts.gpus);
        } catch (e) {
          if (!(e instanceof LaunchError)) throw e;
          await deps.runs.endAttempt(run.id, attempt, 'failed', e.message);
          return await fail(run, e.message, 'launch', resumedFrom);
        }
        const { exits, errors, step } = result;
        if (exits.every((e) => e.code === 0)) {
          await deps.runs.endAttempt(run.id, attempt, 'succeeded', null);
          let modelUri: string;
          try {
            modelUri = await upload(fresh, workDir);
          } catch (e) {
            return await fail(run, `model upload failed: ${(e as Error).message}`, 'upload', step);
          }
          const done = await deps.runs.get(run.id);
          const spec = fresh.spec;
          const isLora = spec.method === 'lora';
          const finalUri = isLora ? (spec.lora?.merge ? `${modelUri}merged/` : (spec.baseModelUri ?? modelUri)) : modelUri;
          const event: RunCompleted = {
            runId: run.id,
            ...(spec.baseModelUri ? { baseModelUri: spec.baseModelUri } : {}),
            modelUri: finalUri,
            ...(isLora ? { adapterUri: modelUri } : {}),
            datasetId: spec.datasetId ?? fresh.dataset_name ?? fresh.manifest_uri.slice(0, 128),
            steps: fresh.max_steps,
            finalLoss: done?.last_loss ?? 0,
            durationSeconds: fresh.started_at ? (Date.now() - fresh.started_at.getTime()) / 1000 : 0,
            restarts: done?.restarts ?? 0,
          };
          if (!(await deps.runs.finish(run.id, 'completed', { modelUri: finalUri, event }))) return;
          deps.hub.emitStatus(run.id, { status: 'completed', attempt });
          await announce(run.id);
          return;
        }
        // Shutting down: leave the run `running`; the next trainer process reconciles and resumes it.
        if (shuttingDown) {
          await deps.runs.endAttempt(run.id, attempt, 'failed', 'trainer shut down');
          return;
        }
        const firstBad = result.failedOrder[0] ?? exits.findIndex((e) => e.code !== 0);
        const rankErr = errors.get(firstBad) ?? (result.stderr[firstBad] || undefined);
        const reason = describeExit(firstBad, exits[firstBad]!, step, rankErr);
        const cancelled = a.cancelled || (await deps.runs.get(run.id))?.cancel_requested;
        await deps.runs.endAttempt(run.id, attempt, cancelled ? 'cancelled' : 'failed', reason);
        if (cancelled) continue;
        // A checkpoint refused as corrupt (exit 4 naming it) is set aside; the next attempt falls back to the one before.
        const bad = exits.some((e) => e.code === 4) ? corruptCheckpoint(errors, join(workDir, 'ckpt')) : undefined;
        if (bad) {
          await rename(join(workDir, 'ckpt', bad), join(workDir, 'ckpt', `corrupt-${bad}-a${attempt}`));
          await deps.runs.dropCheckpoint(run.id, Number(bad.slice(5)));
          deps.log.warn({ runId: run.id, attempt, checkpoint: bad }, 'corrupt checkpoint set aside; falling back to the one before');
          continue;
        }
        const fatal = exits.find((e) => e.code !== null && NON_RETRIABLE_EXIT_CODES.has(e.code));
        if (fatal) return await fail(run, `${reason} (not retried: exit code ${fatal.code})`, 'train', step);
        deps.log.warn({ runId: run.id, attempt, reason }, 'attempt failed; restarting from the last checkpoint');
      }
    } catch (e) {
      deps.log.warn({ err: e, runId: run.id }, 'run supervisor failed');
      await fail(run, `trainer error: ${(e as Error).message}`, 'internal', 0).catch(() => undefined);
    } finally {
      active.delete(run.id);
    }
  }

  return {
    run: runToEnd,
    announce,
    /** Announces every finished run whose final event the bus never acked (a trainer died in between). */
    async announcePending(): Promise<number> {
      let n = 0;
      for (const r of await deps.runs.unannounced()) {
        await announce(r.id);
        n++;
      }
      return n;
    },
    /** Ranks in use by the runs this process supervises. */
    activeRuns: () => [...active.keys()],
    /** Asks the ranks of a supervised run to checkpoint and stop; false when this process does not run it. */
    cancel(runId: string): boolean {
      const a = active.get(runId);
      if (!a) return false;
      a.cancelled = true;
      a.launched?.signal('SIGTERM');
      return true;
    },
    /** Stops every supervised run's ranks (shutdown): they checkpoint, a restarted trainer resumes them. */
    stopAll(signal: NodeJS.Signals = 'SIGTERM') {
      shuttingDown = true;
      for (const a of active.values()) a.launched?.signal(signal);
    },
  };
}

export type Supervisor = ReturnType<typeof createSupervisor>;
