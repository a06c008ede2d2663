/**
 * Turns a run request (HTTP body, bus event or policy template) into the
 * normalised spec stored with the run, or a clear problem: unknown dataset,
 * inconsistent hyperparameters or device options, a world size (or number
 * of GPUs) the launcher cannot place.
 */
import type { ArtifactStore } from '@flywheel/artifacts';
import type { CreateRunBody } from '@flywheel/contracts';
import { ProblemError } from '@flywheel/service';
import { trainerProblems } from '../errors.ts';
import type { Launcher } from '../launchers/types.ts';
import type { CatalogRepository } from '../repositories/catalog.repository.ts';
import type { NewRun, RunSpec } from '../repositories/runs.repository.ts';

export interface RequestDeps {
  catalog: CatalogRepository;
  artifacts: ArtifactStore;
  launchers: Record<string, Launcher>;
  defaultLauncher: string;
  defaultRestartBudget: number;
  defaultCheckpointInterval: number;
}

const invalid = (detail: string) => new ProblemError(trainerProblems.invalidRun, detail);

async function checkFolder(artifacts: ArtifactStore, uri: string, what: string): Promise<void> {
  let key: string;
  try {
    key = artifacts.keyFor(uri.replace(/\/+$/, ''));
  } catch (e) {
    throw invalid(`${what} ${uri} is not inside the artifact store: ${(e as Error).message}`);
  }
  const ok = (await artifacts.exists(`${key}/config.json`)) || (await artifacts.exists(`${key}/adapter_config.json`));
  if (!ok) throw invalid(`${what} ${uri} holds no config.json: not a model folder`);
}

export async function resolveRunRequest(
  deps: RequestDeps,
  id: string,
  trigger: string,
  body: CreateRunBody,
): Promise<NewRun> {
  const d = body.dataset;
  let manifestUri: string;
  let datasetName: string | null = null;
  let datasetVersion: string | null = null;
  let datasetId: string | undefined;
  if (d.manifestUri !== undefined) {
    if (d.name !== undefined || d.version !== undefined) throw invalid('dataset: give either name (and version) or manifestUri, not both');
    try {
      deps.artifacts.keyFor(d.manifestUri);
    } catch (e) {
      throw invalid(`dataset.manifestUri is not inside the artifact store: ${(e as Error).message}`);
    }
    if (!(await deps.artifacts.exists(d.manifestUri)))
      throw new ProblemError(trainerProblems.datasetNotFound, `no manifest at ${d.manifestUri}`);
    manifestUri = d.manifestUri;
  } else {
    if (d.name === undefined) throw invalid('dataset: name (and version) or manifestUri is required');
    const row = await deps.catalog.findDataset(d.name, d.version ?? 'latest');
    if (!row)
      throw new ProblemError(trainerProblems.datasetNotFound, `dataset ${d.name}@${d.version ?? 'latest'} is unknown (no fw.data.dataset.ready seen for it)`, {
        extensions: { dataset: d.name, version: d.version ?? 'latest' },
      });
    manifestUri = row.manifest_uri;
    datasetName = row.name;
    datasetVersion = row.version;
    datasetId = row.dataset_id;
  }

  const m = body.model;
  if ((m.baseUri === undefined) === (m.config === undefined)) throw invalid('model: give exactly one of baseUri (a model folder) or config (from scratch)');
  if (m.baseUri !== undefined) await checkFolder(deps.artifacts, m.baseUri, 'model.baseUri');
  if (m.config !== undefined && typeof m.config['model_type'] !== 'string') throw invalid('model.config must be a HF config.json object with model_type');

  const method = body.method ?? (body.lora ? 'lora' : 'full');
  if (method === 'lora' && !body.lora) throw invalid('method lora needs lora options (rank, alpha)');
  if (method === 'full' && body.lora) throw invalid('lora options given with method full');
  if (method === 'lora' && m.baseUri === undefined) throw invalid('a LoRA run needs a base model (model.baseUri)');
  if (body.distillation) await checkFolder(deps.artifacts, body.distillation.teacherUri, 'distillation.teacherUri');

  const h = body.hyperparameters;
  if (h.minLearningRate !== undefined && h.minLearningRate > h.learningRate) throw invalid('hyperparameters.minLearningRate must not exceed learningRate');
  if (h.warmupSteps !== undefined && h.warmupSteps > h.maxSteps) throw invalid('hyperparameters.warmupSteps must not exceed maxSteps');
  if (h.gradAccumSteps !== undefined && h.batchSize % h.gradAccumSteps !== 0) throw invalid('hyperparameters.gradAccumSteps must divide batchSize');

  // The cuda engine trains in fp32, bf16 or fp16; the cpu engine only in fp32 (docs/worker.md).
  const device = body.device ?? 'cpu';
  const precision = body.precision ?? (device === 'cuda' ? 'bf16' : 'fp32');
  if (device === 'cpu' && precision !== 'fp32') throw invalid(`precision ${precision} needs device cuda: the cpu engine trains in fp32`);
  if (device === 'cpu' && h.zero1) throw invalid('hyperparameters.zero1 needs device cuda: the cpu engine keeps the whole optimizer state on every rank');

  const launcherName = body.launcher ?? deps.defaultLauncher;
  const launcher = deps.launchers[launcherName];
  if (!launcher) throw invalid(`unknown launcher ${launcherName} (have: ${Object.keys(deps.launchers).join(', ')})`);
  const worldSize = body.worldSize ?? 1;
  if (worldSize > launcher.maxWorldSize())
    throw new ProblemError(trainerProblems.cannotPlace, `world size ${worldSize} exceeds the ${launcher.maxWorldSize()} ranks the ${launcherName} launcher can place`, {
      extensions: { worldSize, max: launcher.maxWorldSize() },
    });
  const gpus = launcher.maxGpus?.();
  if (device === 'cuda' && gpus !== undefined && worldSize > gpus)
    throw new ProblemError(trainerProblems.cannotPlace, `device cuda needs ${worldSize} GPU${worldSize > 1 ? 's' : ''} (one per rank); this trainer has FW_GPUS=${gpus}`, {
      extensions: { worldSize, gpus },
    });

  const spec: RunSpec = {
    manifestUri,
    datasetId,
    baseModelUri: m.baseUri,
    modelConfig: m.config,
    initSeed: m.initSeed,
    method,
    lora: body.lora,
    distillation: body.distillation,
    hyperparameters: h,
    worldSize,
    checkpointInterval: body.checkpointInterval ?? deps.defaultCheckpointInterval,
    restartBudget: body.restartBudget ?? deps.defaultRestartBudget,
    seed: body.seed ?? 1337,
    launcher: launcherName,
    device,
    precision,
    collectiveTimeoutMs: body.collectiveTimeoutMs,
    joinTimeoutMs: body.joinTimeoutMs,
  };
  return { id, trigger, spec: JSON.parse(JSON.stringify(spec)) as RunSpec, datasetName, datasetVersion };
}
