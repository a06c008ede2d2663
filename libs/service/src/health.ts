/**
 * Probes. /healthz answers 200 while the event loop runs (liveness: restart
 * me if this fails). /readyz runs every readiness check in parallel, each
 * under a timeout, and answers 503 problem+json naming the failing ones, or
 * while the app is draining for shutdown (readiness: stop sending me
 * traffic).
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { sendProblem } from './error-handler.ts';
import { problems } from './errors.ts';

export interface ReadinessCheck {
  /** Shown in the response, e.g. 'postgres', 'nats', 'artifacts'. */
  name: string;
  /** Resolves when the dependency is usable; rejects (or times out) otherwise. */
  check: () => Promise<unknown>;
  /** Default 2000 ms. */
  timeoutMs?: number;
}

export interface CheckResult {
  name: string;
  ok: boolean;
  error?: string;
  ms: number;
}

export async function runCheck(c: ReadinessCheck): Promise<CheckResult> {
  const t0 = performance.now();
  const timeoutMs = c.timeoutMs ?? 2000;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([Promise.resolve().then(c.check), timeout]);
    return { name: c.name, ok: true, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    return { name: c.name, ok: false, error, ms: Math.round(performance.now() - t0) };
  } finally {
    clearTimeout(timer);
  }
}

export interface HealthOptions {
  checks: readonly ReadinessCheck[];
  isDraining: () => boolean;
}

export const healthPlugin = fp(
  async (app: FastifyInstance, options: HealthOptions) => {
    const names = new Set<string>();
    for (const c of options.checks) {
      if (names.has(c.name)) throw new Error(`duplicate readiness check name ${JSON.stringify(c.name)}`);
      names.add(c.name);
    }
    app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
    app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
      if (options.isDraining()) return sendProblem(reply, problems.notReady, 'shutting down', { checks: [] });
      const results = await Promise.all(options.checks.map(runCheck));
      const failed = results.filter((r) => !r.ok);
      if (failed.length > 0) {
        // The probe is unauthenticated: name the failing checks, log their errors.
        request.log.warn({ failed }, 'readiness check failed');
        const detail = `readiness check failed: ${failed.map((f) => f.name).join(', ')}`;
        const checks = results.map(({ name, ok, ms }) => ({ name, ok, ms }));
        return sendProblem(reply, problems.notReady, detail, { failing: failed.map((f) => f.name), checks });
      }
      return { status: 'ok', checks: results.map(({ name, ok, ms }) => ({ name, ok, ms })) };
    });
  },
  { name: '@flywheel/service/health', fastify: '5.x' },
);
