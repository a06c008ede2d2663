import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDb, migrate, migrationLockKey, MigrationError } from './index.ts';
import { createTestDb, dropSchema, testDatabaseUrl, uniqueSchemaName } from './testing.ts';
import type { TestDb } from './testing.ts';

const good = fileURLToPath(new URL('./__fixtures__/migrations', import.meta.url));
const bad = fileURLToPath(new URL('./__fixtures__/bad', import.meta.url));

describe('migrate', () => {
  let t: TestDb;
  beforeEach(async () => {
    t = await createTestDb({ prefix: 'migtest' });
  });
  afterEach(() => t.drop());

  it('migrate - applies pending migrations once and records them in the schema', async () => {
    expect(await migrate({ db: t.db, dir: good })).toEqual({ applied: ['0001_widgets', '0002_counter'] });
    expect(await migrate({ db: t.db, dir: good })).toEqual({ applied: [] });
    const { rows } = await t.db.query('SELECT name FROM pgmigrations ORDER BY id');
    expect(rows.map((r) => r['name'])).toEqual(['0001_widgets', '0002_counter']);
    await t.db.query(`INSERT INTO widgets VALUES (1, 'a')`);
  });

  it('migrate - creates a missing schema, and two replicas starting at once apply each migration once', async () => {
    const schema = uniqueSchemaName('migtest');
    const url = testDatabaseUrl();
    const a = createDb({ url, schema, applicationName: 'replica-a' });
    const b = createDb({ url, schema, applicationName: 'replica-b' });
    try {
      const results = await Promise.all([migrate({ db: a, dir: good }), migrate({ db: b, dir: good })]);
      const applied = results.flatMap((r) => r.applied).sort();
      expect(applied).toEqual(['0001_widgets', '0002_counter']);
      expect((await a.query('SELECT count(*)::int AS n FROM pgmigrations')).rows).toEqual([{ n: 2 }]);
    } finally {
      await a.close();
      await b.close();
      await dropSchema(url, schema);
    }
  });

  it('migrate - a failing migration rolls back the batch and keeps what was applied before', async () => {
    await migrate({ db: t.db, dir: good });
    await t.db.query(`INSERT INTO widgets VALUES (7, 'kept')`);
    const other = await createTestDb({ prefix: 'migtest' });
    try {
      const err = await migrate({ db: other.db, dir: bad }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MigrationError);
      // Single transaction: neither 0001 nor 0002 is left behind.
      const { rows } = await other.db.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('widgets', 'gadgets')`,
        [other.schema],
      );
      expect(rows).toEqual([]);
    } finally {
      await other.drop();
    }
    expect((await t.db.query('SELECT name FROM widgets')).rows).toEqual([{ name: 'kept' }]);
  });

  it('migrate - the test kit drops its schema when migrating it fails', async () => {
    const prefix = uniqueSchemaName('mf');
    await expect(createTestDb({ prefix, migrationsDir: bad })).rejects.toBeInstanceOf(MigrationError);
    const { rows } = await t.db.query('SELECT schema_name FROM information_schema.schemata WHERE starts_with(schema_name, $1)', [prefix]);
    expect(rows).toEqual([]);
  });

  it('migrate - a missing folder is a MigrationError naming it', async () => {
    await expect(migrate({ db: t.db, dir: '/nonexistent/migrations' })).rejects.toThrow(/\/nonexistent\/migrations/);
  });

  it('migrate - lock keys differ per schema and fit a safe integer', () => {
    const k1 = migrationLockKey('data');
    const k2 = migrationLockKey('trainer');
    expect(k1).not.toBe(k2);
    expect(Number.isSafeInteger(k1)).toBe(true);
    expect(migrationLockKey('data')).toBe(k1);
  });
});
