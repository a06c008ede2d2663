import type { QueryResult, QueryResultRow } from 'pg';

export type { QueryResult, QueryResultRow };

/** Anything that runs a parameterised query: the pool or a transaction's client. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** The client handed to a `db.tx` callback; every query runs inside the transaction. */
export type TxClient = Queryable;

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

export interface TxOptions {
  /** Default 'read committed'. */
  isolation?: IsolationLevel;
  readOnly?: boolean;
  /**
   * How many times to run the callback again after a serialization failure
   * (40001) or deadlock (40P01). Default 0. The callback must be safe to
   * re-run: it must not have side effects outside the transaction.
   */
  retries?: number;
  /** Base of the jittered exponential backoff between attempts. Default 20 ms. */
  retryBaseMs?: number;
}

export interface DbOptions {
  /** postgres:// connection string. */
  url: string;
  /** The service's schema: every connection's search_path is set to it. */
  schema: string;
  /** Shown in pg_stat_activity. */
  applicationName: string;
  /** Pool size. Default 10. */
  max?: number;
  /** Abort statements that run longer than this (ms). Default: no limit. */
  statementTimeoutMs?: number;
  /** Called for errors of idle pooled connections (they are dropped from the pool). */
  onError?: (err: Error) => void;
}

export interface Db extends Queryable {
  readonly schema: string;
  /** Runs `fn` in one transaction: COMMIT when it resolves, ROLLBACK when it throws. */
  tx<T>(fn: (client: TxClient) => Promise<T>, options?: TxOptions): Promise<T>;
  /**
   * Runs `fn` on one dedicated connection outside a transaction, for
   * session-level work (advisory locks, LISTEN, SET). The connection goes
   * back to the pool afterwards; session state must be undone by `fn`.
   */
  withClient<T>(fn: (client: Queryable) => Promise<T>): Promise<T>;
  /** Readiness check: resolves when a `SELECT 1` round trip succeeds. */
  ping(): Promise<void>;
  /** Ends every pooled connection; waits for checked-out ones to be released. */
  close(): Promise<void>;
}
