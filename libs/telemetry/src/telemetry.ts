/**
 * OpenTelemetry bootstrap for one service process. Registers, globally and
 * once per process: an AsyncLocalStorage context manager (so the active span
 * follows async work), the W3C trace-context + baggage propagator (so the
 * trace id crosses HTTP and NATS headers), a tracer provider and a meter
 * provider. Spans and metrics are exported over OTLP/HTTP only when
 * OTEL_EXPORTER_OTLP_ENDPOINT (or the per-signal *_TRACES_/*_METRICS_
 * variable) is set; otherwise spans are still created and propagated (trace
 * ids appear in logs) but go nowhere.
 */
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import type { Meter, Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type { MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export interface TelemetryOptions {
  serviceName: string;
  serviceVersion?: string;
  /** Environment to read OTEL_* from. Default process.env. */
  env?: Record<string, string | undefined>;
  /** Extra span processors (tests pass a SimpleSpanProcessor over an InMemorySpanExporter). */
  spanProcessors?: SpanProcessor[];
  /** Extra metric readers. */
  metricReaders?: MetricReader[];
  /** OTLP metric export interval. Default 15 s. */
  metricIntervalMs?: number;
}

export interface Telemetry {
  readonly serviceName: string;
  readonly tracer: Tracer;
  readonly meter: Meter;
  /** True when spans/metrics are exported over OTLP. */
  readonly exporting: boolean;
  /** Flushes pending spans and metrics; call before the process exits. */
  shutdown(): Promise<void>;
}

let current: Telemetry | undefined;

/** The endpoint for one signal: the per-signal variable wins, else the base one + /v1/<signal>. */
export function otlpEndpoint(env: Record<string, string | undefined>, signal: 'traces' | 'metrics'): string | undefined {
  const specific = env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`];
  if (specific) return specific;
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT'];
  if (!base) return undefined;
  return `${base.replace(/\/+$/, '')}/v1/${signal}`;
}

/**
 * Starts telemetry for this process. A second call returns the running
 * instance (global providers can be registered only once per process).
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  if (current) return current;
  const env = options.env ?? process.env;
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: options.serviceName,
    ...(options.serviceVersion ? { [ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
  });

  const tracesUrl = otlpEndpoint(env, 'traces');
  const metricsUrl = otlpEndpoint(env, 'metrics');
  const spanProcessors = [...(options.spanProcessors ?? [])];
  if (tracesUrl) spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl })));
  const readers = [...(options.metricReaders ?? [])];
  if (metricsUrl) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: metricsUrl }),
        exportIntervalMillis: options.metricIntervalMs ?? 15_000,
      }),
    );
  }

  const tracerProvider = new BasicTracerProvider({ resource, spanProcessors });
  const meterProvider = new MeterProvider({ resource, readers });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);

  const telemetry: Telemetry = {
    serviceName: options.serviceName,
    tracer: trace.getTracer(options.serviceName, options.serviceVersion),
    meter: metrics.getMeter(options.serviceName, options.serviceVersion),
    exporting: Boolean(tracesUrl || metricsUrl),
    async shutdown() {
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
      current = undefined;
    },
  };
  current = telemetry;
  return telemetry;
}

/** The running telemetry, if startTelemetry was called. */
export function currentTelemetry(): Telemetry | undefined {
  return current;
}
