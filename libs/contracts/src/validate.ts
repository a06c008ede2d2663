// Validation of event payloads and envelopes with compiled TypeBox checkers.
// Checkers are compiled on first use per schema and cached; errors come back
// as readable `path: message` strings, never as exceptions.
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import { EnvelopeSchema } from './envelope.ts';
import type { AnyEventEnvelope } from './envelope.ts';
import type { EventData } from './registry.ts';
import { eventDefinition } from './registry.ts';
import type { Subject } from './subjects.ts';

/** Outcome of a validation: the typed value, or every problem found. */
export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: string[] };

/** Most errors reported for one value; a garbage payload can produce hundreds. */
const MAX_ERRORS = 20;

const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checker(schema: TSchema): TypeCheck<TSchema> {
  let c = checkers.get(schema);
  if (c === undefined) {
    c = TypeCompiler.Compile(schema);
    checkers.set(schema, c);
  }
  return c;
}

/** Validate `value` against any schema; `prefix` is prepended to every error path. */
export function validateSchema<T>(schema: TSchema, value: unknown, prefix = ''): ValidationResult<T> {
  const c = checker(schema);
  if (c.Check(value)) return { ok: true, value: value as T };
  const errors: string[] = [];
  for (const e of c.Errors(value)) {
    errors.push(`${prefix}${e.path === '' ? '/' : e.path}: ${e.message}`);
    if (errors.length >= MAX_ERRORS) {
      errors.push('... more errors omitted');
      break;
    }
  }
  return { ok: false, errors };
}

/**
 * Validate an event payload (the envelope's `data`) for `subject`.
 * `version` defaults to the subject's current version; any other is rejected.
 */
export function validateEvent<S extends Subject>(
  subject: S,
  payload: unknown,
  version?: number,
): ValidationResult<EventData<S>>;
export function validateEvent(subject: string, payload: unknown, version?: number): ValidationResult<unknown>;
export function validateEvent(subject: string, payload: unknown, version?: number): ValidationResult<unknown> {
  const def = eventDefinition(subject);
  if (def === undefined) return { ok: false, errors: [`unknown subject '${subject}'`] };
  if (version !== undefined && version !== def.version) {
    return {
      ok: false,
      errors: [`unsupported schema version ${version} for '${subject}' (this build knows v${def.version})`],
    };
  }
  return validateSchema(def.schema, payload);
}

/**
 * Validate a whole envelope: its own shape, its subject (when `expectedSubject`
 * is given, the envelope must name that one), its version and its data.
 */
export function validateEnvelope(raw: unknown, expectedSubject?: string): ValidationResult<AnyEventEnvelope> {
  const env = validateSchema<{ subject: string; version: number; data: unknown }>(EnvelopeSchema, raw);
  if (!env.ok) return env;
  const { subject, version, data } = env.value;
  if (expectedSubject !== undefined && subject !== expectedSubject) {
    return { ok: false, errors: [`/subject: envelope names '${subject}' but arrived on '${expectedSubject}'`] };
  }
  const def = eventDefinition(subject);
  if (def === undefined) return { ok: false, errors: [`/subject: unknown subject '${subject}'`] };
  if (version !== def.version) {
    return {
      ok: false,
      errors: [`/version: unsupported schema version ${version} for '${subject}' (this build knows v${def.version})`],
    };
  }
  const d = validateSchema(def.schema, data, '/data');
  if (!d.ok) return d;
  return { ok: true, value: raw as AnyEventEnvelope };
}
