/**
 * The `flywheel` command: parses arguments (node:util parseArgs), talks to
 * the trainer, prints tables or JSON, and returns the exit code: 0 ok, 1 the
 * run failed / was cancelled or the API refused the request, 2 usage error,
 * 3 the trainer is unreachable. `run` never calls process.exit, so tests
 * drive it with their own streams.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { CreateRunBody, RunView } from '@flywheel/contracts';
import { ApiError, createClient, UnreachableError, type TrainerClient } from './client.ts';
import { createEta, renderProgress } from './progress.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: Record<string, string | undefined>;
  /** True when `out` is a terminal (progress redrawn in place). */
  tty: boolean;
}

class UsageError extends Error {
  override name = 'UsageError';
}

const GLOBAL_HELP = `flywheel - command line of the flywheel platform

Usage: flywheel <group> <command> [options]

Commands:
  runs submit      create a training run (optionally watch it)
  runs list        list runs, newest first
  runs get ID      show a run with its attempts and checkpoints
  runs watch ID    follow a run's progress until it ends
  runs cancel ID   cancel a run (its ranks checkpoint and stop)

Global options:
  --url URL        trainer API (env FW_TRAINER_URL, default http://127.0.0.1:8082)
  --token TOKEN    bearer token (env FW_API_TOKEN)
  --json           machine-readable output
  -h, --help       help for a command
  --version        print the version

Exit codes: 0 ok, 1 run failed or request refused, 2 usage error, 3 trainer unreachable.
`;

const SUBMIT_HELP = `Usage: flywheel runs submit --dataset NAME[@VERSION] (--config FILE | --base-model URI) [options]

Data (one of):
  --dataset NAME[@VERSION]   a dataset version the trainer has seen ready (VERSION defaults to latest)
  --manifest URI             a dataset manifest in the artifact store
Model (one of):
  --base-model URI           a Hugging Face model folder in the artifact store to fine-tune
  --config FILE              a config.json to train from scratch
Training:
  --steps N                  optimizer steps (required)
  --lr X                     peak learning rate (default 3e-4)
  --batch-size N             sequences per step per rank (default 8)
  --seq-len N                tokens per sequence (default 256)
  --warmup N                 warmup steps
  --lora-rank N              LoRA rank (switches to a LoRA run); --lora-alpha X (default 2*rank), --lora-merge
  --teacher URI              distil from this model folder (--distill-alpha X, --distill-temperature T)
  --world-size N             ranks (default 1)
  --device cpu|cuda          where the ranks train (default cpu; cuda: one GPU per rank)
  --precision fp32|bf16|fp16 16-bit mixed precision is cuda only (default bf16 on cuda, fp32 on cpu)
  --recompute                activation recomputation (less memory, one more forward per step)
  --zero1                    shard the optimizer state over the ranks (ZeRO-1; cuda only)
  --checkpoint-interval N    steps between checkpoints
  --restart-budget N         restarts allowed after a rank dies
  --seed N                   seed of init, data order and dropout
  --launcher NAME            local or kubernetes (default: the trainer's)
  --watch                    follow the run with a progress bar until it ends (exit 1 if it fails)
  --json                     print the created run (and with --watch, the final run) as JSON
`;

const COMMAND_HELP: Record<string, string> = {
  submit: SUBMIT_HELP,
  list: 'Usage: flywheel runs list [--status queued|running|completed|failed|cancelled] [--json]\n',
  get: 'Usage: flywheel runs get ID [--json]\n',
  watch: 'Usage: flywheel runs watch ID [--json]\n  Follows the run with a progress bar; exit 0 when it completes, 1 when it fails or is cancelled.\n',
  cancel: 'Usage: flywheel runs cancel ID [--json]\n',
};

const OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  watch: { type: 'boolean' },
  status: { type: 'string' },
  dataset: { type: 'string' },
  manifest: { type: 'string' },
  'base-model': { type: 'string' },
  config: { type: 'string' },
  steps: { type: 'string' },
  lr: { type: 'string' },
  'batch-size': { type: 'string' },
  'seq-len': { type: 'string' },
  warmup: { type: 'string' },
  'lora-rank': { type: 'string' },
  'lora-alpha': { type: 'string' },
  'lora-merge': { type: 'boolean' },
  teacher: { type: 'string' },
  'distill-alpha': { type: 'string' },
  'distill-temperature': { type: 'string' },
  'world-size': { type: 'string' },
  device: { type: 'string' },
  precision: { type: 'string' },
  recompute: { type: 'boolean' },
  zero1: { type: 'boolean' },
  'checkpoint-interval': { type: 'string' },
  'restart-budget': { type: 'string' },
  seed: { type: 'string' },
  launcher: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

function int(v: Values, name: keyof Values, min: number): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^-?[0-9]+$/.test(raw) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${String(raw)}"`);
  return n;
}

function num(v: Values, name: keyof Values): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${String(raw)}"`);
  return n;
}

async function submitBody(v: Values): Promise<CreateRunBody> {
  if ((v.dataset === undefined) === (v.manifest === undefined)) throw new UsageError('give exactly one of --dataset NAME[@VERSION] or --manifest URI');
  if ((v['base-model'] === undefined) === (v.config === undefined)) throw new UsageError('give exactly one of --base-model URI or --config FILE');
  const steps = int(v, 'steps', 1);
  if (steps === undefined) throw new UsageError('--steps is required');
  let dataset: CreateRunBody['dataset'];
  if (v.dataset !== undefined) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)(?:@([0-9a-f]{8,64}|latest))?$/.exec(v.dataset);
    if (!m) throw new UsageError(`--dataset must be NAME or NAME@VERSION (hex or latest), got "${v.dataset}"`);
    dataset = { name: m[1]!, version: m[2] ?? 'latest' };
  } else dataset = { manifestUri: v.manifest! };
  let model: CreateRunBody['model'];
  if (v.config !== undefined) {
    let text: string;
    try {
      text = await readFile(v.config, 'utf8');
    } catch (e) {
      throw new UsageError(`--config: cannot read ${v.config}: ${(e as Error).message}`);
    }
    try {
      model = { config: JSON.parse(text) as Record<string, unknown> };
    } catch {
      throw new UsageError(`--config: ${v.config} is not JSON`);
    }
  } else model = { baseUri: v['base-model']! };
  const loraRank = int(v, 'lora-rank', 1);
  const body: CreateRunBody = {
    dataset,
    model,
    hyperparameters: {
      maxSteps: steps,
      learningRate: num(v, 'lr') ?? 3e-4,
      batchSize: int(v, 'batch-size', 1) ?? 8,
      seqLen: int(v, 'seq-len', 2) ?? 256,
      ...(v.warmup !== undefined ? { warmupSteps: int(v, 'warmup', 0)! } : {}),
      ...(v.recompute ? { recompute: true } : {}),
      ...(v.zero1 ? { zero1: true } : {}),
    },
  };
  if (loraRank !== undefined) {
    body.method = 'lora';
    body.lora = { rank: loraRank, alpha: num(v, 'lora-alpha') ?? 2 * loraRank, ...(v['lora-merge'] ? { merge: true } : {}) };
  }
  if (v.teacher !== undefined)
    body.distillation = { teacherUri: v.teacher, alpha: num(v, 'distill-alpha') ?? 0.5, temperature: num(v, 'distill-temperature') ?? 2 };
  const ws = int(v, 'world-size', 1);
  if (ws !== undefined) body.worldSize = ws;
  if (v.device !== undefined) {
    if (v.device !== 'cpu' && v.device !== 'cuda') throw new UsageError(`--device must be cpu or cuda, got "${v.device}"`);
    body.device = v.device;
  }
  if (v.precision !== undefined) {
    if (v.precision !== 'fp32' && v.precision !== 'bf16' && v.precision !== 'fp16')
      throw new UsageError(`--precision must be fp32, bf16 or fp16, got "${v.precision}"`);
    body.precision = v.precision;
  }
  const ci = int(v, 'checkpoint-interval', 0);
  if (ci !== undefined) body.checkpointInterval = ci;
  const rb = int(v, 'restart-budget', 0);
  if (rb !== undefined) body.restartBudget = rb;
  const seed = int(v, 'seed', 0);
  if (seed !== undefined) body.seed = seed;
  if (v.launcher !== undefined) body.launcher = v.launcher;
  return body;
}

function table(runs: RunView[]): string {
  const rows = [['ID', 'STATUS', 'DATASET', 'STEP', 'LOSS', 'RESTARTS', 'CREATED']];
  for (const r of runs)
    rows.push([
      r.id,
      r.status,
      r.datasetName ? `${r.datasetName}@${r.datasetVersion ?? ''}` : '-',
      `${r.step}/${r.maxSteps}`,
      r.loss === null ? '-' : r.loss.toFixed(4),
      `${r.restarts}/${r.restartBudget}`,
      r.createdAt,
    ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function describeRun(r: RunView): string {
  const lines = [
    `run        ${r.id}`,
    `status     ${r.status}${r.reason ? ` (${r.reason})` : ''}`,
    `dataset    ${r.datasetName ? `${r.datasetName}@${r.datasetVersion}` : r.manifestUri}`,
    `progress   step ${r.step}/${r.maxSteps}, loss ${r.loss === null ? '-' : r.loss.toFixed(4)}`,
    `ranks      ${r.worldSize}${typeof r.spec['device'] === 'string' ? ` on ${r.spec['device']}${typeof r.spec['precision'] === 'string' ? ` (${r.spec['precision']})` : ''}` : ''}`,
    `restarts   ${r.restarts} of ${r.restartBudget}`,
    ...(r.modelUri ? [`model      ${r.modelUri}`] : []),
  ];
  for (const a of r.attempts ?? []) {
    const ranks = a.ranks.map((k) => `rank ${k.rank}: ${k.signal ?? (k.exitCode === null ? 'running' : `exit ${k.exitCode}`)}`).join(', ');
    lines.push(`attempt ${a.attempt}  ${a.status}, from step ${a.resumedFromStep}${a.reason ? `: ${a.reason}` : ''}${ranks ? ` [${ranks}]` : ''}`);
  }
  if (r.checkpoints?.length) lines.push(`checkpoints ${r.checkpoints.map((c) => c.step).join(', ')}`);
  return lines.join('\n') + '\n';
}

/** Follows a run's metric stream with a progress line; returns the final run. */
async function watch(client: TrainerClient, id: string, io: Io, quiet: boolean): Promise<RunView> {
  const run = await client.get(id);
  const state = { step: run.step, maxSteps: run.maxSteps, loss: run.loss, tokensPerSecond: null as number | null, attempt: run.attempt, restarts: run.restarts };
  const eta = createEta();
  let lastPrint = 0;
  const draw = (force = false) => {
    if (quiet) return;
    const now = Date.now();
    if (io.tty) {
      if (!force && now - lastPrint < 100) return;
      io.out(`\r\x1b[2K${renderProgress(state, eta.secondsLeft(state.maxSteps))}`);
    } else {
      if (!force && now - lastPrint < 5000) return;
      io.out(`${renderProgress(state, eta.secondsLeft(state.maxSteps))}\n`);
    }
    lastPrint = now;
  };
  for await (const ev of client.stream(id)) {
    if (ev.event === 'metric' && ev.data.rank === 0 && ev.data.loss !== null) {
      state.step = ev.data.step;
      state.loss = ev.data.loss;
      state.tokensPerSecond = ev.data.tokensPerSecond;
      eta.add(ev.data.step);
      draw();
    } else if (ev.event === 'status') {
      if (ev.data.restarts > state.restarts && !quiet) {
        if (io.tty) io.out('\n');
        io.out(`restarted: attempt ${ev.data.attempt} resumes from the last checkpoint (restart ${ev.data.restarts} of ${ev.data.restartBudget})\n`);
      }
      state.restarts = ev.data.restarts;
      state.attempt = ev.data.attempt;
    } else if (ev.event === 'end') {
      break;
    }
  }
  draw(true);
  if (!quiet && io.tty) io.out('\n');
  return client.get(id);
}

export async function run(argv: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    io.err(`flywheel: ${(e as Error).message}\nRun 'flywheel --help' for usage.\n`);
    return EXIT.usage;
  }
  const v = parsed.values;
  const [group, command, ...rest] = parsed.positionals;
  if (v.version) {
    io.out('flywheel 0.1.0\n');
    return EXIT.ok;
  }
  if (!group || (v.help && !command)) {
    (v.help ? io.out : io.err)(GLOBAL_HELP);
    return v.help ? EXIT.ok : EXIT.usage;
  }
  if (group !== 'runs' || !command || !(command in COMMAND_HELP)) {
    io.err(`flywheel: unknown command "${[group, command].filter(Boolean).join(' ')}"\n\n${GLOBAL_HELP}`);
    return EXIT.usage;
  }
  if (v.help) {
    io.out(COMMAND_HELP[command]!);
    return EXIT.ok;
  }
  const client = createClient(v.url ?? io.env['FW_TRAINER_URL'] ?? 'http://127.0.0.1:8082', v.token ?? io.env['FW_API_TOKEN']);
  const print = (x: unknown) => io.out(`${JSON.stringify(x, null, 2)}\n`);
  const needId = () => {
    if (rest.length !== 1) throw new UsageError(`flywheel runs ${command} needs exactly one run ID\n\n${COMMAND_HELP[command]}`);
    return rest[0]!;
  };
  const outcome = (r: RunView) => (r.status === 'completed' ? EXIT.ok : EXIT.failed);
  try {
    switch (command) {
      case 'submit': {
        if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
        const created = await client.submit(await submitBody(v));
        if (!v.watch) {
          if (v.json) print(created);
          else io.out(`${created.id}\n`);
          return EXIT.ok;
        }
        if (!v.json) io.out(`run ${created.id} ${created.status}\n`);
        const final = await watch(client, created.id, io, !!v.json);
        if (v.json) print(final);
        else io.out(final.status === 'completed' ? `completed: ${final.modelUri}\n` : `${final.status}: ${final.reason ?? ''}\n`);
        return outcome(final);
      }
      case 'list': {
        if (rest.length) throw new UsageError(`unexpected argument "${rest[0]}"`);
        const runs = await client.list(v.status);
        if (v.json) print(runs);
        else io.out(table(runs));
        return EXIT.ok;
      }
      case 'get': {
        const r = await client.get(needId());
        if (v.json) print(r);
        else io.out(describeRun(r));
        return EXIT.ok;
      }
      case 'watch': {
        const final = await watch(client, needId(), io, !!v.json);
        if (v.json) print(final);
        else io.out(final.status === 'completed' ? `completed: ${final.modelUri}\n` : `${final.status}: ${final.reason ?? ''}\n`);
        return outcome(final);
      }
      case 'cancel': {
        const r = await client.cancel(needId());
        if (v.json) print(r);
        else io.out(`cancelling ${r.id}\n`);
        return EXIT.ok;
      }
    }
    return EXIT.usage;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`flywheel: ${e.message}\n`);
      return EXIT.usage;
    }
    if (e instanceof UnreachableError) {
      io.err(`flywheel: ${e.message}\n`);
      return EXIT.unreachable;
    }
    if (e instanceof ApiError) {
      io.err(`flywheel: ${e.status}: ${e.message}\n`);
      return EXIT.failed;
    }
    throw e;
  }
}
