export { currentTelemetry, otlpEndpoint, startTelemetry } from './telemetry.ts';
export type { Telemetry, TelemetryOptions } from './telemetry.ts';
export { createLogger, traceFields } from './logger.ts';
export type { Logger, LoggerFactoryOptions } from './logger.ts';
export { counter, createRegistry, gauge, histogram, LATENCY_BUCKETS, renderMetrics } from './metrics.ts';
export type { Counter, Gauge, Histogram, MetricSpec, Registry, RegistryOptions } from './metrics.ts';
