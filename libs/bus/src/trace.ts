// OpenTelemetry context across NATS: the publisher injects the active context
// into message headers through the global propagator (W3C traceparent when
// the telemetry lib registers it), and the consumer extracts it and runs the
// handler inside a CONSUMER span that is its child. Without a registered SDK
// every call here is a cheap no-op.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { Context, Span, TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import type { MsgHdrs } from '@nats-io/transport-node';

export const tracer = trace.getTracer('@flywheel/bus');

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

const getter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => (carrier === undefined ? [] : carrier.keys()),
  get: (carrier, key) => {
    if (carrier === undefined || !carrier.has(key)) return undefined;
    return carrier.get(key);
  },
};

/** Write the given context (default: active) into `headers`. */
export function injectContext(headers: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, headers, setter);
}

/** The remote parent context carried by `headers` (ROOT when none). */
export function extractContext(headers: MsgHdrs | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, headers, getter);
}

/** Run `fn` in a PRODUCER span for a publish on `subject`. */
export async function withPublishSpan<T>(
  subject: string,
  attributes: Record<string, string | number>,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer.startActiveSpan(`publish ${subject}`, { kind: SpanKind.PRODUCER, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (e) {
      recordError(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

/** Run `fn` in a CONSUMER span, child of the context found in `headers`. */
export async function withProcessSpan<T>(
  subject: string,
  headers: MsgHdrs | undefined,
  attributes: Record<string, string | number>,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = extractContext(headers);
  return tracer.startActiveSpan(
    `process ${subject}`,
    { kind: SpanKind.CONSUMER, attributes },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (e) {
        recordError(span, e);
        throw e;
      } finally {
        span.end();
      }
    },
  );
}

export function recordError(span: Span, e: unknown): void {
  const err = e instanceof Error ? e : new Error(String(e));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
}
