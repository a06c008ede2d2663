/**
 * Prometheus metrics with prom-client. Each service owns one Registry
 * (default Node.js process metrics included) that /metrics renders. Helpers
 * register a metric on a given registry and return the same instance when
 * asked again for the same name, so modules can declare their metrics
 * without coordinating.
 */
import client from 'prom-client';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type { Counter, Gauge, Histogram, Registry };

export interface RegistryOptions {
  /** Collect prom-client's default process metrics. Default true. */
  defaultMetrics?: boolean;
  /** Prefix for the default metrics, e.g. "fw_data_". */
  prefix?: string;
  /** Labels on every metric, e.g. { service: 'data' }. */
  labels?: Record<string, string>;
}

export function createRegistry(options: RegistryOptions = {}): Registry {
  const registry = new client.Registry();
  if (options.labels) registry.setDefaultLabels(options.labels);
  if (options.defaultMetrics ?? true) {
    client.collectDefaultMetrics({ register: registry, ...(options.prefix ? { prefix: options.prefix } : {}) });
  }
  return registry;
}

export interface MetricSpec<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

function existing<T>(registry: Registry, name: string, kind: string): T | undefined {
  const m = registry.getSingleMetric(name);
  if (!m) return undefined;
  const type = (m as unknown as { type?: string }).type;
  if (type !== kind) throw new Error(`metric ${name} is already registered as a ${String(type)}, not a ${kind}`);
  return m as T;
}

export function counter<L extends string = string>(registry: Registry, spec: MetricSpec<L>): Counter<L> {
  return (
    existing<Counter<L>>(registry, spec.name, 'counter') ??
    new client.Counter<L>({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [registry] })
  );
}

export function gauge<L extends string = string>(registry: Registry, spec: MetricSpec<L>): Gauge<L> {
  return (
    existing<Gauge<L>>(registry, spec.name, 'gauge') ??
    new client.Gauge<L>({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [registry] })
  );
}

/** Default buckets suit request latencies in seconds (5 ms .. 30 s). */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

export function histogram<L extends string = string>(
  registry: Registry,
  spec: MetricSpec<L> & { buckets?: readonly number[] },
): Histogram<L> {
  return (
    existing<Histogram<L>>(registry, spec.name, 'histogram') ??
    new client.Histogram<L>({
      name: spec.name,
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      buckets: [...(spec.buckets ?? LATENCY_BUCKETS)],
      registers: [registry],
    })
  );
}

/** The registry's metrics in the Prometheus text exposition format, and its content type. */
export async function renderMetrics(registry: Registry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
