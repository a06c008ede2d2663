import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDb, InvalidIdentifierError, isRetryable, isUniqueViolation, TransactionRetryExhaustedError } from './index.ts';
import { createTestDb, dropSchema, testDatabaseUrl, uniqueSchemaName } from './testing.ts';
import type { TestDb } from './testing.ts';

describe('db', () => {
  let t: TestDb;
  beforeEach(async () => {
    t = await createTestDb({ prefix: 'dbtest' });
  });
  afterEach(() => t.drop());

  it('db - connections resolve unqualified names in the service schema', async () => {
    await t.db.query('CREATE TABLE things (id int PRIMARY KEY)');
    const { rows } = await t.db.query<{ schema: string; path: string }>(
      `SELECT table_schema AS schema, current_setting('search_path') AS path FROM information_schema.tables WHERE table_name = 'things'`,
    );
    expect(rows).toEqual([{ schema: t.schema, path: t.schema }]);
  });

  it('db - tx commits on success and rolls back on throw', async () => {
    await t.db.query('CREATE TABLE items (id int PRIMARY KEY)');
    await t.db.tx(async (c) => {
      await c.query('INSERT INTO items VALUES ($1)', [1]);
    });
    await expect(
      t.db.tx(async (c) => {
        await c.query('INSERT INTO items VALUES ($1)', [2]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const { rows } = await t.db.query('SELECT id FROM items ORDER BY id');
    expect(rows).toEqual([{ id: 1 }]);
  });

  it('db - a failed statement rolls back the whole transaction and the pool stays usable', async () => {
    await t.db.query('CREATE TABLE uniq (id int PRIMARY KEY)');
    const err = await t.db
      .tx(async (c) => {
        await c.query('INSERT INTO uniq VALUES (1)');
        await c.query('INSERT INTO uniq VALUES (1)');
      })
      .catch((e: unknown) => e);
    expect(isUniqueViolation(err)).toBe(true);
    expect((await t.db.query('SELECT count(*)::int AS n FROM uniq')).rows).toEqual([{ n: 0 }]);
  });

  it('db - serializable transactions are retried after a serialization failure', async () => {
    await t.db.query('CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL)');
    await t.db.query('INSERT INTO acct VALUES (1, 0)');
    // Two concurrent read-modify-write transactions on the same row: under
    // SERIALIZABLE one of them fails with 40001 and must be re-run.
    let attempts = 0;
    const bump = () =>
      t.db.tx(
        async (c) => {
          attempts++;
          const { rows } = await c.query<{ n: number }>('SELECT n FROM acct WHERE id = 1');
          await new Promise((r) => setTimeout(r, 50));
          await c.query('UPDATE acct SET n = $1 WHERE id = 1', [(rows[0]?.n ?? 0) + 1]);
        },
        { isolation: 'serializable', retries: 5, retryBaseMs: 5 },
      );
    await Promise.all([bump(), bump()]);
    expect((await t.db.query('SELECT n FROM acct')).rows).toEqual([{ n: 2 }]);
    expect(attempts).toBeGreaterThan(2);
  });

  it('db - gives up with TransactionRetryExhaustedError when every attempt conflicts', async () => {
    const serializationFailure = Object.assign(new Error('could not serialize access'), { code: '40001' });
    expect(isRetryable(serializationFailure)).toBe(true);
    let attempts = 0;
    const err = await t.db
      .tx(
        async () => {
          attempts++;
          throw serializationFailure;
        },
        { retries: 2, retryBaseMs: 1 },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransactionRetryExhaustedError);
    expect(attempts).toBe(3);
  });

  it('db - refuses schema names that are not plain identifiers', () => {
    for (const bad of ['Public', 'a;drop', 'x y', '', '1abc', 'a'.repeat(64), 'a"b']) {
      expect(() => createDb({ url: testDatabaseUrl(), schema: bad, applicationName: 't' })).toThrow(InvalidIdentifierError);
    }
  });

  it('db - withClient keeps one session for its callback', async () => {
    const key = Date.now();
    const pids = await t.db.withClient(async (c) => {
      await c.query('SELECT pg_advisory_lock($1)', [key]);
      const a = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      const held = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = $1`, [a])).rows[0]?.n;
      await c.query('SELECT pg_advisory_unlock($1)', [key]);
      const b = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
      return { a, b, held };
    });
    expect(pids.a).toBe(pids.b);
    expect(pids.held).toBe(1);
  });

  it('db - ping answers and close ends the pool', async () => {
    const db = createDb({ url: testDatabaseUrl(), schema: t.schema, applicationName: 'ping-test' });
    await expect(db.ping()).resolves.toBeUndefined();
    await db.close();
    await expect(db.ping()).rejects.toThrow();
  });

  it('db - the test kit drops its schema', async () => {
    const other = await createTestDb({ prefix: 'dbtest' });
    await other.db.query('CREATE TABLE x (id int)');
    await other.drop();
    const { rows } = await t.db.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [other.schema]);
    expect(rows).toEqual([]);
    await expect(other.drop()).resolves.toBeUndefined();
    await dropSchema(testDatabaseUrl(), uniqueSchemaName('dbtest'));
  });
});
