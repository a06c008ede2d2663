/**
 * The cleaning pipeline: per-record stages in batches (in-process or on
 * worker threads), then the order-dependent stages in input order on the
 * calling thread (exact dedup, MinHash-LSH near dedup against this job and
 * earlier versions), then a content-keyed split and token shards.
 *
 * Memory: kept records and their token ids stream to temporary files in
 * `workDir`; what stays in memory is O(records) small state: exact-dedup
 * hashes, LSH band keys, 16-bit signature sketches for candidate checks,
 * split keys and strata.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { PipelineConfig, PipelineConfigInput } from './config.ts';
import { PipelineConfigError, resolveConfig } from './config.ts';
import type { LshParams } from './lsh.ts';
import { MemoryBandIndex, bandKeys, optimalLshParams } from './lsh.ts';
import { createRecordProcessor, type Processed } from './process.ts';
import { ReportBuilder } from './report.ts';
import { assignSplits } from './split.ts';
import { SPLITS, type CleanRecord, type CleaningReport, type InputRecord, type PriorBandIndex, type ShardInfo, type SplitName } from './types.ts';
import { SketchStore, TokenReader, endStream, put } from './spill.ts';
import { inlineRunner, processInBatches, resolveWorkerCount, workerRunner, type BatchRunner } from './workers.ts';
import { SplitShardWriter } from '../tokenize/shards.ts';
import { loadTokenizer, type TextTokenizer, type TokenizerSource } from '../tokenize/tokenizer.ts';

export interface PipelineOptions {
  /** The dataset's tokenizer; worker threads load it themselves, so it is a source, not an object. */
  tokenizer: TokenizerSource;
  /** Band index of earlier dataset versions (the service's Postgres table). */
  priorIndex?: PriorBandIndex;
  /** Perplexity of a text under a reference model ("filled later by the engine"); needed when config.perplexity.enabled. */
  perplexity?: (text: string) => Promise<number>;
  /** Folder for the cleaned split JSONL files and the token shards (`shards/`); created if missing, must not hold an earlier run's output. */
  workDir: string;
  signal?: AbortSignal;
}

export interface SplitOutput {
  split: SplitName;
  /** JSONL of cleaned records, one CleanRecord a line. */
  path: string;
  n_records: number;
  n_tokens: number;
  records(): AsyncIterable<CleanRecord>;
}

export interface PipelineResult {
  splits: Record<SplitName, SplitOutput>;
  shards: ShardInfo[];
  report: CleaningReport;
  /** This job's LSH band keys of kept records, to store in bulk for later versions. */
  index: MemoryBandIndex;
}

export interface Pipeline {
  readonly config: PipelineConfig;
  readonly lsh: LshParams;
  /**
   * Runs the records through every stage. `overrides` replace the options'
   * workDir and signal for this run: a pipeline kept for many jobs gives
   * each run its own folder. Runs may overlap.
   */
  run(records: AsyncIterable<InputRecord> | Iterable<InputRecord>, overrides?: RunOverrides): Promise<PipelineResult>;
  /**
   * Ends the worker threads (kept between runs so later runs skip their
   * start-up and warm-up; idle ones do not keep the process alive).
   */
  close(): Promise<void>;
}

export interface RunOverrides {
  workDir?: string;
  signal?: AbortSignal;
}

/** What a pipeline keeps between runs: the loaded tokenizer and the worker pool. */
interface Resources {
  tokenizer?: Promise<TextTokenizer>;
  pool?: Promise<BatchRunner>;
  active: number;
  /** Ends an idle pool, so a pipeline dropped without close() does not keep its threads. */
  idleTimer?: NodeJS.Timeout;
}

const POOL_IDLE_MS = 30_000;

async function closePool(res: Resources): Promise<void> {
  clearTimeout(res.idleTimer);
  const pool = res.pool;
  res.pool = undefined;
  if (pool) await (await pool.catch(() => undefined))?.close();
}

export class PipelineInputError extends Error {
  override name = 'PipelineInputError';
}
export const isPipelineInputError = (e: unknown): e is PipelineInputError => e instanceof PipelineInputError;

/** Validates the config (throws PipelineConfigError) and returns a pipeline that can run many times. */
export function createPipeline(config: PipelineConfigInput | PipelineConfig | undefined, opts: PipelineOptions): Pipeline {
  const cfg = resolveConfig(config);
  if (cfg.perplexity.enabled && !opts.perplexity) throw new PipelineConfigError(['/perplexity/enabled: no perplexity hook is configured']);
  const lsh = optimalLshParams(cfg.dedup.threshold, cfg.dedup.num_perm, cfg.dedup.lsh_fp_weight, 1 - cfg.dedup.lsh_fp_weight);
  const res: Resources = { active: 0 };
  return {
    config: cfg,
    lsh,
    run: (records, overrides) => runPipeline(cfg, lsh, { ...opts, ...overrides }, res, records),
    close: () => closePool(res),
  };
}

function loadOnce(res: Resources, src: TokenizerSource): Promise<TextTokenizer> {
  res.tokenizer ??= loadTokenizer(src).catch((e: unknown) => {
    res.tokenizer = undefined; // a later run may try again
    throw e;
  });
  return res.tokenizer;
}

async function acquireRunner(res: Resources, cfg: PipelineConfig, opts: PipelineOptions, n: number, tokenizer: TextTokenizer | undefined): Promise<BatchRunner> {
  if (n <= 1) return inlineRunner(createRecordProcessor(cfg, tokenizer));
  res.pool ??= workerRunner(n, cfg, opts.tokenizer).catch((e: unknown) => {
    res.pool = undefined;
    throw e;
  });
  clearTimeout(res.idleTimer);
  const pool = await res.pool;
  res.active++;
  pool.ref();
  return pool;
}

async function releaseRunner(res: Resources, runner: BatchRunner, pooled: boolean): Promise<void> {
  if (!pooled) return;
  res.active--;
  if (runner.broken) {
    if (res.pool && (await res.pool) === runner) res.pool = undefined;
    await runner.close();
  } else if (res.active === 0) {
    runner.unref();
    res.idleTimer = setTimeout(() => void (res.active === 0 ? closePool(res) : undefined), POOL_IDLE_MS).unref();
  }
}

async function runPipeline(
  cfg: PipelineConfig,
  lsh: LshParams,
  opts: PipelineOptions,
  res: Resources,
  source: AsyncIterable<InputRecord> | Iterable<InputRecord>,
): Promise<PipelineResult> {
  if (source === null || typeof source !== 'object' || !(Symbol.asyncIterator in source || Symbol.iterator in source))
    throw new PipelineInputError('records must be an iterable or async iterable of records');
  const t0 = performance.now();
  const needTokens = cfg.length.enabled || cfg.tokenise.enabled;
  const tokenizer = needTokens ? await loadOnce(res, opts.tokenizer) : undefined;
  const nWorkers = resolveWorkerCount(cfg.workers);
  await mkdir(opts.workDir, { recursive: true });
  // Never overwrite the output of an earlier run.
  for (const name of [...SPLITS.map((x) => `${x}.jsonl`), 'shards'])
    if (existsSync(join(opts.workDir, name))) throw new PipelineInputError(`workDir ${opts.workDir} already holds ${name} from an earlier run; use a fresh folder`);
  // Acquired before anything needs cleaning up; released in the finally below.
  const pooled = nWorkers > 1;
  const runner = await acquireRunner(res, cfg, opts, nWorkers, tokenizer);
  const tmp = join(opts.workDir, `.pipeline-${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(tmp);
  } catch (e) {
    await releaseRunner(res, runner, pooled);
    throw e;
  }
  const report = new ReportBuilder(cfg, lsh, nWorkers);
  const index = new MemoryBandIndex();
  const sketches = new SketchStore(cfg.dedup.num_perm);
  const keptIds: string[] = []; // by near-dedup ordinal, for report examples
  const seen = new Map<string, string>(); // exact key -> id of the first record with it
  const splitKeys: number[] = [];
  const strata: string[] = [];
  let recordsIn = 0;
  let bytesIn = 0;
  // Every write stream gets a permanent error listener: a write error surfaces
  // at the next await (as a rejection), never as an uncaught exception.
  let streamError: Error | undefined;
  const writeStream = (path: string) => createWriteStream(path).on('error', (e) => (streamError ??= e));
  const checkStreams = () => {
    if (streamError) throw streamError;
  };
  const keptJson = writeStream(join(tmp, 'kept.jsonl'));
  const keptTok = writeStream(join(tmp, 'kept.tok'));
  const writers: SplitShardWriter[] = [];
  const splitTmp: string[] = [];
  const splitStreams: WriteStream[] = [];
  try {
    for await (const batch of processInBatches(source, runner, cfg.batch_size)) {
      opts.signal?.throwIfAborted();
      const ppl = cfg.perplexity.enabled ? await Promise.all(batch.map((p) => (p.text !== undefined ? opts.perplexity!(p.text) : Promise.resolve(0)))) : undefined;
      let prior: Set<number> | undefined;
      const keysOf = batch.map((p) => (p.signature ? bandKeys(p.signature, lsh.bands, lsh.rows) : undefined));
      if (opts.priorIndex && cfg.dedup.near && cfg.dedup.prior) {
        const all: bigint[] = [];
        for (const k of keysOf) if (k) for (const v of k) all.push(BigInt(v));
        if (all.length > 0) prior = new Set([...(await opts.priorIndex.lookup(all))].map(Number));
      }
      let jsonOut = '';
      const tokOut: Buffer[] = [];
      for (let i = 0; i < batch.length; i++) {
        const p: Processed = batch[i]!;
        recordsIn++;
        bytesIn += p.bytes;
        for (const e of p.events) report.event(p.id, e);
        if (p.dropped) {
          report.pass(p.dropped);
          continue;
        }
        // `reason` is the counted category; `detail` the example's fuller reason.
        const drop = (stage: 'perplexity' | 'exact_dedup' | 'near_dedup', reason: string, detail: string) => {
          report.event(p.id, { stage, action: 'removed', reason, count: 1, before: p.snippet ?? '' }, detail);
          report.pass(stage);
        };
        if (ppl && ppl[i]! > cfg.perplexity.max_perplexity) {
          drop('perplexity', 'above_max_perplexity', `perplexity ${ppl[i]!.toFixed(1)} > ${cfg.perplexity.max_perplexity}`);
          continue;
        }
        if (p.exactKey !== undefined) {
          const first = seen.get(p.exactKey);
          if (first !== undefined) {
            drop('exact_dedup', 'exact_duplicate', `exact_duplicate of ${first}`);
            continue;
          }
          seen.set(p.exactKey, p.id);
        }
        const keys = keysOf[i];
        if (keys && p.signature) {
          let dupOf: string | undefined;
          for (const c of index.candidates(keys)) {
            const j = cfg.dedup.verify ? sketches.similarity(c, p.signature) : 1;
            if (j >= cfg.dedup.threshold) {
              dupOf = `near_duplicate of ${keptIds[c]} (est. Jaccard ${j.toFixed(2)})`;
              break;
            }
          }
          if (dupOf) {
            drop('near_dedup', 'near_duplicate', dupOf);
            continue;
          }
          if (prior) {
            let hits = 0;
            for (const k of keys) if (prior.has(k)) hits++;
            if (hits >= cfg.dedup.prior_min_band_hits) {
              drop('near_dedup', 'near_duplicate_prior', `near_duplicate of an earlier dataset version (${hits} of ${keys.length} bands)`);
              continue;
            }
          }
          const ord = keptIds.length;
          keptIds.push(p.id);
          index.insert(keys, ord);
          if (cfg.dedup.verify) sketches.set(ord, p.signature);
        }
        report.pass(undefined, 'near_dedup');
        splitKeys.push(p.splitKey!);
        strata.push(p.stratum!);
        jsonOut += `${p.json!}\n`;
        if (p.tokens) {
          const t = Buffer.allocUnsafe(8 + p.tokens.byteLength);
          t.writeUInt32LE(p.tokens.length, 0);
          t.writeUInt32LE(p.promptLen ?? 0, 4);
          t.set(new Uint8Array(p.tokens.buffer, p.tokens.byteOffset, p.tokens.byteLength), 8);
          tokOut.push(t);
        }
      }
      // One write per batch and file.
      if (jsonOut.length > 0) await put(keptJson, jsonOut);
      if (tokOut.length > 0) await put(keptTok, Buffer.concat(tokOut));
      checkStreams();
    }
    await endStream(keptJson);
    await endStream(keptTok);

    // Pass 2: route kept records to their split files and shards.
    const assign = assignSplits(Float64Array.from(splitKeys), strata, cfg.split);
    const outs = SPLITS.map((s) => {
      const path = join(opts.workDir, `${s}.jsonl`);
      splitTmp.push(`${path}.tmp`);
      const ws = writeStream(`${path}.tmp`);
      splitStreams.push(ws);
      return { split: s, path, ws, n: 0, tokens: 0 };
    });
    const shardDir = join(opts.workDir, 'shards');
    for (const s of SPLITS)
      writers.push(new SplitShardWriter(shardDir, s, tokenizer?.vocabSize ?? 0, { maxTokensPerShard: cfg.tokenise.max_tokens_per_shard }));
    const tokFh = needTokens ? await open(join(tmp, 'kept.tok'), 'r') : undefined;
    try {
      const tr = tokFh ? new TokenReader(tokFh) : undefined;
      const lines = createInterface({ input: createReadStream(join(tmp, 'kept.jsonl')), crlfDelay: Infinity });
      let k = 0;
      for await (const line of lines) {
        const si = assign[k++]!;
        const o = outs[si]!;
        await put(o.ws, `${line}\n`);
        o.n++;
        const st = report.stages;
        st.get('split')!.records_in++;
        st.get('split')!.records_out++;
        st.get('tokenise')!.records_in++;
        st.get('tokenise')!.records_out++;
        if (tr) {
          const { ids, promptLen } = await tr.next();
          o.tokens += ids.length;
          if (cfg.tokenise.enabled) await writers[si]!.add(ids, promptLen);
        }
      }
    } finally {
      await tokFh?.close();
    }
    const shards: ShardInfo[] = [];
    if (cfg.tokenise.enabled) for (const w of writers) shards.push(...(await w.finish()));
    checkStreams();
    for (const o of outs) {
      await endStream(o.ws);
      await rename(`${o.path}.tmp`, o.path);
    }

    const splits = Object.fromEntries(
      outs.map((o) => [
        o.split,
        { split: o.split, path: o.path, n_records: o.n, n_tokens: o.tokens, records: () => readJsonl(o.path) } satisfies SplitOutput,
      ]),
    ) as Record<SplitName, SplitOutput>;
    const cleaning: CleaningReport = {
      records_in: recordsIn,
      records_out: splitKeys.length,
      bytes_in: bytesIn,
      stages: report.list(),
      splits: Object.fromEntries(outs.map((o) => [o.split, { n_records: o.n, n_tokens: o.tokens }])) as CleaningReport['splits'],
      shards,
      lsh,
      workers: nWorkers,
      duration_ms: Math.round(performance.now() - t0),
    };
    return { splits, shards, report: cleaning, index };
  } catch (e) {
    for (const w of writers) await w.abort();
    keptJson.destroy();
    keptTok.destroy();
    for (const ws of splitStreams) ws.destroy();
    for (const p of splitTmp) await rm(p, { force: true });
    throw e;
  } finally {
    await releaseRunner(res, runner, pooled);
    await rm(tmp, { recursive: true, force: true });
  }
}

async function* readJsonl(path: string): AsyncIterable<CleanRecord> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) if (line.length > 0) yield JSON.parse(line) as CleanRecord;
}
