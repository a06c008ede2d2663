// Primitive schemas shared by every event and HTTP body. Formats are written
// as patterns rather than `format` keywords so that the same schema validates
// identically in TypeBox (bus) and in Ajv (Fastify) without registering
// formats globally in either.
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';

/** RFC 4122 UUID, any version, lower or upper case hex. */
export const Uuid = Type.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'UUID',
});

/** RFC 3339 timestamp with an explicit zone, e.g. `2026-11-22T15:34:33.120Z`. */
export const Timestamp = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$',
  description: 'RFC 3339 timestamp',
});

/** Lower-case hex sha256 digest (64 characters). */
export const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'sha256, lower-case hex' });

/** Artifact or source address: `file://`, `s3://`, `http(s)://`. */
export const Uri = Type.String({
  pattern: '^[a-zA-Z][a-zA-Z0-9+.-]*://\\S+$',
  maxLength: 4096,
  description: 'URI with a scheme (file://, s3://, https://)',
});

/** A short human-chosen name: datasets, models, monitors. */
export const Name = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  minLength: 1,
  maxLength: 128,
  description: 'name: letters, digits, dot, dash, underscore; starts with a letter or digit',
});

/** Identifier minted by the owning service (uuid or another opaque token). */
export const Id = Type.String({ minLength: 1, maxLength: 128, pattern: '^\\S+$', description: 'opaque id' });

/** A non-empty free-text explanation (error reasons, decisions). */
export const Reason = Type.String({ minLength: 1, maxLength: 8192 });

export const NonNegativeInt = Type.Integer({ minimum: 0 });
export const PositiveInt = Type.Integer({ minimum: 1 });

/** An opaque JSON object whose shape belongs to the service that reads it. */
export const OpaqueObject = Type.Record(Type.String(), Type.Unknown());

export type Uuid = Static<typeof Uuid>;
export type Timestamp = Static<typeof Timestamp>;
