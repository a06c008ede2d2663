/**
 * Batch execution of the per-record stages: in-process, or on a pool of
 * worker threads. Batches are dispatched as workers free up, with a bounded
 * number in flight (so memory stays bounded), and results are yielded in
 * input order, so the sequential stages downstream see exactly what a
 * single-threaded run sees.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { PipelineConfig } from './config.ts';
import type { Processed, RecordProcessor } from './process.ts';
import type { InputRecord } from './types.ts';
import type { TokenizerSource } from '../tokenize/tokenizer.ts';

export type BatchRunner = {
  run(batch: InputRecord[]): Promise<Processed[]>;
  /** How many batches may be in flight. */
  readonly capacity: number;
  /** True once a worker died: the runner cannot be used again. */
  readonly broken: boolean;
  /** Whether idle workers keep the process alive (ref while a run is in progress, unref between runs). */
  ref(): void;
  unref(): void;
  close(): Promise<void>;
};

export function inlineRunner(process: RecordProcessor): BatchRunner {
  const none = () => undefined;
  return { run: async (batch) => batch.map(process), capacity: 1, broken: false, ref: none, unref: none, close: async () => undefined };
}

export function resolveWorkerCount(workers: number): number {
  return workers === 0 ? Math.max(1, availableParallelism()) : workers;
}

interface Task {
  seq: number;
  batch: InputRecord[];
  resolve: (p: Processed[]) => void;
  reject: (e: Error) => void;
}

/** A pool of worker threads each running worker.ts. */
export async function workerRunner(n: number, config: PipelineConfig, tokenizer: TokenizerSource | undefined): Promise<BatchRunner> {
  // Runs from source (.ts, Node strips types) or from the tsc build (.js).
  const url = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);
  const workers: Worker[] = [];
  const idle: Worker[] = [];
  const busy = new Map<Worker, Task>();
  const queue: Task[] = [];
  let seq = 0;
  let failed: Error | undefined;

  const dispatch = () => {
    while (idle.length > 0 && queue.length > 0) {
      const w = idle.pop()!;
      const t = queue.shift()!;
      try {
        w.postMessage({ seq: t.seq, batch: t.batch });
      } catch (e) {
        // A record that cannot be cloned (a function in `fields`, say) fails its batch, not the process.
        idle.push(w);
        t.reject(new Error(`pipeline worker: cannot send batch ${t.seq}: ${(e as Error).message}`));
        continue;
      }
      busy.set(w, t);
    }
  };
  const fail = (e: Error) => {
    failed ??= e;
    for (const t of [...busy.values(), ...queue.splice(0)]) t.reject(e);
    busy.clear();
  };

  await Promise.all(
    Array.from({ length: n }, () => {
      const w = new Worker(url, { workerData: { config, tokenizer } });
      workers.push(w);
      return new Promise<void>((resolve, reject) => {
        w.on('message', (msg: { ready?: boolean; seq?: number; out?: Processed[]; error?: string }) => {
          if (msg.ready) {
            idle.push(w);
            resolve();
            dispatch();
            return;
          }
          const t = busy.get(w);
          busy.delete(w);
          idle.push(w);
          if (t) {
            if (msg.error !== undefined) t.reject(new Error(`pipeline worker: ${msg.error}`));
            else t.resolve(msg.out!);
          }
          dispatch();
        });
        w.on('error', (e) => {
          reject(e);
          fail(e);
        });
        w.on('exit', (code) => {
          if (code !== 0) fail(new Error(`pipeline worker exited with code ${code}`));
        });
      });
    }),
  );

  return {
    capacity: n * 2,
    get broken() {
      return failed !== undefined;
    },
    ref: () => workers.forEach((w) => w.ref()),
    unref: () => workers.forEach((w) => w.unref()),
    run: (batch) =>
      new Promise<Processed[]>((resolve, reject) => {
        if (failed) return reject(failed);
        queue.push({ seq: seq++, batch, resolve, reject });
        dispatch();
      }),
    close: async () => {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/** Runs the source through the runner in batches; yields results in input order. */
export async function* processInBatches(
  source: AsyncIterable<InputRecord> | Iterable<InputRecord>,
  runner: BatchRunner,
  batchSize: number,
): AsyncGenerator<Processed[]> {
  const pending: Promise<Processed[]>[] = [];
  const submit = (batch: InputRecord[]) => {
    const p = runner.run(batch);
    p.catch(() => undefined); // awaited below in order; avoid an unhandled rejection meanwhile
    pending.push(p);
  };
  let batch: InputRecord[] = [];
  for await (const r of source) {
    batch.push(r);
    if (batch.length >= batchSize) {
      submit(batch);
      batch = [];
      if (pending.length >= runner.capacity) yield await pending.shift()!;
    }
  }
  if (batch.length > 0) submit(batch);
  while (pending.length > 0) yield await pending.shift()!;
}
