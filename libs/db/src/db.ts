/**
 * The pg pool a service talks to its own schema through. search_path is set
 * as a connection start-up parameter, so every pooled connection (including
 * ones the pool opens later) resolves unqualified names in the service's
 * schema and nothing else.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertIdentifier, isRetryable, TransactionRetryExhaustedError } from './errors.ts';
import type { Db, DbOptions, Queryable, QueryResult, QueryResultRow, TxClient, TxOptions } from './types.ts';

const ISOLATION_SQL = {
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
} as const;

const pools = new WeakMap<Db, pg.Pool>();

/** The pool behind a Db, for sibling modules (migrate) that need a dedicated client. */
export function poolOf(db: Db): pg.Pool {
  const pool = pools.get(db);
  if (!pool) throw new Error('poolOf: not a Db created by createDb');
  return pool;
}

/** Creates the service's pool. No connection is opened until the first query. */
export function createDb(options: DbOptions): Db {
  const schema = assertIdentifier(options.schema, 'schema name');
  if (!options.url) throw new Error('createDb: url is empty (set DATABASE_URL)');
  const startup = [`-c search_path=${schema}`];
  if (options.statementTimeoutMs !== undefined) startup.push(`-c statement_timeout=${Math.floor(options.statementTimeoutMs)}`);
  const pool = new pg.Pool({
    connectionString: options.url,
    application_name: options.applicationName,
    max: options.max ?? 10,
    options: startup.join(' '),
  });
  // An idle client that loses its connection emits 'error' on the pool; without
  // a listener that would crash the process.
  pool.on('error', (err) => options.onError?.(err));

  const query = <R extends QueryResultRow = QueryResultRow>(sql: string, params?: readonly unknown[]) =>
    pool.query<R>(sql, params as unknown[] | undefined);

  async function attempt<T>(fn: (client: TxClient) => Promise<T>, opts: TxOptions): Promise<T> {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      const iso = ISOLATION_SQL[opts.isolation ?? 'read committed'];
      await client.query(`BEGIN ISOLATION LEVEL ${iso}${opts.readOnly ? ' READ ONLY' : ''}`);
      const txClient: TxClient = {
        query: <R extends QueryResultRow = QueryResultRow>(sql: string, params?: readonly unknown[]) =>
          client.query<R>(sql, params as unknown[] | undefined),
      };
      try {
        const result = await fn(txClient);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
          // The connection is unusable; do not hand it back to the pool.
          broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
        });
        throw err;
      }
    } finally {
      client.release(broken);
    }
  }

  async function tx<T>(fn: (client: TxClient) => Promise<T>, opts: TxOptions = {}): Promise<T> {
    const retries = Math.max(0, Math.floor(opts.retries ?? 0));
    const base = opts.retryBaseMs ?? 20;
    for (let i = 0; ; i++) {
      try {
        return await attempt(fn, opts);
      } catch (err) {
        if (!isRetryable(err)) throw err;
        if (i >= retries) {
          if (retries === 0) throw err;
          throw new TransactionRetryExhaustedError(i + 1, { cause: err });
        }
        await sleep(base * 2 ** i * (0.5 + Math.random()));
      }
    }
  }

  const db: Db = {
    schema,
    query: query as Db['query'],
    tx,
    async withClient<T>(fn: (client: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        return await fn({
          query: <R extends QueryResultRow = QueryResultRow>(sql: string, params?: readonly unknown[]) =>
            client.query<R>(sql, params as unknown[] | undefined),
        });
      } catch (err) {
        // A failure may leave the session mid-transaction or holding locks: do not reuse it.
        broken = err instanceof Error ? err : new Error(String(err));
        throw err;
      } finally {
        client.release(broken);
      }
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await pool.end();
    },
  };
  pools.set(db, pool);
  return db;
}

export type { QueryResult };
