import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { subjects } from '@flywheel/contracts';
import { validPayloads } from '@flywheel/contracts/fixtures';
import { createTestBus } from './testing.ts';
import type { TestBus } from './testing.ts';

// A real SDK for this file only (Vitest isolates test files in their own workers).
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();

describe('bus tracing', () => {
  let t: TestBus | undefined;
  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
  });
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('bus - one trace id runs from a publish through the consumer span and its handler', async () => {
    t = await createTestBus();
    const { bus } = t;
    let handlerTrace: { traceId: string; spanId: string } | undefined;
    let traceparent: string | undefined;
    let done: () => void = () => undefined;
    const handled = new Promise<void>((r) => (done = r));
    await bus.consume(
      subjects.modelPromoted,
      (_e, d) => {
        const span = trace.getActiveSpan();
        handlerTrace = span?.spanContext();
        traceparent = d.headers['traceparent'];
        done();
      },
      { durable: 'serving', backoffMs: [1000] , maxDeliver: 2 },
    );
    // The caller's span stands in for the HTTP request that triggers the publish.
    const tracer = trace.getTracer('test');
    const root = tracer.startSpan('POST /v1/models/promote', { kind: SpanKind.SERVER });
    await context.with(trace.setSpan(context.active(), root), () =>
      bus.publish(subjects.modelPromoted, validPayloads[subjects.modelPromoted]),
    );
    root.end();
    await handled;
    await bus.close();

    const traceId = root.spanContext().traceId;
    const spans = exporter.getFinishedSpans();
    const producer = spans.find((s) => s.kind === SpanKind.PRODUCER);
    const consumer = spans.find((s) => s.kind === SpanKind.CONSUMER);
    expect(producer?.name).toBe(`publish ${subjects.modelPromoted}`);
    expect(consumer?.name).toBe(`process ${subjects.modelPromoted}`);
    // publish span is a child of the caller's span...
    expect(producer?.spanContext().traceId).toBe(traceId);
    expect(producer?.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    // ...the W3C header carries the publish span...
    expect(traceparent).toBe(`00-${traceId}-${producer?.spanContext().spanId}-01`);
    // ...the consumer span is its child, and the handler runs inside it.
    expect(consumer?.spanContext().traceId).toBe(traceId);
    expect(consumer?.parentSpanContext?.spanId).toBe(producer?.spanContext().spanId);
    expect(consumer?.parentSpanContext?.isRemote).toBe(true);
    expect(handlerTrace).toEqual(expect.objectContaining({ traceId, spanId: consumer?.spanContext().spanId }));
    expect(consumer?.attributes['messaging.consumer.group.name']).toBe('serving');
  });

  it('bus - a failing handler marks its consumer span as an error', async () => {
    t = await createTestBus();
    const { bus } = t;
    exporter.reset();
    let failed: () => void = () => undefined;
    const done = new Promise<void>((r) => (failed = r));
    await bus.consume(
      subjects.driftDetected,
      () => {
        setImmediate(failed);
        throw new Error('model not loaded');
      },
      { durable: 'trainer-drift', backoffMs: [5_000], maxDeliver: 2 },
    );
    await bus.publish(subjects.driftDetected, validPayloads[subjects.driftDetected]);
    await done;
    const consumer = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CONSUMER);
    expect(consumer?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'model not loaded' });
    expect(consumer?.events.map((e) => e.name)).toContain('exception');
  });
});
