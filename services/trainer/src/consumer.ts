/**
 * The trainer's bus consumers: `fw.trainer.run.requested` creates a run;
 * `fw.data.dataset.ready` records the version (so runs can name it) and,
 * when the dataset's trigger policy is enabled, creates a run from the
 * policy's template. Run ids derive from the event id, so a redelivered
 * event finds its run instead of creating a second one.
 */
import { stableUuid } from '@flywheel/contracts';
import { subjects, type CreateRunBody, type RunFailed } from '@flywheel/contracts';
import type { Bus, Subscription } from '@flywheel/bus';
import { isProblemError } from '@flywheel/service';
import type { CatalogRepository } from './repositories/catalog.repository.ts';
import type { RunsRepository } from './repositories/runs.repository.ts';
import { resolveRunRequest, type RequestDeps } from './run/requests.ts';

export interface ConsumerDeps extends RequestDeps {
  runs: RunsRepository;
  catalog: CatalogRepository;
  kick(): void;
  publishFailed(d: RunFailed, id: string): Promise<void>;
}

export async function startTrainerConsumers(bus: Bus, deps: ConsumerDeps, opts: { backoffMs?: number[] } = {}): Promise<Subscription[]> {
  const backoffMs = opts.backoffMs ?? [1_000, 5_000, 30_000, 120_000];

  /** Creates the run, or announces why it cannot be created (a bad request is not retried). */
  async function create(runId: string, trigger: string, body: CreateRunBody): Promise<void> {
    if (await deps.runs.get(runId)) return;
    try {
      const run = await resolveRunRequest(deps, runId, trigger, body);
      await deps.runs.insert(run);
      deps.kick();
    } catch (e) {
      if (!isProblemError(e)) throw e;
      await deps.publishFailed({ runId, reason: e.detail ?? e.message, stage: 'request', restarts: 0 }, stableUuid(`failed:${runId}`));
    }
  }

  const requested = await bus.consume(
    subjects.trainerRunRequested,
    async (event) => {
      const r = event.data;
      const body: CreateRunBody = {
        dataset: r.manifestUri ? { manifestUri: r.manifestUri } : { name: r.datasetId, ...(r.datasetVersion ? { version: r.datasetVersion } : {}) },
        model: r.baseModelUri ? { baseUri: r.baseModelUri } : { ...(r.modelConfig ? { config: r.modelConfig } : {}) },
        method: r.method,
        ...(r.lora ? { lora: r.lora } : {}),
        ...(r.distillation ? { distillation: { teacherUri: r.distillation.teacherUri, temperature: r.distillation.temperature, alpha: r.distillation.alpha } } : {}),
        hyperparameters: {
          maxSteps: r.hyperparameters.maxSteps,
          learningRate: r.hyperparameters.learningRate,
          batchSize: r.hyperparameters.batchSize,
          seqLen: r.hyperparameters.seqLen,
          ...(r.hyperparameters.gradAccumSteps ? { gradAccumSteps: r.hyperparameters.gradAccumSteps } : {}),
          ...(r.hyperparameters.warmupSteps !== undefined ? { warmupSteps: r.hyperparameters.warmupSteps } : {}),
          ...(r.hyperparameters.weightDecay !== undefined ? { weightDecay: r.hyperparameters.weightDecay } : {}),
        },
        ...(r.resources ? { worldSize: r.resources.nodes * r.resources.processesPerNode, device: r.resources.device } : {}),
        ...(r.checkpointEvery ? { checkpointInterval: r.checkpointEvery } : {}),
        ...(r.restartBudget !== undefined ? { restartBudget: r.restartBudget } : {}),
        ...(r.hyperparameters.seed !== undefined ? { seed: r.hyperparameters.seed } : {}),
      };
      await create(r.runId ?? stableUuid(`requested:${event.id}`), r.trigger, body);
    },
    { durable: 'trainer-run-requested', maxDeliver: 5, backoffMs },
  );

  const ready = await bus.consume(
    subjects.dataDatasetReady,
    async (event) => {
      const d = event.data;
      await deps.catalog.upsertDataset({ name: d.datasetName, version: d.version, dataset_id: d.datasetId, manifest_uri: d.manifestUri, tokenizer: d.tokenizer });
      const policy = await deps.catalog.getPolicy(d.datasetName);
      if (!policy?.enabled) return;
      // The whole template (device and precision included) is the body; only the dataset is the event's.
      const body = { ...(policy.template as Omit<CreateRunBody, 'dataset'>), dataset: { name: d.datasetName, version: d.version } } as CreateRunBody;
      await create(stableUuid(`policy:${event.id}`), 'dataset', body);
    },
    { durable: 'trainer-dataset-ready', maxDeliver: 5, backoffMs },
  );
  return [requested, ready];
}
