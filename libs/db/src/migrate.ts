/**
 * Per-service migrations with node-pg-migrate. Each service keeps its files
 * in its own folder (`NNNN_name.sql`, or `.ts`/`.js` exporting up/down) and
 * its own bookkeeping table inside its own schema, so services never share
 * migration state.
 *
 * Two replicas starting at once: the runner takes a session-level advisory
 * lock derived from the schema name in "wait" mode before it creates the
 * schema, so the second replica blocks until the first has finished and then
 * finds nothing left to run. Different services lock different keys and
 * migrate in parallel.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { runner } from 'node-pg-migrate';
import { poolOf } from './db.ts';
import { assertIdentifier, MigrationError } from './errors.ts';
import type { Db } from './types.ts';

export interface MigrateOptions {
  db: Db;
  /** Defaults to db.schema. */
  schema?: string;
  /** Folder holding the service's migration files. */
  dir: string;
  /** Bookkeeping table inside the schema. Default 'pgmigrations'. */
  table?: string;
  /** Receives the runner's progress lines. Default: silent. */
  log?: (line: string) => void;
}

export interface MigrateResult {
  /** Names of the migrations applied by this call (empty when up to date). */
  applied: string[];
}

/** A stable 48-bit advisory-lock key for a schema (fits a JS safe integer and a pg bigint). */
export function migrationLockKey(schema: string): number {
  const digest = createHash('sha256').update(`flywheel.migrate:${schema}`).digest();
  return digest.readUIntBE(0, 6);
}

/**
 * Creates the schema if missing and applies every pending migration in `dir`
 * in one transaction. A failing migration rolls them all back and throws
 * MigrationError; what was applied by earlier calls is untouched.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const schema = assertIdentifier(options.schema ?? options.db.schema, 'schema name');
  const table = assertIdentifier(options.table ?? 'pgmigrations', 'migrations table name');
  const isDir = await stat(options.dir).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw new MigrationError(schema, `migrations folder ${options.dir} does not exist`);
  const log = options.log ?? (() => undefined);
  const client = await poolOf(options.db).connect();
  let broken: Error | undefined;
  try {
    const applied = await runner({
      dbClient: client,
      dir: options.dir,
      direction: 'up',
      schema,
      createSchema: true,
      migrationsSchema: schema,
      migrationsTable: table,
      checkOrder: true,
      singleTransaction: true,
      lockValue: migrationLockKey(schema),
      advisoryLockMode: 'wait',
      log,
      logger: { debug: log, info: log, warn: log, error: log },
    });
    return { applied: applied.map((m) => m.name) };
  } catch (err) {
    broken = err instanceof Error ? err : new Error(String(err));
    const message = err instanceof Error ? err.message : String(err);
    throw new MigrationError(schema, message, { cause: err });
  } finally {
    // After a failure the session may still hold the lock or be mid-transaction:
    // destroy the connection rather than return it to the pool.
    client.release(broken);
  }
}
