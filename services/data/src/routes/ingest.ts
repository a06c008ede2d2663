/**
 * Ingest routes: streaming uploads into the artifact store, and ingest
 * requests for stored bytes. A request becomes a job row plus a
 * `fw.data.ingest.requested` event; a replica's consumer runs it.
 */
import { randomUUID } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { IngestAccepted, IngestBody, DatasetNameParams, UploadQuery, UploadResult, type IngestFormat } from '@flywheel/contracts';
import type { ArtifactStore } from '@flywheel/artifacts';
import { isArtifactKeyError } from '@flywheel/artifacts';
import { ProblemError, problems } from '@flywheel/service';
import { isPipelineConfigError, resolveConfig } from '../pipeline/index.ts';
import type { JobsRepository } from '../repositories/jobs.repository.ts';
import { dataProblems } from '../errors.ts';
import { jobView } from './views.ts';

export interface IngestRouteDeps {
  artifacts: ArtifactStore;
  jobs: JobsRepository;
  /** Publishes `fw.data.ingest.requested` for a job. */
  enqueue(job: { id: string; datasetName: string; sourceUri: string; format: IngestFormat; config: Record<string, unknown> }): Promise<void>;
  maxUploadBytes: number;
}

/** Fails the stream with a 413 once more than `limit` bytes went through. */
function limitBytes(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > limit) cb(new ProblemError(problems.payloadTooLarge, `uploads are limited to ${limit} bytes`));
      else cb(null, chunk);
    },
  });
}

export const ingestRoutes: FastifyPluginAsyncTypebox<IngestRouteDeps> = async (app, deps) => {
  async function store(body: unknown, contentLength: string | undefined) {
    if (contentLength !== undefined && Number(contentLength) > deps.maxUploadBytes)
      throw new ProblemError(problems.payloadTooLarge, `uploads are limited to ${deps.maxUploadBytes} bytes`);
    if (!body || typeof (body as Readable).pipe !== 'function') throw new ProblemError(dataProblems.emptyUpload, 'send the data as the request body');
    const limited = (body as Readable).pipe(limitBytes(deps.maxUploadBytes));
    (body as Readable).on('error', (e) => limited.destroy(e));
    const put = await deps.artifacts.putContentAddressed(limited);
    if (put.size === 0) throw new ProblemError(dataProblems.emptyUpload, 'the request body is empty');
    return put;
  }

  function checkConfig(config: Record<string, unknown> | undefined): Record<string, unknown> {
    const { tokenizer: _t, max_record_bytes: _m, ...pipeline } = config ?? {};
    try {
      resolveConfig(pipeline);
    } catch (e) {
      if (isPipelineConfigError(e)) throw new ProblemError(dataProblems.invalidPipelineConfig, (e as Error).message);
      throw e;
    }
    return config ?? {};
  }

  async function ingest(datasetName: string, sourceUri: string, format: IngestFormat, config: Record<string, unknown>) {
    const active = await deps.jobs.findActive(datasetName, sourceUri, config);
    if (active) {
      // Join it, and ask again for it to run: the request has a stable event id,
      // and a claim by a live owner is refused, so this never runs it twice.
      await deps.enqueue({ id: active.id, datasetName, sourceUri, format: active.format as IngestFormat, config });
      return { job: jobView(active), existing: true };
    }
    const { job } = await deps.jobs.insert({ id: randomUUID(), datasetName, sourceUri, format, config });
    try {
      await deps.enqueue({ id: job.id, datasetName, sourceUri, format, config });
    } catch (e) {
      await deps.jobs.fail(job.id, `could not be queued: ${(e as Error).message}`, 'enqueue');
      throw new ProblemError(dataProblems.enqueueFailed, (e as Error).message, { cause: e });
    }
    return { job: jobView(job), existing: false };
  }

  // Uploads are streamed as they arrive: in this scope every body is handed
  // over raw, whatever its content type.
  await app.register(async (scope) => {
    const uploads = scope.withTypeProvider<TypeBoxTypeProvider>();
    uploads.removeAllContentTypeParsers();
    uploads.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

    uploads.post(
      '/v1/uploads',
      { schema: { summary: 'Store raw bytes (streamed) in the artifact store', response: { 201: UploadResult } } },
      async (req, reply) => {
        const put = await store(req.body, req.headers['content-length']);
        return reply.code(201).send({ uri: put.uri, sha256: put.sha256, size: put.size, created: put.created });
      },
    );

    uploads.post(
      '/v1/datasets/:name/uploads',
      {
        schema: {
          summary: 'Upload data (streamed) and ingest it as a new version of the dataset',
          params: DatasetNameParams,
          querystring: UploadQuery,
          response: { 202: IngestAccepted },
        },
      },
      async (req, reply) => {
        let config: Record<string, unknown> | undefined;
        if (req.query.config !== undefined) {
          try {
            config = JSON.parse(req.query.config) as Record<string, unknown>;
          } catch (e) {
            throw new ProblemError(dataProblems.invalidPipelineConfig, `config is not JSON: ${(e as Error).message}`);
          }
          if (typeof config !== 'object' || config === null || Array.isArray(config))
            throw new ProblemError(dataProblems.invalidPipelineConfig, 'config must be a JSON object');
        }
        const checked = checkConfig(config); // before the bytes are stored
        const put = await store(req.body, req.headers['content-length']);
        const format = req.query.format && req.query.format !== 'auto' ? req.query.format : guessFromName(req.query.filename);
        return reply.code(202).send(await ingest(req.params.name, put.uri, format, checked));
      },
    );
  });

  app.post(
    '/v1/datasets/:name/ingest',
    {
      schema: {
        summary: 'Ingest data already in the artifact store as a new version of the dataset',
        params: DatasetNameParams,
        body: IngestBody,
        response: { 202: IngestAccepted },
      },
    },
    async (req, reply) => {
      let uri: string;
      try {
        uri = deps.artifacts.uriFor(req.body.source.uri);
      } catch (e) {
        if (isArtifactKeyError(e)) throw new ProblemError(dataProblems.invalidSourceUri, (e as Error).message);
        throw e;
      }
      let exists: boolean;
      try {
        exists = await deps.artifacts.exists(uri);
      } catch (e) {
        if (isArtifactKeyError(e)) throw new ProblemError(dataProblems.invalidSourceUri, (e as Error).message);
        throw e;
      }
      if (!exists) throw new ProblemError(dataProblems.sourceNotFound, uri);
      const config = checkConfig(req.body.config);
      return reply.code(202).send(await ingest(req.params.name, uri, req.body.format ?? 'auto', config));
    },
  );
};

/** A content-addressed upload has no name: an explicit filename's extension picks the format. */
function guessFromName(filename: string | undefined): IngestFormat {
  const f = (filename ?? '').toLowerCase();
  if (f.endsWith('.jsonl') || f.endsWith('.ndjson')) return 'jsonl';
  if (f.endsWith('.csv')) return 'csv';
  if (f.endsWith('.parquet')) return 'parquet';
  if (f.endsWith('.txt') || f.endsWith('.md')) return 'text';
  return 'auto';
}
