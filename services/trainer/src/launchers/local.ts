/**
 * The local launcher: ranks as child processes of the trainer, with the
 * environment torchrun gives (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR) plus the rendezvous store. All ranks of an attempt share one
 * process group: every rank starts through a tiny perl exec shim (Node
 * cannot setpgid) that puts rank 0 in a new group and the others in rank 0's,
 * then execs the worker, so one kill(-pgid) reaches them all and a trainer
 * restart can find and stop them by pid. The ranks of a cuda run see only the
 * GPUs the scheduler gave the run (CUDA_VISIBLE_DEVICES), so rank r trains on
 * the run's r-th GPU (LOCAL_RANK = r) and two runs never share one.
 */
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { LaunchError, type LaunchedAttempt, type Launcher, type LaunchRequest, type RankExit, type RankHandle } from './types.ts';

// Puts the process in group $g (0: a new group led by itself, same session), then execs the worker.
// A rank joining rank 0's group retries while rank 0 has not created it yet.
const JOIN_GROUP =
  'use POSIX (); my $g = shift; my $n = 0; until (POSIX::setpgid(0, $g)) { die "setpgid $g: $!\\n" if $g == 0 || ++$n > 500; select(undef, undef, undef, 0.01) } exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\\n";';

export interface LocalLauncherOptions {
  /** Ranks one run may have here (the machine's cores by default). */
  maxRanks: number;
  /** GPUs of this host for cuda runs (FW_GPUS; default 0: none). */
  gpus?: number;
  /** Extra environment for every rank (tests). */
  env?: Record<string, string>;
}

/**
 * CUDA_VISIBLE_DEVICES of a run given `gpus`: indices among the trainer's own
 * visible devices (`inherited`, its CUDA_VISIBLE_DEVICES, when set; else all).
 */
export function cudaVisibleDevices(gpus: readonly number[], inherited: string | undefined): string {
  if (inherited === undefined) return gpus.join(',');
  const own = inherited.split(',').map((d) => d.trim()).filter(Boolean);
  return gpus
    .map((g) => {
      const d = own[g];
      if (d === undefined) throw new LaunchError(`GPU ${g} is not among the trainer's CUDA_VISIBLE_DEVICES=${inherited} (is FW_GPUS too large?)`);
      return d;
    })
    .join(',');
}

export function createLocalLauncher(opts: LocalLauncherOptions): Launcher {
  return {
    name: 'local',
    maxWorldSize: () => opts.maxRanks,
    maxGpus: () => opts.gpus ?? 0,
    async launch(req: LaunchRequest): Promise<LaunchedAttempt> {
      try {
        await access(req.workerBin, constants.X_OK);
      } catch {
        throw new LaunchError(`worker binary ${req.workerBin} is missing or not executable (build native/ or set FW_WORKER_BIN)`);
      }
      const inherited = { ...process.env, ...opts.env };
      const gpuEnv: Record<string, string> =
        req.device === 'cuda' && req.gpus ? { CUDA_VISIBLE_DEVICES: cudaVisibleDevices(req.gpus, inherited['CUDA_VISIBLE_DEVICES']) } : {};
      const ranks: RankHandle[] = [];
      const children: ReturnType<typeof spawn>[] = [];
      let pgid: number | undefined;
      for (let rank = 0; rank < req.worldSize; rank++) {
        const env = {
          ...inherited,
          ...req.env,
          ...gpuEnv,
          RANK: String(rank),
          WORLD_SIZE: String(req.worldSize),
          LOCAL_RANK: String(rank),
          LOCAL_WORLD_SIZE: String(req.worldSize),
          GROUP_RANK: '0',
          MASTER_ADDR: '127.0.0.1',
          OMP_NUM_THREADS: String(req.threadsPerRank),
          OPENBLAS_NUM_THREADS: '1',
        };
        // Not `detached` (setsid): a new session would keep the other ranks out of rank 0's group.
        const child = spawn('perl', ['-e', JOIN_GROUP, String(pgid ?? 0), req.workerBin, req.specPath], {
          cwd: req.workDir,
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        if (rank === 0) pgid = child.pid;
        children.push(child);
        const exited = new Promise<RankExit>((resolve) => {
          child.once('error', () => resolve({ code: null, signal: 'SPAWN_FAILED' }));
          child.once('exit', (code, signal) => resolve({ code, signal }));
        });
        // Lines written before the supervisor listens (it records the ranks first) are kept, not dropped.
        const lines = createInterface({ input: child.stdout! });
        const early: string[] = [];
        let listener: ((line: string) => void) | undefined;
        lines.on('line', (l) => (listener ? listener(l) : early.push(l)));
        const stderr: string[] = [];
        child.stderr!.on('data', (b: Buffer) => {
          stderr.push(b.toString('utf8'));
          if (stderr.length > 50) stderr.shift();
        });
        ranks.push({
          rank,
          pid: child.pid ?? null,
          host: hostname(),
          onLine: (cb) => {
            listener = cb;
            for (const l of early.splice(0)) cb(l);
          },
          stderrTail: () => stderr.join('').split('\n').filter(Boolean).slice(-5).join(' | '),
          exited,
        });
      }
      return {
        ranks,
        signal(sig) {
          if (pgid !== undefined) {
            try {
              process.kill(-pgid, sig);
            } catch {
              /* the group is gone */
            }
          }
          for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(sig);
        },
      };
    },
  };
}
