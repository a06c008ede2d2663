/**
 * Runs one ingest job to completion: fetch the source, parse, clean, split,
 * tokenise, store every artifact, then — in one transaction — record the
 * version and mark the job done, and finally announce the version on the bus.
 *
 * Crash safety: nothing a reader can see exists until that transaction
 * commits. Artifacts are written atomically under the version's own prefix
 * (same bytes on a re-run), so a job killed anywhere before the commit is
 * simply run again when its message comes back, and one killed after the
 * commit only re-announces.
 */
import { stableUuid } from '@flywheel/contracts';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { trace } from '@opentelemetry/api';
import type { ArtifactStore } from '@flywheel/artifacts';
import type { Db } from '@flywheel/db';
import type { DatasetFailed, DatasetReady } from '@flywheel/contracts';
import { detectFormat, parseInput } from '../ingest/parse.ts';
import { INPUT_FORMATS, InputError, type InputFormat, type QuarantineEntry, type SourceRecord } from '../ingest/types.ts';
import {
  BYTE_LEVEL_TOKENIZER_PATH,
  createPipeline,
  isPipelineConfigError,
  isPipelineInputError,
  loadTokenizer,
  resolveConfig,
  type CleaningReport,
  type PipelineResult,
} from '../pipeline/index.ts';
import { createDatasetsRepository } from '../repositories/datasets.repository.ts';
import { createJobsRepository, type JobRow } from '../repositories/jobs.repository.ts';

/** Quarantine entries kept per job (the counts per reason are always complete). */
const MAX_QUARANTINE_ROWS = 10_000;
const PROGRESS_EVERY_MS = 1000;
/** Default: a running job whose owner has not beaten for this long is taken over. */
export const STALE_AFTER_MS = 30_000;

/** The job is being run by another live process: try again later. */
export class JobBusyError extends Error {
  override name = 'JobBusyError';
}

export interface IngestJobDeps {
  db: Db;
  artifacts: ArtifactStore;
  publishReady(data: DatasetReady, id: string): Promise<void>;
  publishFailed(data: DatasetFailed, id: string): Promise<void>;
  /** Scratch space; each attempt gets its own folder, removed afterwards. */
  workRoot: string;
  /** This process, written to the job row while it runs. */
  owner: string;
  /** Record-size limit for the parsers. */
  maxRecordBytes: number;
  /** A running job whose owner has not beaten for this long is taken over (default 30 s; beats at a sixth of it). */
  staleAfterMs?: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

export type IngestOutcome = { status: 'succeeded'; version: string } | { status: 'failed'; reason: string };

/** An error that no retry can fix: the job fails at once with this reason. */
class JobFailure extends Error {
  override name = 'JobFailure';
  readonly stage: string;
  constructor(stage: string, message: string) {
    super(message);
    this.stage = stage;
  }
}

/** Service-level options carried in a job's config beside the pipeline's own. */
interface JobOptions {
  tokenizer?: string;
  max_record_bytes?: number;
}

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** JSON with sorted keys, so equal configs hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export function createIngestJob(deps: IngestJobDeps) {
  const jobs = createJobsRepository(deps.db);
  const datasets = createDatasetsRepository(deps.db);

  const readyId = (datasetId: string, version: string) => stableUuid(`dataset-ready:${datasetId}:${version}`);
  const failedId = (jobId: string) => stableUuid(`dataset-failed:${jobId}`);

  async function announceReady(datasetName: string, version: string): Promise<void> {
    const v = await datasets.version(datasetName, version);
    if (!v) throw new Error(`version ${datasetName}@${version} is not stored`);
    const manifest = v.manifest as unknown as Manifest;
    await deps.publishReady(
      {
        datasetId: v.dataset_id,
        datasetName,
        version,
        manifestUri: v.manifest_uri,
        splits: manifest.splits.map((s) => ({ name: s.name, records: s.records, tokens: s.tokens, shards: s.shards.length })),
        tokenizer: manifest.tokenizer.sha256,
        contentSha256: v.content_sha256,
      },
      readyId(v.dataset_id, version),
    );
  }

  async function fail(job: JobRow, stage: string, reason: string): Promise<IngestOutcome> {
    await jobs.fail(job.id, reason, stage);
    await deps.publishFailed({ jobId: job.id, datasetName: job.dataset_name, reason, stage }, failedId(job.id));
    deps.log.warn({ jobId: job.id, stage, reason }, 'ingest job failed');
    return { status: 'failed', reason };
  }

  /**
   * Runs (or resumes, or re-announces) the job. Throws only for errors worth
   * a retry (infrastructure); input problems end as a failed job.
   * `finalAttempt`: this is the last try, so an infrastructure error fails the job too.
   */
  async function run(jobId: string, finalAttempt = false): Promise<IngestOutcome> {
    const staleMs = deps.staleAfterMs ?? STALE_AFTER_MS;
    const { job, claimed } = await jobs.claim(jobId, deps.owner, staleMs, trace.getActiveSpan()?.spanContext().traceId ?? null);
    if (!job) throw new JobFailure('claim', `job ${jobId} does not exist`);
    if (job.status === 'succeeded' && job.version) {
      await announceReady(job.dataset_name, job.version);
      return { status: 'succeeded', version: job.version };
    }
    if (job.status === 'failed') {
      const reason = job.error ?? 'failed';
      await deps.publishFailed({ jobId: job.id, datasetName: job.dataset_name, reason, stage: job.error_stage ?? 'unknown' }, failedId(job.id));
      return { status: 'failed', reason };
    }
    if (!claimed) throw new JobBusyError(`job ${job.id} is running on ${job.owner ?? 'another process'}`);
    const workDir = join(deps.workRoot, `${job.id}-${job.attempts}`);
    const beat = setInterval(() => void jobs.heartbeat(job.id, deps.owner).catch(() => undefined), staleMs / 6);
    try {
      return await execute(job, workDir);
    } catch (e) {
      if (e instanceof JobFailure) return fail(job, e.stage, e.message);
      if (e instanceof InputError) return fail(job, 'parse', e.message);
      if (isPipelineInputError(e)) return fail(job, 'clean', (e as Error).message);
      if (finalAttempt) await fail(job, 'internal', `gave up after ${job.attempts} attempts: ${(e as Error).message}`);
      throw e;
    } finally {
      clearInterval(beat);
      await rm(workDir, { recursive: true, force: true });
    }
  }

  async function execute(job: JobRow, workDir: string): Promise<IngestOutcome> {
    await mkdir(workDir, { recursive: true });
    const { tokenizer: tokenizerRef, max_record_bytes, ...pipelineInput } = job.config as JobOptions & Record<string, unknown>;
    let config;
    try {
      config = resolveConfig(pipelineInput);
    } catch (e) {
      if (isPipelineConfigError(e)) throw new JobFailure('config', (e as Error).message);
      throw e;
    }

    // 1. A private copy of the source: hashed while copied, random access for Parquet.
    const progress: Record<string, unknown> = { stage: 'fetch', bytesRead: 0, recordsRead: 0, quarantined: 0 };
    const sourcePath = join(workDir, 'source');
    const { sha: contentSha, size } = await copyHashed(deps.artifacts, job.source_uri, sourcePath);
    if (size === 0) throw new JobFailure('parse', 'the input is empty');

    const tokenizerPath = await fetchTokenizer(tokenizerRef, workDir);
    const tokenizerSha = sha256(await readFile(tokenizerPath));
    const vocabSize = await loadTokenizer({ path: tokenizerPath }).then(
      (t) => t.vocabSize,
      (e: Error) => {
        throw new JobFailure('tokenizer', `tokenizer.json is not usable: ${e.message}`);
      },
    );
    const configSha = sha256(canonicalJson({ config, tokenizer: tokenizerSha }));
    const version = sha256(`${contentSha}:${configSha}`).slice(0, 16);

    // Same bytes, same config: the version exists already, nothing to redo.
    const existing = await datasets.version(job.dataset_name, version);
    if (existing) {
      await jobs.succeed(job.id, version, { ...progress, stage: 'done', reused: true });
      await announceReady(job.dataset_name, version);
      return { status: 'succeeded', version };
    }

    // 2. Parse and clean, streaming; quarantine and progress on the side.
    const head = Buffer.alloc(512);
    const fh = await open(sourcePath);
    await fh.read(head, 0, 512, 0).finally(() => fh.close());
    const format: InputFormat =
      job.format === 'auto' ? detectFormat(job.source_uri, head) : (INPUT_FORMATS as readonly string[]).includes(job.format) ? (job.format as InputFormat) : (() => { throw new JobFailure('parse', `unknown format "${job.format}"`); })();
    const quarantine: QuarantineEntry[] = [];
    const quarantineByReason: Record<string, number> = {};
    let lastProgress = Date.now();
    const parsed = parseInput(
      format,
      {
        stream: () => countingStream(sourcePath, (n) => (progress['bytesRead'] = n)),
        random: () => randomAccess(sourcePath, size),
      },
      { maxRecordBytes: max_record_bytes ?? deps.maxRecordBytes, utf8: config.normalise.utf8, textField: 'text', textSplit: 'paragraph' },
    );
    async function* records(): AsyncGenerator<SourceRecord> {
      progress['stage'] = 'clean';
      for await (const item of parsed) {
        if (item.kind === 'quarantine') {
          const key = item.entry.reason.replace(/\d+/g, 'N').slice(0, 80);
          quarantineByReason[key] = (quarantineByReason[key] ?? 0) + 1;
          if (quarantine.length < MAX_QUARANTINE_ROWS) quarantine.push(item.entry);
          progress['quarantined'] = (progress['quarantined'] as number) + 1;
          continue;
        }
        progress['recordsRead'] = (progress['recordsRead'] as number) + 1;
        if (Date.now() - lastProgress > PROGRESS_EVERY_MS) {
          lastProgress = Date.now();
          await jobs.progress(job.id, progress);
        }
        yield item.record;
      }
    }

    const dataset = await datasets.getDataset(job.dataset_name);
    const pipeline = createPipeline(config, {
      tokenizer: { path: tokenizerPath },
      workDir: join(workDir, 'out'),
      priorIndex: dataset ? { lookup: (keys) => datasets.lookupBands(keys, dataset.id, contentSha) } : undefined,
    });
    let result: PipelineResult;
    try {
      result = await pipeline.run(records());
    } finally {
      await jobs.progress(job.id, progress);
    }
    if ((progress['recordsRead'] as number) === 0)
      throw new JobFailure('parse', `no record could be read (${quarantine.length} quarantined${quarantine[0] ? `, first: ${quarantine[0].reason}` : ''})`);
    if (result.report.records_out === 0) throw new JobFailure('clean', `no record survived cleaning: ${describeLosses(result.report)}`);

    // 3. Store every artifact under the version's prefix, then the manifest.
    progress['stage'] = 'store';
    await jobs.progress(job.id, progress);
    const prefix = `datasets/${job.dataset_name}/${version}`;
    const manifest = await storeVersion(prefix, result, {
      datasetName: job.dataset_name,
      version,
      contentSha,
      size,
      format,
      sourceUri: job.source_uri,
      config,
      tokenizerPath,
      tokenizerSha,
      vocabSize,
      quarantineByReason,
    });
    const manifestPut = await deps.artifacts.put(`${prefix}/manifest.json`, Buffer.from(JSON.stringify(manifest, null, 2)), {
      overwrite: true,
      contentType: 'application/json',
    });

    // 4. One transaction makes the version visible.
    const bands = [...result.index.bands()];
    await deps.db.tx(async (tx) => {
      const txDatasets = createDatasetsRepository(tx);
      const txJobs = createJobsRepository(tx);
      const datasetId = await txDatasets.ensureDataset(randomUUID(), job.dataset_name);
      const inserted = await txDatasets.insertVersion({
        id: randomUUID(),
        dataset_id: datasetId,
        version,
        content_sha256: contentSha,
        config_sha256: configSha,
        job_id: job.id,
        manifest_uri: manifestPut.uri,
        manifest: manifest as unknown as Record<string, unknown>,
        report: result.report as unknown as Record<string, unknown>,
      });
      if (inserted.created) await txDatasets.insertBands(inserted.id, datasetId, bands);
      await txJobs.replaceQuarantine(job.id, quarantine);
      await txJobs.succeed(job.id, version, { ...progress, stage: 'done' });
    });
    deps.log.info({ jobId: job.id, dataset: job.dataset_name, version, records: result.report.records_out }, 'dataset version ready');
    await announceReady(job.dataset_name, version);
    return { status: 'succeeded', version };
  }

  async function storeVersion(prefix: string, result: PipelineResult, m: ManifestInput): Promise<Manifest> {
    const put = (key: string, path: string, contentType: string) =>
      deps.artifacts.put(`${prefix}/${key}`, createReadStream(path), { overwrite: true, contentType });
    const splits: Manifest['splits'] = [];
    for (const split of Object.values(result.splits)) {
      const records = await put(`${split.split}.jsonl`, split.path, 'application/x-ndjson');
      const shards = [];
      for (const s of result.shards.filter((x) => x.split === split.split)) {
        const file = s.path.split('/').pop()!;
        const stored = await put(`shards/${file}`, s.path, 'application/octet-stream');
        if (stored.sha256 !== s.sha256) throw new Error(`shard ${file} changed while being stored`);
        shards.push({ file, uri: stored.uri, sha256: s.sha256, n_tokens: s.n_tokens, n_docs: s.n_docs, bytes: stored.size });
      }
      splits.push({
        name: split.split,
        records: split.n_records,
        tokens: split.n_tokens,
        records_uri: records.uri,
        records_sha256: records.sha256,
        shards,
      });
    }
    const tokenizer = await put('tokenizer.json', m.tokenizerPath, 'application/json');
    const report = await deps.artifacts.put(`${prefix}/report.json`, Buffer.from(JSON.stringify(result.report, null, 2)), {
      overwrite: true,
      contentType: 'application/json',
    });
    return {
      format_version: 1,
      dataset: m.datasetName,
      version: m.version,
      source: { uri: m.sourceUri, sha256: m.contentSha, bytes: m.size, format: m.format },
      config: m.config as unknown as Record<string, unknown>,
      tokenizer: { uri: tokenizer.uri, sha256: m.tokenizerSha, vocab_size: m.vocabSize },
      counts: {
        records_in: result.report.records_in,
        records_out: result.report.records_out,
        quarantined: Object.values(m.quarantineByReason).reduce((a, b) => a + b, 0),
        tokens: splits.reduce((a, s) => a + s.tokens, 0),
      },
      quarantine_by_reason: m.quarantineByReason,
      report_uri: report.uri,
      splits,
    };
  }

  async function fetchTokenizer(ref: string | undefined, workDir: string): Promise<string> {
    if (!ref || ref === 'byte-level') return BYTE_LEVEL_TOKENIZER_PATH;
    const path = join(workDir, 'tokenizer.json');
    try {
      await streamPipeline(await deps.artifacts.get(ref), createWriteStream(path));
    } catch (e) {
      throw new JobFailure('tokenizer', `tokenizer ${ref} could not be read: ${(e as Error).message}`);
    }
    return path;
  }

  return { run };
}
export type IngestJob = ReturnType<typeof createIngestJob>;

interface ManifestInput {
  datasetName: string;
  version: string;
  contentSha: string;
  size: number;
  format: string;
  sourceUri: string;
  config: unknown;
  tokenizerPath: string;
  tokenizerSha: string;
  vocabSize: number;
  quarantineByReason: Record<string, number>;
}

/** `manifest.json` of a dataset version (docs/data-service.md). */
export interface Manifest {
  format_version: 1;
  dataset: string;
  version: string;
  source: { uri: string; sha256: string; bytes: number; format: string };
  config: Record<string, unknown>;
  tokenizer: { uri: string; sha256: string; vocab_size: number };
  counts: { records_in: number; records_out: number; quarantined: number; tokens: number };
  quarantine_by_reason: Record<string, number>;
  report_uri: string;
  splits: {
    name: string;
    records: number;
    tokens: number;
    records_uri: string;
    records_sha256: string;
    shards: { file: string; uri: string; sha256: string; n_tokens: number; n_docs: number; bytes: number }[];
  }[];
}

function describeLosses(report: CleaningReport): string {
  return report.stages
    .filter((s) => s.records_in > s.records_out)
    .map((s) => `${s.stage} removed ${s.records_in - s.records_out}`)
    .join(', ');
}

async function copyHashed(store: ArtifactStore, uri: string, dest: string): Promise<{ sha: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  await streamPipeline(await store.get(uri), tap, createWriteStream(dest));
  return { sha: hash.digest('hex'), size };
}

async function* countingStream(path: string, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    n += (chunk as Buffer).length;
    onBytes(n);
    yield chunk as Buffer;
  }
}

async function randomAccess(path: string, size: number) {
  const fh = await open(path);
  return {
    byteLength: size,
    async read(start: number, end: number): Promise<ArrayBuffer> {
      const buf = Buffer.alloc(end - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer;
    },
  };
}
