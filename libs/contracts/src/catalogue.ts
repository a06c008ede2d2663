// Renders the event catalogue (docs/events.md) from the registry, so the docs
// cannot drift from the schemas: a test compares the file with this output,
// and `node libs/contracts/scripts/render-events-doc.ts` rewrites it.
import type { TSchema } from '@sinclair/typebox';
import { eventRegistry } from './registry.ts';
import type { EventDefinition } from './registry.ts';
import { DeadLetterV1 } from './dead-letter.ts';
import { EnvelopeSchema } from './envelope.ts';
import { DLQ_PREFIX } from './subjects.ts';

interface Row {
  field: string;
  type: string;
  required: boolean;
  notes: string;
}

type Json = Record<string, unknown>;

function constraints(s: Json): string {
  const parts: string[] = [];
  if (typeof s['description'] === 'string') parts.push(s['description']);
  if (s['minimum'] !== undefined) parts.push(`≥ ${String(s['minimum'])}`);
  if (s['exclusiveMinimum'] !== undefined) parts.push(`> ${String(s['exclusiveMinimum'])}`);
  if (s['maximum'] !== undefined) parts.push(`≤ ${String(s['maximum'])}`);
  if (s['minLength'] !== undefined || s['maxLength'] !== undefined) {
    parts.push(`length ${String(s['minLength'] ?? 0)}..${String(s['maxLength'] ?? '∞')}`);
  }
  if (s['minItems'] !== undefined || s['maxItems'] !== undefined) {
    parts.push(`items ${String(s['minItems'] ?? 0)}..${String(s['maxItems'] ?? '∞')}`);
  }
  if (typeof s['pattern'] === 'string' && typeof s['description'] !== 'string') parts.push(`\`${s['pattern']}\``);
  return parts.join('; ');
}

function typeLabel(s: Json): string {
  const anyOf = s['anyOf'];
  if (Array.isArray(anyOf)) {
    const alts = anyOf as Json[];
    if (alts.every((a) => a['const'] !== undefined)) return alts.map((a) => `\`${JSON.stringify(a['const'])}\``).join(' \\| ');
    return alts.map(typeLabel).join(' or ');
  }
  if (s['const'] !== undefined) return `\`${JSON.stringify(s['const'])}\``;
  switch (s['type']) {
    case 'array':
      return `${typeLabel(s['items'] as Json)}[]`;
    case 'object':
      if (s['patternProperties'] !== undefined) {
        const value = Object.values(s['patternProperties'] as Record<string, Json>)[0] ?? {};
        return `map of string → ${typeLabel(value)}`;
      }
      return 'object';
    case undefined:
      return 'any JSON';
    default:
      return String(s['type']);
  }
}

function rows(schema: Json, prefix: string, out: Row[]): Row[] {
  const props = (schema['properties'] ?? {}) as Record<string, Json>;
  const required = new Set((schema['required'] ?? []) as string[]);
  for (const [name, s] of Object.entries(props)) {
    const field = `${prefix}${name}`;
    out.push({ field, type: typeLabel(s), required: required.has(name), notes: constraints(s) });
    if (s['type'] === 'object' && s['properties'] !== undefined) rows(s, `${field}.`, out);
    const items = s['items'] as Json | undefined;
    if (s['type'] === 'array' && items?.['type'] === 'object' && items['properties'] !== undefined) {
      rows(items, `${field}[].`, out);
    }
  }
  return out;
}

function table(schema: TSchema): string {
  const lines = ['| field | type | required | constraints |', '| --- | --- | --- | --- |'];
  for (const r of rows(schema as unknown as Json, '', [])) {
    lines.push(`| \`${r.field}\` | ${r.type} | ${r.required ? 'yes' : 'no'} | ${r.notes.replaceAll('|', '\\|')} |`);
  }
  return lines.join('\n');
}

function section(subject: string, def: EventDefinition): string {
  const who = (xs: readonly string[]): string => (xs.length === 0 ? '—' : xs.join(', '));
  return [
    `### \`${subject}\` (v${def.version})`,
    '',
    def.summary,
    '',
    `Emitted by: ${who(def.emittedBy)}. Consumed by: ${who(def.consumedBy)}.`,
    '',
    table(def.schema),
  ].join('\n');
}

/** The full markdown of docs/events.md. */
export function renderEventCatalogue(): string {
  const parts = [
    '<!-- Generated from libs/contracts (catalogue.ts); do not edit by hand. Regenerate with: node libs/contracts/scripts/render-events-doc.ts -->',
    '# Event catalogue',
    '',
    'Every message on the bus is a JSON envelope whose `data` is the payload of its',
    'subject at the envelope\'s `version`. Payload objects are closed: an unknown',
    'field is a validation error, and any change to a payload schema bumps its',
    'version. Trace context travels in the NATS headers (`traceparent`,',
    '`tracestate`), not in the body; `Nats-Msg-Id` is the envelope `id`.',
    '',
    '## Envelope',
    '',
    table(EnvelopeSchema),
    '',
    '## Events',
    '',
    ...Object.entries(eventRegistry).flatMap(([subject, def]) => [section(subject, def), '']),
    '## Dead letters',
    '',
    `A message given up on is published once to \`${DLQ_PREFIX}<original subject>\` with this body`,
    '(then the original is terminated):',
    '',
    table(DeadLetterV1),
    '',
  ];
  return parts.join('\n');
}
