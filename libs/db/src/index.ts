export { createDb } from './db.ts';
export { migrate, migrationLockKey } from './migrate.ts';
export type { MigrateOptions, MigrateResult } from './migrate.ts';
export {
  assertIdentifier,
  InvalidIdentifierError,
  isInvalidIdentifierError,
  isMigrationError,
  isRetryable,
  isTransactionRetryExhaustedError,
  isUniqueViolation,
  MigrationError,
  sqlState,
  TransactionRetryExhaustedError,
} from './errors.ts';
export type { Db, DbOptions, IsolationLevel, Queryable, QueryResult, QueryResultRow, TxClient, TxOptions } from './types.ts';
