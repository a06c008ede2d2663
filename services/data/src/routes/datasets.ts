/** Read routes: datasets, versions, manifests, reports, split records and shards, jobs. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import {
  DatasetList,
  DatasetNameParams,
  JobList,
  JobParams,
  JobView,
  Paging,
  QuarantineList,
  ShardParams,
  SplitParams,
  VersionList,
  VersionParams,
  VersionView,
} from '@flywheel/contracts';
import type { ArtifactStore } from '@flywheel/artifacts';
import { ProblemError } from '@flywheel/service';
import type { DatasetsRepository } from '../repositories/datasets.repository.ts';
import type { JobsRepository } from '../repositories/jobs.repository.ts';
import type { Manifest } from '../jobs/ingest-job.ts';
import { dataProblems } from '../errors.ts';
import { jobView, versionView } from './views.ts';

export interface DatasetRouteDeps {
  artifacts: ArtifactStore;
  datasets: DatasetsRepository;
  jobs: JobsRepository;
}

const AnyObject = Type.Object({}, { additionalProperties: true });

export const datasetRoutes: FastifyPluginAsyncTypebox<DatasetRouteDeps> = async (app, deps) => {
  async function findVersion(name: string, version: string) {
    const v = await deps.datasets.version(name, version);
    if (v) return v;
    if (!(await deps.datasets.getDataset(name))) throw new ProblemError(dataProblems.datasetNotFound, name);
    throw new ProblemError(dataProblems.versionNotFound, `${name}@${version}`);
  }

  app.get('/v1/datasets', { schema: { summary: 'List datasets', querystring: Paging, response: { 200: DatasetList } } }, async (req) => {
    const rows = await deps.datasets.list(req.query.limit ?? 100, req.query.offset ?? 0);
    return {
      items: rows.map((d) => ({
        id: d.id,
        name: d.name,
        createdAt: d.created_at.toISOString(),
        versions: d.versions,
        latestVersion: d.latest_version,
      })),
    };
  });

  app.get(
    '/v1/datasets/:name/versions',
    { schema: { summary: "List a dataset's versions, newest first", params: DatasetNameParams, response: { 200: VersionList } } },
    async (req) => {
      if (!(await deps.datasets.getDataset(req.params.name))) throw new ProblemError(dataProblems.datasetNotFound, req.params.name);
      return { items: (await deps.datasets.versions(req.params.name)).map(versionView) };
    },
  );

  app.get(
    '/v1/datasets/:name/versions/:version',
    { schema: { summary: 'A version (`latest` for the newest)', params: VersionParams, response: { 200: VersionView } } },
    async (req) => versionView(await findVersion(req.params.name, req.params.version)),
  );

  app.get(
    '/v1/datasets/:name/versions/:version/manifest',
    { schema: { summary: "A version's manifest: counts, tokens, hashes, config", params: VersionParams, response: { 200: AnyObject } } },
    async (req) => (await findVersion(req.params.name, req.params.version)).manifest,
  );

  app.get(
    '/v1/datasets/:name/versions/:version/report',
    { schema: { summary: "A version's cleaning report, per stage", params: VersionParams, response: { 200: AnyObject } } },
    async (req) => (await findVersion(req.params.name, req.params.version)).report,
  );

  app.get(
    '/v1/datasets/:name/versions/:version/splits/:split',
    { schema: { summary: 'Stream the cleaned records of a split as JSONL', params: SplitParams } },
    async (req, reply) => {
      const v = await findVersion(req.params.name, req.params.version);
      const split = (v.manifest as unknown as Manifest).splits.find((s) => s.name === req.params.split);
      if (!split) throw new ProblemError(dataProblems.versionNotFound, `${req.params.name}@${v.version} has no split ${req.params.split}`);
      return reply.type('application/x-ndjson').header('x-records', String(split.records)).send(await deps.artifacts.get(split.records_uri));
    },
  );

  app.get(
    '/v1/datasets/:name/versions/:version/shards/:file',
    { schema: { summary: 'Stream one token shard (docs/formats.md)', params: ShardParams } },
    async (req, reply) => {
      const v = await findVersion(req.params.name, req.params.version);
      const shard = (v.manifest as unknown as Manifest).splits.flatMap((s) => s.shards).find((s) => s.file === req.params.file);
      if (!shard) throw new ProblemError(dataProblems.versionNotFound, `${req.params.name}@${v.version} has no shard ${req.params.file}`);
      return reply
        .type('application/octet-stream')
        .header('content-length', String(shard.bytes))
        .header('x-sha256', shard.sha256)
        .send(await deps.artifacts.get(shard.uri));
    },
  );

  app.get(
    '/v1/jobs',
    {
      schema: {
        summary: 'List ingest jobs, newest first',
        querystring: Type.Object({ dataset: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
        response: { 200: JobList },
      },
    },
    async (req) => ({ items: (await deps.jobs.list({ datasetName: req.query.dataset, limit: req.query.limit ?? 100 })).map(jobView) }),
  );

  app.get('/v1/jobs/:id', { schema: { summary: 'An ingest job: status and progress', params: JobParams, response: { 200: JobView } } }, async (req) => {
    const job = await deps.jobs.get(req.params.id);
    if (!job) throw new ProblemError(dataProblems.jobNotFound, req.params.id);
    return jobView(job);
  });

  app.get(
    '/v1/jobs/:id/quarantine',
    {
      schema: {
        summary: 'Input a job could not read, with the reason',
        params: JobParams,
        querystring: Type.Object({ after: Type.Optional(Type.Integer({ minimum: 0 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
        response: { 200: QuarantineList },
      },
    },
    async (req) => {
      if (!(await deps.jobs.get(req.params.id))) throw new ProblemError(dataProblems.jobNotFound, req.params.id);
      return { items: await deps.jobs.quarantine(req.params.id, req.query.limit ?? 100, req.query.after ?? 0) };
    },
  );
};
