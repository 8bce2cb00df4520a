import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { log } from '../log.ts';
import { isConnectionLoss, type Queryable, withTimeout } from './pool.ts';
import { versionRefusal } from './server-settings.ts';

const SQL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sql');
// Any constant works; it only has to be the same in every listkeeper process.
const MIGRATION_LOCK = 7_283_001;

/**
 * Applies the numbered files in sql/ that have not run yet, each in its own transaction, under a
 * session advisory lock: when two processes start together, one migrates and the other waits,
 * then finds nothing left to do. A failure (a file PostgreSQL refuses, a lost connection) throws
 * one error naming what failed; the connection is then closed rather than pooled, which also
 * frees the lock if unlocking could not be done.
 */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const client = await pool.connect().catch((err: Error) => {
    throw new Error(`cannot connect to the database to migrate it: ${err.message}`, { cause: err });
  });
  const applied: string[] = [];
  let failed: Error | undefined;
  let file: string | undefined;
  try {
    // Before anything touches the schema: a server too old is refused in one line.
    const { rows: [server] } = await client.query<{ num: number; version: string }>(
      `select current_setting('server_version_num')::int as num, current_setting('server_version') as version`);
    const refusal = versionRefusal(server.num, server.version);
    if (refusal) throw new Error(refusal);
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await createMigrationsTable(client);
    const { rows } = await client.query<{ name: string }>('select name from schema_migrations');
    const done = new Set(rows.map((r) => r.name));
    for (file of migrationFiles()) {
      if (done.has(file)) continue;
      try {
        await client.query('begin');
        await applyMigration(client, file);
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw err;
      }
      applied.push(file);
      log.info({ migration: file }, 'migration applied');
    }
    file = undefined;
  } catch (err) {
    failed = err as Error;
    const what = file ? `migration ${file} failed` : 'migrating the database failed';
    const lost = isConnectionLoss(err) ? ' (the database connection was lost; run it again: each migration is applied whole or not at all)' : '';
    throw new Error(`${what}: ${failed.message}${lost}`, { cause: err });
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch((err: Error) => {
      failed ??= err;
    });
    client.release(failed);
  }
  return applied;
}

/**
 * The files in sql/ that this database has not applied (all of them when it was never migrated):
 * readiness (/healthz?ready) and `listkeeper doctor` report them; only migrate() applies them.
 */
export async function pendingMigrations(db: Queryable, timeoutMs?: number): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(withTimeout('select name from schema_migrations', timeoutMs)).catch((err: { code?: string }) => {
    // 42P01: no schema_migrations yet (a database nothing has migrated)
    if (err.code === '42P01') return { rows: [] as { name: string }[] };
    throw err;
  });
  const done = new Set(rows.map((r) => r.name));
  return migrationFiles().filter((f) => !done.has(f));
}

/** Holds off every migrating process until the caller's transaction ends (restore loads a schema). */
export async function lockMigrationsForTransaction(client: Queryable): Promise<void> {
  await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
}

export async function createMigrationsTable(client: Queryable): Promise<void> {
  await client.query(`create table if not exists schema_migrations (
      name text primary key, applied_at timestamptz not null default now())`);
}

/** Runs one file of sql/ and records it, in the caller's transaction (restore runs them all in one). */
export async function applyMigration(client: Queryable, file: string): Promise<void> {
  await client.query(fs.readFileSync(path.join(SQL_DIR, file), 'utf8'));
  await client.query('insert into schema_migrations (name) values ($1)', [file]);
}

export function migrationFiles(): string[] {
  return fs
    .readdirSync(SQL_DIR)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
}
