/**
 * The local launcher: ranks as child processes of the trainer, with the
 * environment torchrun gives (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR) plus the rendezvous store. All ranks of an attempt share one
 * process group (rank 0 leads it; the others join it through a tiny perl
 * exec shim, since Node cannot setpgid), so one kill(-pgid) reaches them all
 * and a trainer restart can find and stop them by pid.
 */
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { LaunchError, type LaunchedAttempt, type Launcher, type LaunchRequest, type RankExit, type RankHandle } from './types.ts';

const JOIN_GROUP = 'my $g = shift; setpgid(0, $g) or die "setpgid $g: $!\\n"; exec { $ARGV[0] } @ARGV or die "exec: $!\\n";';

export interface LocalLauncherOptions {
  /** Ranks one run may have here (the machine's cores by default). */
  maxRanks: number;
  /** Extra environment for every rank (tests). */
  env?: Record<string, string>;
}

export function createLocalLauncher(opts: LocalLauncherOptions): Launcher {
  return {
    name: 'local',
    maxWorldSize: () => opts.maxRanks,
    async launch(req: LaunchRequest): Promise<LaunchedAttempt> {
      try {
        await access(req.workerBin, constants.X_OK);
      } catch {
        throw new LaunchError(`worker binary ${req.workerBin} is missing or not executable (build native/ or set FW_WORKER_BIN)`);
      }
      const ranks: RankHandle[] = [];
      const children: ReturnType<typeof spawn>[] = [];
      let pgid: number | undefined;
      for (let rank = 0; rank < req.worldSize; rank++) {
        const env = {
          ...process.env,
          ...opts.env,
          ...req.env,
          RANK: String(rank),
          WORLD_SIZE: String(req.worldSize),
          LOCAL_RANK: String(rank),
          LOCAL_WORLD_SIZE: String(req.worldSize),
          GROUP_RANK: '0',
          MASTER_ADDR: '127.0.0.1',
          OMP_NUM_THREADS: String(req.threadsPerRank),
          OPENBLAS_NUM_THREADS: '1',
        };
        const child =
          rank === 0
            ? spawn(req.workerBin, [req.specPath], { cwd: req.workDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
            : spawn('perl', ['-e', JOIN_GROUP, String(pgid), req.workerBin, req.specPath], { cwd: req.workDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
        if (rank === 0) pgid = child.pid;
        children.push(child);
        const exited = new Promise<RankExit>((resolve) => {
          child.once('error', () => resolve({ code: null, signal: 'SPAWN_FAILED' }));
          child.once('exit', (code, signal) => resolve({ code, signal }));
        });
        const lines = createInterface({ input: child.stdout! });
        const stderr: string[] = [];
        child.stderr!.on('data', (b: Buffer) => {
          stderr.push(b.toString('utf8'));
          if (stderr.length > 50) stderr.shift();
        });
        ranks.push({
          rank,
          pid: child.pid ?? null,
          host: hostname(),
          onLine: (cb) => lines.on('line', cb),
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
