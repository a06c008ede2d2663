/**
 * Test kit: each test gets its own freshly created, uniquely named schema
 * (optionally migrated) and drops it afterwards, so test files run in
 * parallel against one Postgres without seeing each other.
 *
 *   let t: TestDb;
 *   beforeEach(async () => { t = await createTestDb({ migrationsDir }); });
 *   afterEach(() => t.drop());
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDb } from './db.ts';
import { assertIdentifier } from './errors.ts';
import { migrate } from './migrate.ts';
import type { Db } from './types.ts';

export interface TestDbOptions {
  /** Default process.env.DATABASE_URL. */
  url?: string;
  /** Schema name prefix; a random suffix is appended. Default 'test'. */
  prefix?: string;
  /** Apply the migrations in this folder to the new schema. */
  migrationsDir?: string;
}

export interface TestDb {
  db: Db;
  schema: string;
  url: string;
  /** Closes the pool and drops the schema with everything in it. Idempotent. */
  drop(): Promise<void>;
}

/** A unique schema name such as `test_1a2b3c4d5e6f`. */
export function uniqueSchemaName(prefix = 'test'): string {
  return assertIdentifier(`${prefix}_${randomBytes(6).toString('hex')}`, 'schema name');
}

export function testDatabaseUrl(): string {
  const url = process.env['DATABASE_URL'];
  if (!url) throw new Error('DATABASE_URL is not set (source scripts/env.sh)');
  return url;
}

export async function createTestDb(options: TestDbOptions = {}): Promise<TestDb> {
  const url = options.url ?? testDatabaseUrl();
  const schema = uniqueSchemaName(options.prefix);
  const db = createDb({ url, schema, applicationName: `test:${schema}`, max: 4 });
  try {
    await db.query(`CREATE SCHEMA ${schema}`);
    if (options.migrationsDir) await migrate({ db, dir: options.migrationsDir });
  } catch (err) {
    await db.close().catch(() => undefined);
    await dropSchema(url, schema).catch(() => undefined);
    throw err;
  }
  let dropped = false;
  return {
    db,
    schema,
    url,
    async drop() {
      if (dropped) return;
      dropped = true;
      await db.close();
      await dropSchema(url, schema);
    },
  };
}

/** Drops a schema through a short-lived connection of its own. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${assertIdentifier(schema, 'schema name')} CASCADE`);
  } finally {
    await client.end();
  }
}
