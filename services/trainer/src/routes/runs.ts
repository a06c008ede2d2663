/** Run routes: create, list, get (with attempts and checkpoints), cancel, live metrics (server-sent events). */
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateRunBody, MetricsQuery, RunList, RunListQuery, RunParams, RunView } from '@flywheel/contracts';
import { ProblemError } from '@flywheel/service';
import { trainerProblems } from '../errors.ts';
import type { RunsRepository } from '../repositories/runs.repository.ts';
import type { RunHub } from '../run/hub.ts';
import { resolveRunRequest, type RequestDeps } from '../run/requests.ts';
import { attemptView, metricView, runView } from './views.ts';

export interface RunRouteDeps extends RequestDeps {
  runs: RunsRepository;
  hub: RunHub;
  /** Looks at the queue (a run was created). */
  kick(): void;
  /** Publishes a finished run's stored final event. */
  announce(runId: string): Promise<void>;
  /** Signals the ranks of a run this process supervises. */
  cancelActive(runId: string): boolean;
  /** How often an SSE stream re-reads the run from Postgres (runs of another replica). */
  ssePollMs?: number;
}

const FINAL = new Set(['completed', 'failed', 'cancelled']);

export const runRoutes: FastifyPluginAsyncTypebox<RunRouteDeps> = async (app, deps) => {
  async function load(id: string) {
    const r = await deps.runs.get(id);
    if (!r) throw new ProblemError(trainerProblems.runNotFound, `run ${id} does not exist`);
    return r;
  }

  async function fullView(id: string) {
    const r = await load(id);
    const [attempts, ranks, cks] = await Promise.all([deps.runs.attempts(id), deps.runs.ranks(id), deps.runs.checkpoints(id)]);
    return {
      ...runView(r),
      attempts: attempts.map((a) => attemptView(a, ranks)),
      checkpoints: cks.map((c) => ({ step: c.step, attempt: c.attempt, reason: c.reason })),
    };
  }

  app.post('/v1/runs', { schema: { summary: 'Create a training run (queued until ranks are free)', body: CreateRunBody, response: { 201: RunView } } }, async (req, reply) => {
    const run = await resolveRunRequest(deps, randomUUID(), 'manual', req.body);
    const { run: row } = await deps.runs.insert(run);
    deps.kick();
    reply.code(201).header('location', `/v1/runs/${row.id}`);
    return runView(row);
  });

  app.get('/v1/runs', { schema: { summary: 'List runs, newest first', querystring: RunListQuery, response: { 200: RunList } } }, async (req) => {
    const rows = await deps.runs.list({ status: req.query.status, limit: req.query.limit ?? 100 });
    return { runs: rows.map(runView) };
  });

  app.get('/v1/runs/:id', { schema: { summary: 'A run with its attempts (restart history), ranks and checkpoints', params: RunParams, response: { 200: RunView } } }, async (req) =>
    fullView(req.params.id),
  );

  app.post('/v1/runs/:id/cancel', { schema: { summary: 'Cancel a run: its ranks checkpoint and stop', params: RunParams, response: { 202: RunView } } }, async (req, reply) => {
    const r = await load(req.params.id);
    if (FINAL.has(r.status)) throw new ProblemError(trainerProblems.runFinished, `run ${r.id} is already ${r.status}`);
    await deps.runs.requestCancel(r.id);
    if (r.status === 'queued') {
      const event = { runId: r.id, reason: 'cancelled on request', stage: 'cancelled', restarts: r.restarts, lastStep: r.last_step };
      if (await deps.runs.finish(r.id, 'cancelled', { reason: 'cancelled on request', event })) {
        deps.hub.emitStatus(r.id, { status: 'cancelled', attempt: r.attempt });
        await deps.announce(r.id);
      }
    } else deps.cancelActive(r.id);
    reply.code(202);
    return fullView(r.id);
  });

  app.get(
    '/v1/runs/:id/metrics',
    { schema: { summary: 'The metric series, then live points, as server-sent events (metric, status, end)', params: RunParams, querystring: MetricsQuery } },
    async (req, reply) => {
      const run = await load(req.params.id);
      const follow = req.query.follow ?? true;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      let closed = false;
      const send = (event: string, data: unknown) => {
        if (!closed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      const live: ReturnType<typeof metricView>[] = [];
      let backlogDone = false;
      const unsubscribe = deps.hub.subscribe(run.id, {
        metric: (m) => (backlogDone ? send('metric', metricView(m)) : live.push(metricView(m))),
        status: () => void check(),
      });
      let lastStatus = '';
      const finish = () => {
        if (closed) return;
        closed = true;
        clearInterval(timer);
        unsubscribe();
        res.end();
      };
      const check = async () => {
        if (closed) return;
        const r = await deps.runs.get(run.id);
        if (!r) return finish();
        const key = `${r.status}:${r.attempt}:${r.restarts}`;
        if (key !== lastStatus) {
          lastStatus = key;
          send('status', runView(r));
        }
        if ((FINAL.has(r.status) || !follow) && !closed) {
          send('end', { status: r.status, modelUri: r.model_uri, reason: r.reason });
          finish();
        }
      };
      req.raw.on('close', finish);
      let sent = -1;
      for (const m of await deps.runs.metrics(run.id, req.query.fromStep ?? 0)) {
        send('metric', metricView(m));
        sent = Math.max(sent, m.step);
      }
      backlogDone = true;
      for (const m of live) if (m.step > sent) send('metric', m);
      const timer = setInterval(() => {
        if (!closed) res.write(': keep-alive\n\n');
        void check();
      }, deps.ssePollMs ?? 2000);
      await check();
    },
  );
};
