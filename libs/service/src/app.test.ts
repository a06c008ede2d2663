import { context, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { startTelemetry } from '@flywheel/telemetry';
import type { Telemetry } from '@flywheel/telemetry';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp, defineProblem, exampleUrl, listRoutes, ProblemError, problems, Type } from './index.ts';
import type { App, ReadinessCheck } from './index.ts';

const TOKEN = 'test-token-0123456789abcdef';
const datasetNotFound = defineProblem('dataset-not-found', 'Dataset not found', 404);
const auth = { authorization: `Bearer ${TOKEN}` };

async function makeApp(readiness: ReadinessCheck[] = []): Promise<App> {
  const app = await createApp({ name: 'svc-test', version: '1.2.3', auth: { tokens: [TOKEN] }, readiness, bodyLimit: 1024 });
  app.post(
    '/v1/items',
    { schema: { body: Type.Object({ name: Type.String({ minLength: 1 }), n: Type.Integer() }, { additionalProperties: false }) } },
    async (req) => ({ created: req.body.name }),
  );
  app.get('/v1/items/:id', async (req, reply) => {
    const { id } = req.params as { id: string };
    if (id === 'boom') throw new Error('secret internal detail');
    if (id === 'missing') throw new ProblemError(datasetNotFound, `dataset ${id} does not exist`, { extensions: { id } });
    return reply.send({ id });
  });
  return app;
}

describe('service app', () => {
  let app: App;
  afterEach(() => app?.close());

  it('service app - probes answer without a token, every other route needs one', async () => {
    app = await makeApp();
    expect((await app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(200);
    const res = await app.inject({ url: '/v1/items/1' });
    expect(res.statusCode).toBe(401);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(res.json()).toEqual({ ...problems.unauthorized, detail: 'missing bearer token', instance: '/v1/items/1' });
    expect((await app.inject({ url: '/v1/items/1', headers: auth })).json()).toEqual({ id: '1' });
  });

  it('service app - every registered route refuses a missing, wrong or malformed token', async () => {
    app = await makeApp();
    await app.ready();
    const routes = listRoutes(app);
    expect(routes.map((r) => `${r.method} ${r.url}`)).toEqual(
      expect.arrayContaining(['GET /metrics', 'GET /openapi.json', 'GET /healthz', 'GET /readyz', 'POST /v1/items', 'GET /v1/items/:id', 'HEAD /v1/items/:id']),
    );
    expect(routes.filter((r) => r.public).map((r) => r.url).sort()).toEqual(['/healthz', '/healthz', '/metrics', '/metrics', '/readyz', '/readyz']);
    const badHeaders = [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }, { authorization: `Bearer ${TOKEN}x` }];
    for (const route of routes.filter((r) => !r.public)) {
      for (const headers of badHeaders) {
        const res = await app.inject({ method: route.method as 'GET', url: exampleUrl(route.url), headers });
        expect(res.statusCode, `${route.method} ${route.url} ${JSON.stringify(headers)}`).toBe(401);
      }
    }
  });

  it('service app - unknown routes answer 401 without a token and 404 problem with one', async () => {
    app = await makeApp();
    expect((await app.inject({ url: '/nope' })).statusCode).toBe(401);
    const res = await app.inject({ url: '/nope?token=x', headers: auth });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ ...problems.routeNotFound, detail: 'no route for GET /nope', instance: '/nope' });
  });

  it('service app - validation, body size, media type and JSON errors are problem documents', async () => {
    app = await makeApp();
    const post = (payload: string, type = 'application/json') =>
      app.inject({ method: 'POST', url: '/v1/items', headers: { ...auth, 'content-type': type }, payload });
    const invalid = await post(JSON.stringify({ name: '', n: 'x' }));
    expect(invalid.statusCode).toBe(400);
    expect(invalid.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = invalid.json();
    expect(body.type).toBe(problems.validationFailed.type);
    expect(body.errors[0]).toMatchObject({ in: 'body', path: '/name' });
    expect((await post('x'.repeat(2048))).json().type).toBe(problems.payloadTooLarge.type);
    expect((await post('x'.repeat(2048))).statusCode).toBe(413);
    const media = await post('name=a', 'application/x-www-form-urlencoded');
    expect([media.statusCode, media.json().type]).toEqual([415, problems.unsupportedMediaType.type]);
    const malformed = await post('{"name":');
    expect([malformed.statusCode, malformed.json().type]).toEqual([400, problems.malformedBody.type]);
    const extra = await post(JSON.stringify({ name: 'a', n: 1, admin: true }));
    expect([extra.statusCode, extra.json().errors[0].keyword]).toEqual([400, 'additionalProperties']);
    expect((await post(JSON.stringify({ name: 'a', n: 1 }))).json()).toEqual({ created: 'a' });
  });

  it('service app - unexpected errors are 500 problems without internal details', async () => {
    app = await makeApp();
    const res = await app.inject({ url: '/v1/items/boom', headers: auth });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('secret internal detail');
    expect(res.json()).toMatchObject({ ...problems.internal, instance: '/v1/items/boom' });
    expect(res.json().request_id).toEqual(expect.any(String));
  });

  it('service app - typed domain errors render with their own type and status', async () => {
    app = await makeApp();
    const res = await app.inject({ url: '/v1/items/missing', headers: auth });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({
      type: 'urn:flywheel:problem:dataset-not-found',
      title: 'Dataset not found',
      status: 404,
      detail: 'dataset missing does not exist',
      instance: '/v1/items/missing',
      id: 'missing',
    });
  });

  it('service app - readyz names the failing check and answers 503', async () => {
    app = await makeApp([
      { name: 'postgres', check: async () => undefined },
      { name: 'nats', check: async () => Promise.reject(new Error('connection refused to 10.0.0.7')) },
      { name: 'artifacts', check: () => new Promise(() => undefined), timeoutMs: 50 },
    ]);
    const res = await app.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    const body = res.json();
    expect(body).toMatchObject({ type: problems.notReady.type, status: 503, failing: ['nats', 'artifacts'] });
    expect(body.detail).toBe('readiness check failed: nats, artifacts');
    expect(res.body).not.toContain('10.0.0.7');
  });

  it('service app - serves its OpenAPI document with the bearer scheme', async () => {
    app = await makeApp();
    expect((await app.inject({ url: '/openapi.json' })).statusCode).toBe(401);
    const doc = (await app.inject({ url: '/openapi.json', headers: auth })).json();
    expect(doc.info).toEqual({ title: 'svc-test', version: '1.2.3' });
    expect(doc.components.securitySchemes.bearerAuth).toEqual({ type: 'http', scheme: 'bearer' });
    expect(Object.keys(doc.paths).sort()).toEqual(['/v1/items', '/v1/items/{id}']);
    expect(doc.paths['/v1/items'].post.requestBody.content['application/json'].schema.required).toEqual(['name', 'n']);
  });

  it('service app - refuses to start without tokens or with short ones', async () => {
    await expect(createApp({ name: 'x', version: '1', auth: { tokens: [] } })).rejects.toThrow(/at least one/);
    await expect(createApp({ name: 'x', version: '1', auth: { tokens: ['short'] } })).rejects.toThrow(/shorter than 16/);
    await expect(createApp({ name: 'x', version: '1', auth: { tokens: ['has a space in it, 16+'] } })).rejects.toThrow(/characters outside/);
  });

  it('service app - /metrics can be made to require the token', async () => {
    app = await createApp({ name: 'm', version: '1', auth: { tokens: [TOKEN], publicMetrics: false } });
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
    const res = await app.inject({ url: '/metrics', headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
  });
});

describe('service tracing', () => {
  const exporter = new InMemorySpanExporter();
  let tel: Telemetry;
  let app: App;
  beforeAll(() => {
    tel = startTelemetry({ serviceName: 'svc-trace-test', env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  });
  afterAll(async () => {
    await app?.close();
    await tel.shutdown();
  });

  it('service tracing - the span active in a handler continues the incoming traceparent', async () => {
    app = await makeApp();
    let seen: { traceId: string; spanId: string } | undefined;
    app.post('/v1/trace', async () => {
      await new Promise((r) => setTimeout(r, 5));
      seen = trace.getSpan(context.active())?.spanContext();
      return { ok: true };
    });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res = await app.inject({
      method: 'POST',
      url: '/v1/trace',
      headers: { ...auth, traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'content-type': 'application/json' },
      payload: JSON.stringify({ big: 'x'.repeat(500) }),
    });
    expect(res.statusCode).toBe(200);
    expect(seen?.traceId).toBe(traceId);
    const span = exporter.getFinishedSpans().find((s) => s.name === 'POST /v1/trace');
    expect(span?.spanContext().spanId).toBe(seen?.spanId);
    expect(span?.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(span?.attributes['http.response.status_code']).toBe(200);
    const metrics = (await app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/http_server_request_duration_seconds_count\{service="svc-test",method="POST",route="\/v1\/trace",status_code="200"\} 1/);
  });
});
