/**
 * Typed errors of @flywheel/db. Each sets `name`, keeps the driver error as
 * `cause`, and has a predicate so callers never match on message text.
 */

/** A schema or identifier that is not a plain lower-case SQL identifier. */
export class InvalidIdentifierError extends Error {
  override name = 'InvalidIdentifierError';
  readonly identifier: string;
  constructor(identifier: string, what: string) {
    super(`invalid ${what} ${JSON.stringify(identifier)}: use 1-63 characters of [a-z0-9_], starting with a letter or _`);
    this.identifier = identifier;
  }
}

/** Applying a service's migrations failed; nothing after the failing one ran. */
export class MigrationError extends Error {
  override name = 'MigrationError';
  readonly schema: string;
  constructor(schema: string, message: string, options?: { cause?: unknown }) {
    super(`migrating schema "${schema}" failed: ${message}`, options);
    this.schema = schema;
  }
}

/** A transaction still failed with a retryable error after its last attempt. */
export class TransactionRetryExhaustedError extends Error {
  override name = 'TransactionRetryExhaustedError';
  readonly attempts: number;
  constructor(attempts: number, options: { cause: unknown }) {
    super(`transaction failed after ${attempts} attempts (last error: ${String(options.cause)})`, options);
    this.attempts = attempts;
  }
}

export const isMigrationError = (e: unknown): e is MigrationError => e instanceof MigrationError;
export const isInvalidIdentifierError = (e: unknown): e is InvalidIdentifierError => e instanceof InvalidIdentifierError;
export const isTransactionRetryExhaustedError = (e: unknown): e is TransactionRetryExhaustedError =>
  e instanceof TransactionRetryExhaustedError;

/** SQLSTATE codes that mean "run the whole transaction again". */
export const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set(['40001', '40P01']);

/** SQLSTATE of a pg driver error, if it has one. */
export function sqlState(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string') return e.code;
  return undefined;
}

/** True for errors of constraint class 23 unique_violation (23505). */
export const isUniqueViolation = (e: unknown): boolean => sqlState(e) === '23505';

/** True for serialization failures (40001) and deadlocks (40P01). */
export const isRetryable = (e: unknown): boolean => RETRYABLE_SQLSTATES.has(sqlState(e) ?? '');

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Validates a schema name (or other identifier) before it is put into SQL text. */
export function assertIdentifier(name: string, what = 'identifier'): string {
  if (!IDENTIFIER.test(name)) throw new InvalidIdentifierError(name, what);
  return name;
}
