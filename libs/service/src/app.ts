/**
 * createApp: the Fastify instance every flywheel service starts from, with
 * the cross-cutting plugins installed in this order (hooks run in
 * registration order):
 *   routes inventory (onRoute) -> observability (span, metrics, /metrics)
 *   -> errors -> auth -> OpenAPI (/openapi.json) -> probes.
 * The service registers its own route plugins on the returned app.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify from 'fastify';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { createRegistry } from '@flywheel/telemetry';
import type { Logger, Registry } from '@flywheel/telemetry';
import { authPlugin, PUBLIC_ROUTES } from './auth.ts';
import type { AuthOptions } from './auth.ts';
import { errorHandlerPlugin, sendProblem } from './error-handler.ts';
import { problems } from './errors.ts';
import { healthPlugin } from './health.ts';
import type { ReadinessCheck } from './health.ts';
import { observabilityPlugin } from './observability.ts';
import { trackRoutes } from './routes.ts';
import { closeGracefully } from './shutdown.ts';
import type { Drainer, ShutdownReport, ShutdownState } from './shutdown.ts';

export interface AppOptions {
  /** Service name: OpenAPI title, span attribute, log field. */
  name: string;
  version: string;
  auth: AuthOptions;
  /** A pino logger (from @flywheel/telemetry createLogger); false or absent: silent. */
  logger?: Logger | false;
  readiness?: readonly ReadinessCheck[];
  /** The service's Prometheus registry; one with default metrics is made when absent. */
  telemetry?: { registry?: Registry };
  /** Largest accepted request body in bytes. Default 1 MiB. */
  bodyLimit?: number;
  /** Default time closeGracefully() allows for draining. Default 10 s. */
  shutdownTimeoutMs?: number;
  /** OpenAPI description. */
  description?: string;
  /** Trust X-Forwarded-* from a proxy in front. Default false. */
  trustProxy?: boolean;
}

export type App = FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyInstance {
    /** Drain and close (see shutdown.ts); resolves with what happened. Idempotent. */
    closeGracefully(options?: { timeoutMs?: number }): Promise<ShutdownReport>;
    /**
     * Registers work to finish before the HTTP server closes, e.g. a bus
     * consumer's stop(). Drainers run one by one in registration order.
     */
    addDrainer(name: string, drain: () => Promise<unknown>): void;
    /**
     * Registers a client to close after the drainers and the HTTP server are
     * done (pool, bus connection, telemetry). Closed in reverse registration
     * order: register what others depend on first.
     */
    addResource(name: string, close: () => Promise<unknown>): void;
    /** True once closeGracefully() has started. */
    readonly draining: boolean;
    /** The Prometheus registry /metrics renders. */
    readonly metricsRegistry: Registry;
  }
}

export async function createApp(options: AppOptions): Promise<App> {
  if (!options.name) throw new Error('createApp: name is required');
  const registry = options.telemetry?.registry ?? createRegistry({ labels: { service: options.name } });
  const publicMetrics = options.auth.publicMetrics ?? true;
  const isPublic = (url: string) => PUBLIC_ROUTES.includes(url) || (publicMetrics && url === '/metrics');

  const base = {
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    trustProxy: options.trustProxy ?? false,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // Keep-alive sockets idle at close time are closed at once; busy ones after their response.
    forceCloseConnections: 'idle' as const,
    // Requests arriving on open connections while closing get our 503 problem (below), not Fastify's plain JSON.
    return503OnClosing: false,
    // Unknown properties are an error (400), not silently dropped: a schema with
    // additionalProperties: false means what it says.
    ajv: { customOptions: { removeAdditional: false as const } },
  };
  const fastify = options.logger
    ? Fastify({ ...base, loggerInstance: options.logger as unknown as FastifyBaseLogger })
    : Fastify({ ...base, logger: false });
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  const state: ShutdownState = { draining: false, httpClosing: false, drainers: [], resources: [], closing: undefined };
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
  app.decorate('closeGracefully', (o?: { timeoutMs?: number }) =>
    closeGracefully(app as unknown as FastifyInstance, state, o?.timeoutMs ?? shutdownTimeoutMs),
  );
  app.decorate('addDrainer', (name: string, drain: () => Promise<unknown>) => {
    const d: Drainer = { name, drain };
    state.drainers.push(d);
  });
  app.decorate('addResource', (name: string, close: () => Promise<unknown>) => {
    state.resources.push({ name, close });
  });
  app.decorate('draining', { getter: () => state.draining });
  app.decorate('metricsRegistry', { getter: () => registry });

  trackRoutes(app as unknown as FastifyInstance, isPublic);
  await app.register(observabilityPlugin, { registry, serviceName: options.name });
  await app.register(errorHandlerPlugin);
  app.addHook('onRequest', async (_request, reply) => {
    if (!state.httpClosing) return;
    reply.header('connection', 'close');
    return sendProblem(reply, problems.unavailable, 'shutting down');
  });
  await app.register(authPlugin, options.auth);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: options.name, version: options.version, ...(options.description ? { description: options.description } : {}) },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearerAuth: [] }],
    },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.register(healthPlugin, { checks: options.readiness ?? [], isDraining: () => state.draining });
  return app;
}
