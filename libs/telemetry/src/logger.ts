/**
 * pino logger factory. Every line written while a span is active carries
 * that span's trace_id and span_id (a pino mixin reads the active context),
 * so logs join traces in any backend.
 */
import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import pino from 'pino';
import type { DestinationStream, Logger, LoggerOptions } from 'pino';

export type { Logger };

export interface LoggerFactoryOptions {
  /** Logged as `service` on every line. */
  name: string;
  /** Default process.env.LOG_LEVEL or 'info'. */
  level?: string;
  /** Where lines go. Default stdout. */
  destination?: DestinationStream;
  /** Paths to censor (pino redact). Authorization headers are always redacted. */
  redact?: string[];
}

/** trace_id/span_id/trace_flags of the active span, or {} outside one. */
export function traceFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: `0${sc.traceFlags.toString(16)}`.slice(-2) };
}

export function createLogger(options: LoggerFactoryOptions): Logger {
  const opts: LoggerOptions = {
    name: options.name,
    level: options.level ?? process.env['LOG_LEVEL'] ?? 'info',
    base: { service: options.name },
    mixin: traceFields,
    redact: { paths: ['req.headers.authorization', 'headers.authorization', ...(options.redact ?? [])], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}
