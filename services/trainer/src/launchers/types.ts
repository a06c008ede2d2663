/** What the supervisor needs from a launcher: start the ranks of one attempt, watch them, stop them. */
import type { Device } from '@flywheel/contracts';

export interface LaunchRequest {
  runId: string;
  attempt: number;
  worldSize: number;
  workerBin: string;
  /** The job spec file (local path; on Kubernetes the same path on the shared volume). */
  specPath: string;
  workDir: string;
  /** Added to every rank's environment (FW_STORE_URL, FW_STORE_TOKEN). */
  env: Record<string, string>;
  threadsPerRank: number;
  /** `cuda`: every rank trains on one GPU, the one LOCAL_RANK names among the devices it sees. */
  device: Device;
  /**
   * The GPUs of this host the scheduler gave the run, one per rank (indices
   * among the trainer's own visible devices); set for a cuda run on a
   * launcher with `maxGpus`, absent otherwise.
   */
  gpus?: number[] | undefined;
}

export interface RankExit {
  code: number | null;
  signal: string | null;
}

export interface RankHandle {
  rank: number;
  pid: number | null;
  host: string | null;
  /** Sets the one callback for every stdout line of the rank (lines written before it was set included). */
  onLine(cb: (line: string) => void): void;
  /** The last lines the rank wrote to stderr (empty when not collected). */
  stderrTail(): string;
  /** Resolves when the rank has exited (never rejects). */
  exited: Promise<RankExit>;
}

export interface LaunchedAttempt {
  ranks: RankHandle[];
  /** Sends `signal` to every rank still running. */
  signal(signal: NodeJS.Signals): void;
}

export interface Launcher {
  readonly name: string;
  /** The largest world size this launcher can ever place (422 above it). */
  maxWorldSize(): number;
  /**
   * GPUs of this host the launcher hands out, one per rank of a cuda run
   * (local: FW_GPUS). Absent when something else places the GPUs
   * (Kubernetes: each pod requests its own).
   */
  maxGpus?(): number;
  launch(req: LaunchRequest): Promise<LaunchedAttempt>;
}

export class LaunchError extends Error {
  override name = 'LaunchError';
}
