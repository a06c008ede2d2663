/**
 * HTTP server spans and request metrics.
 *
 * Each request gets a SERVER span whose parent is the trace context in the
 * incoming `traceparent`/`tracestate` headers (W3C propagator registered by
 * @flywheel/telemetry). The span is made active twice: around the hook
 * chain (onRequest) and around the route handler itself (wrapped in
 * onRoute), because body parsing resumes on socket callbacks that do not
 * carry the AsyncLocalStorage context. Inside a handler,
 * `trace.getActiveSpan()` is the request's span, so a NATS publish made there
 * injects the same trace id.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Context, Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { histogram } from '@flywheel/telemetry';
import type { Registry } from '@flywheel/telemetry';

export interface ObservabilityOptions {
  registry: Registry;
  serviceName: string;
}

interface RequestTrace {
  span: Span;
  ctx: Context;
  start: bigint;
}

const traces = new WeakMap<FastifyRequest, RequestTrace>();

/** The OpenTelemetry context of a request (its server span active), for work started outside the handler. */
export function requestContext(request: FastifyRequest): Context {
  return traces.get(request)?.ctx ?? context.active();
}

const routeLabel = (request: FastifyRequest) => request.routeOptions.url ?? 'unmatched';

/** Wraps a route handler so it runs inside its request's trace context. */
function wrapHandler(route: RouteOptions): void {
  const original = route.handler;
  route.handler = function tracedHandler(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    const t = traces.get(request);
    return t ? context.with(t.ctx, () => original.call(this, request, reply)) : original.call(this, request, reply);
  };
}

export const observabilityPlugin = fp(
  async (app: FastifyInstance, options: ObservabilityOptions) => {
    const tracer = trace.getTracer('@flywheel/service');
    const duration = histogram(options.registry, {
      name: 'http_server_request_duration_seconds',
      help: 'Duration of HTTP requests, by method, route template and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
    });

    app.addHook('onRoute', wrapHandler);

    app.addHook('onRequest', (request, _reply, done) => {
      const parent = propagation.extract(ROOT_CONTEXT, request.headers);
      const route = routeLabel(request);
      const span = tracer.startSpan(
        `${request.method} ${route}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': request.method,
            'http.route': route,
            'url.path': request.url.split('?')[0] ?? '',
            'service.name': options.serviceName,
          },
        },
        parent,
      );
      const ctx = trace.setSpan(parent, span);
      traces.set(request, { span, ctx, start: process.hrtime.bigint() });
      context.with(ctx, done);
    });

    app.addHook('onError', async (request, _reply, error) => {
      traces.get(request)?.span.recordException(error);
    });

    const finish = (request: FastifyRequest, status: number) => {
      const t = traces.get(request);
      if (!t) return;
      traces.delete(request);
      t.span.setAttribute('http.response.status_code', status);
      if (status >= 500) t.span.setStatus({ code: SpanStatusCode.ERROR });
      t.span.end();
      const seconds = Number(process.hrtime.bigint() - t.start) / 1e9;
      duration.observe({ method: request.method, route: routeLabel(request), status_code: String(status) }, seconds);
    };
    app.addHook('onResponse', async (request, reply) => finish(request, reply.statusCode));
    app.addHook('onRequestAbort', async (request) => finish(request, 499));

    app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
      const body = await options.registry.metrics();
      return reply.type(options.registry.contentType).send(body);
    });
  },
  { name: '@flywheel/service/observability', fastify: '5.x' },
);
