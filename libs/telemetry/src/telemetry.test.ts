import { Writable } from 'node:stream';
import { context, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counter, createLogger, createRegistry, histogram, otlpEndpoint, startTelemetry } from './index.ts';
import type { Telemetry } from './index.ts';

/** A pino destination that keeps every line. */
function memoryDestination() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

describe('telemetry', () => {
  const exporter = new InMemorySpanExporter();
  let tel: Telemetry;
  beforeAll(() => {
    tel = startTelemetry({ serviceName: 'telemetry-test', env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  });
  afterAll(() => tel.shutdown());

  it('telemetry - a log line inside a span carries its trace and span id', async () => {
    const { lines, stream } = memoryDestination();
    const log = createLogger({ name: 'telemetry-test', destination: stream });
    let ids = { traceId: '', spanId: '' };
    await tel.tracer.startActiveSpan('work', async (span) => {
      ids = span.spanContext();
      await new Promise((r) => setTimeout(r, 5)); // across an async hop
      log.info('inside');
      span.end();
    });
    log.info('outside');
    expect(lines[0]).toMatchObject({ msg: 'inside', service: 'telemetry-test', trace_id: ids.traceId, span_id: ids.spanId, trace_flags: '01' });
    expect(lines[1]?.['msg']).toBe('outside');
    expect(lines[1]).not.toHaveProperty('trace_id');
    expect(exporter.getFinishedSpans().map((s) => s.name)).toContain('work');
  });

  it('telemetry - authorization headers are redacted from logs', () => {
    const { lines, stream } = memoryDestination();
    createLogger({ name: 't', destination: stream }).info({ req: { headers: { authorization: 'Bearer s3cr3t' } } }, 'req');
    expect(JSON.stringify(lines)).not.toContain('s3cr3t');
  });

  it('telemetry - the W3C propagator round-trips a traceparent', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const ctx = propagation.extract(context.active(), { traceparent });
    expect(trace.getSpanContext(ctx)?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    const child = tel.tracer.startSpan('child', {}, ctx);
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(ctx, child), carrier);
    child.end();
    expect(carrier['traceparent']).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
  });

  it('telemetry - a second start returns the running instance', () => {
    expect(startTelemetry({ serviceName: 'other' })).toBe(tel);
  });

  it('telemetry - OTLP endpoints come from the environment', () => {
    expect(otlpEndpoint({}, 'traces')).toBeUndefined();
    expect(otlpEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' }, 'traces')).toBe('http://c:4318/v1/traces');
    expect(otlpEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m/x' }, 'metrics')).toBe(
      'http://m/x',
    );
  });
});

describe('metrics', () => {
  it('metrics - counters and histograms render in the Prometheus text format', async () => {
    const registry = createRegistry({ labels: { service: 'data' } });
    const c = counter(registry, { name: 'fw_test_jobs_total', help: 'Jobs done', labelNames: ['outcome'] as const });
    c.inc({ outcome: 'ok' });
    c.inc({ outcome: 'ok' }, 2);
    expect(counter(registry, { name: 'fw_test_jobs_total', help: 'Jobs done' })).toBe(c);
    histogram(registry, { name: 'fw_test_seconds', help: 'Latency', buckets: [0.1, 1] }).observe(0.5);
    const text = await registry.metrics();
    expect(registry.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(text).toContain('# HELP fw_test_jobs_total Jobs done');
    expect(text).toContain('# TYPE fw_test_jobs_total counter');
    expect(text).toContain('fw_test_jobs_total{outcome="ok",service="data"} 3');
    expect(text).toContain('fw_test_seconds_bucket{le="0.1",service="data"} 0');
    expect(text).toContain('fw_test_seconds_bucket{le="1",service="data"} 1');
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(() => histogram(registry, { name: 'fw_test_jobs_total', help: 'x' })).toThrow(/already registered as a counter/);
  });
});
