import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { log } from '../log.ts';
import { isConnectionLoss, type Queryable, withTimeout } from './pool.ts';
import { versionRefusal } from './server-settings.ts';

const SQL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sql');
// Any constant works; it only has to be the same in every listkeeper process.
export const MIGRATION_LOCK = 7_283_001;
// How long one migration may wait for a table's lock, and how many times it tries.
const LOCK_TIMEOUT_MS = 5_000;
const LOCK_ATTEMPTS = 6;

export interface MigrateOptions {
  /** the folder of numbered files (tests give their own) */
  dir?: string;
  lockTimeoutMs?: number;
  attempts?: number;
  /** ends the wait for another process's migration (serve stopped by a signal while it waits) */
  signal?: AbortSignal;
}

/**
 * Applies the numbered files in sql/ that have not run yet, each in its own transaction, under a
 * session advisory lock: when two processes start together, one migrates and the other waits,
 * then finds nothing left to do. A failure (a file PostgreSQL refuses, a lost connection) throws
 * one error naming what failed; the connection is then closed rather than pooled, which also
 * frees the lock if unlocking could not be done.
 *
 * Migrations run while the previous release still serves (docs/operations.md, rolling upgrades),
 * so each one takes its locks under lock_timeout: a migration waiting behind a long transaction
 * would otherwise queue every reader and writer of that table behind itself. It gives up after
 * the timeout, rolls back and tries again a few times, then fails naming what it waited for.
 * Names in schema_migrations that this release has no file for are a newer release's: left alone.
 */
export async function migrate(pool: pg.Pool, opts: MigrateOptions = {}): Promise<string[]> {
  const dir = opts.dir ?? SQL_DIR;
  const lockTimeoutMs = opts.lockTimeoutMs ?? LOCK_TIMEOUT_MS;
  const attempts = opts.attempts ?? LOCK_ATTEMPTS;
  const client = await pool.connect().catch((err: Error) => {
    throw new Error(`cannot connect to the database to migrate it: ${err.message}`, { cause: err });
  });
  const applied: string[] = [];
  let failed: Error | undefined;
  let file: string | undefined;
  let pid = 0;
  const cancel = () => void pool.query('select pg_cancel_backend($1)', [pid]).catch(() => undefined);
  try {
    // A signal also cancels the statement running (a concurrent index build may wait for hours
    // for an older transaction): each file is applied whole or not at all, so it can be stopped.
    ({ rows: [{ pid }] } = await client.query<{ pid: number }>('select pg_backend_pid() as pid'));
    opts.signal?.addEventListener('abort', cancel, { once: true });
    // Before anything touches the schema: a server too old is refused in one line.
    const { rows: [server] } = await client.query<{ num: number; version: string }>(
      `select current_setting('server_version_num')::int as num, current_setting('server_version') as version`);
    const refusal = versionRefusal(server.num, server.version);
    if (refusal) throw new Error(refusal);
    await takeMigrationLock(client, opts.signal);
    if (await uncheckedRestoreLeft(client)) throw new Error(UNCHECKED_RESTORE_LEFT);
    await createMigrationsTable(client);
    const { rows } = await client.query<{ name: string }>('select name from schema_migrations');
    const done = new Set(rows.map((r) => r.name));
    for (file of migrationFiles(dir)) {
      if (done.has(file)) continue;
      if (opts.signal?.aborted) throw new Error(`stopped (${String(opts.signal.reason)}) before it was applied`);
      const text = fs.readFileSync(path.join(dir, file), 'utf8');
      const outside = NO_TRANSACTION.test(text);
      for (let attempt = 1; ; attempt++) {
        try {
          if (outside) {
            await applyOutsideTransaction(pool, client, pid, file, text);
            break;
          }
          await client.query('begin');
          await client.query(`select set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`]);
          await applyMigration(client, file, dir);
          await client.query('commit');
          break;
        } catch (err) {
          if (!outside) await client.query('rollback').catch(() => undefined);
          // 55P03: lock_not_available, the lock_timeout above
          if ((err as { code?: string }).code !== '55P03') throw err;
          if (attempt >= attempts) {
            throw new Error(
              `could not take its locks within ${lockTimeoutMs} ms, ${attempts} times (${(err as Error).message}): ` +
                'a long transaction holds a table it changes (look in pg_stat_activity); nothing of it was applied, and the next start tries again',
              { cause: err },
            );
          }
          log.warn({ migration: file, attempt, lockTimeoutMs }, 'migration waited too long for a lock; rolled back, trying again');
          await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 500 * attempt)));
        }
      }
      applied.push(file);
      log.info({ migration: file }, 'migration applied');
    }
    file = undefined;
    // A later release migrated this database: running beside it is a rolling upgrade, and for
    // long it is an instance left behind (it would fail only where the schema moved on).
    const newer = laterMigrations([...done], migrationFiles(dir));
    if (newer.length > 0) log.warn({ newer }, `${newerSchema(newer)}; upgrade this instance once the rolling upgrade is done`);
  } catch (err) {
    failed = err as Error;
    const what = file ? `migration ${file} failed` : 'migrating the database failed';
    const lost = isConnectionLoss(err) ? ' (the database connection was lost; run it again: each migration is applied whole or not at all)' : '';
    throw new Error(`${what}: ${failed.message}${lost}`, { cause: err });
  } finally {
    opts.signal?.removeEventListener('abort', cancel);
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch((err: Error) => {
      failed ??= err;
    });
    client.release(failed);
  }
  return applied;
}

// How often a process that found another one migrating asks for the lock again.
const LOCK_POLL_MS = 100;
// How often it says again that it waits, and for whom.
const HOLDER_REPORT_MS = 60_000;

interface LockHolder {
  pid: number;
  application: string;
  client: string | null;
  state: string | null;
  /** seconds since its last statement started, or since its state last changed when idle */
  seconds: number;
  query: string;
}

/** The session holding the migration lock, from pg_locks and pg_stat_activity (null once it is gone). */
async function migrationLockHolder(client: pg.PoolClient): Promise<LockHolder | null> {
  const { rows } = await client.query<LockHolder>(
    `select a.pid, a.application_name as application, host(a.client_addr) as client, a.state,
            extract(epoch from now() - case when a.state = 'active' then a.query_start else a.state_change end)::int as seconds,
            left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120) as query
       from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.granted and l.classid = 0 and l.objid = $1 and l.objsubid = 1
      limit 1`,
    [MIGRATION_LOCK],
  );
  return rows[0] ?? null;
}

function holderText(h: LockHolder): string {
  const who = `pid ${h.pid}${h.application ? ` (${h.application})` : ''}${h.client ? ` from ${h.client}` : ''}`;
  return h.state === 'active' ? `${who}, running for ${h.seconds} s: ${h.query}` : `${who}, ${h.state ?? 'state unknown'} for ${h.seconds} s`;
}

/**
 * Takes the session's migration lock, asking again and again rather than waiting in one statement:
 * a statement waiting in pg_advisory_lock holds a snapshot, and the holder's `create index
 * concurrently` waits for every older snapshot to go, so each would wait for the other and
 * PostgreSQL would end one of them as a deadlock. Between asks this session holds no snapshot.
 */
async function takeMigrationLock(client: pg.PoolClient, signal?: AbortSignal): Promise<void> {
  // A connection ended between asks reports why (e.g. terminated by an administrator) as an
  // event; the next query would only say "not queryable".
  let lost: Error | undefined;
  const onError = (err: Error) => (lost ??= err);
  client.on('error', onError);
  try {
    for (let saidAt = -Infinity; ; ) {
      const { rows } = await client.query<{ got: boolean }>('select pg_try_advisory_lock($1) as got', [MIGRATION_LOCK]);
      if (rows[0].got) return;
      // Said at once and again every minute, naming the holder: one that hangs (a process stopped
      // with its connection open, a statement stuck behind a lock) is found without guessing.
      if (performance.now() - saidAt >= HOLDER_REPORT_MS) {
        const holder = await migrationLockHolder(client);
        log.info({ holder }, `another process is migrating the database: waiting for it to finish${holder ? ` (${holderText(holder)})` : ''}`);
        saidAt = performance.now();
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
      if (lost) throw lost;
      // That migration may take an hour (an index built concurrently): the wait can be ended.
      if (signal?.aborted) throw new Error(`stopped (${String(signal.reason)}) while another process was migrating the database; nothing was applied`);
    }
  } finally {
    client.removeListener('error', onError);
  }
}

/**
 * The database's migrations against this release's files in sql/: `pending`, the files it has not
 * applied (all of them when it was never migrated), which readiness (/healthz?ready) and
 * `listkeeper doctor` report and only migrate() applies; `newer`, the applied ones this release has
 * no file for, a newer release's. This release runs on such a schema (a rolling upgrade needs it
 * to), but says so: it is then the older code, and one more release older would not be told apart.
 */
export async function migrationState(db: Queryable, timeoutMs?: number): Promise<{ pending: string[]; newer: string[] }> {
  const { rows } = await db.query<{ name: string }>(withTimeout('select name from schema_migrations order by name', timeoutMs)).catch((err: { code?: string }) => {
    // 42P01: no schema_migrations yet (a database nothing has migrated)
    if (err.code === '42P01') return { rows: [] as { name: string }[] };
    throw err;
  });
  const files = migrationFiles();
  const done = new Set(rows.map((r) => r.name));
  return { pending: files.filter((f) => !done.has(f)), newer: laterMigrations(rows.map((r) => r.name), files) };
}

/** The applied migrations this release has no file for (a later release's), in order. */
function laterMigrations(applied: string[], files: string[]): string[] {
  const known = new Set(files);
  return applied.filter((name) => !known.has(name)).sort();
}

/** How doctor, `migrate` and every migrating start say that a later release migrated the database. */
export function newerSchema(newer: string[]): string {
  return `the database is newer than this listkeeper: ${newer.length} migration(s) of a later release (${newer.join(', ')})`;
}

/**
 * An empty schema by this name is made, and committed, before pg_restore runs (restore-pgdump.ts):
 * pg_restore commits on its own, and the check comes after. The restore drops it in the
 * transaction that ends its check, and with everything else when it fails; a restore killed
 * (kill -9, a machine that went down) in between leaves it, and with it a database that no
 * listkeeper process starts on, and that restore names rather than calling it "not empty".
 */
export const UNCHECKED_RESTORE = 'listkeeper_restore_unchecked';

/** What migrate() and restore say of a database an unfinished restore left (UNCHECKED_RESTORE). */
export const UNCHECKED_RESTORE_LEFT =
  'a restore into this database did not finish (`listkeeper restore` was stopped after pg_restore committed and before its check): ' +
  'drop the database, create it again and restore again';

/** Whether an unfinished restore left its marker (UNCHECKED_RESTORE) in this database. */
export async function uncheckedRestoreLeft(db: Queryable): Promise<boolean> {
  const { rowCount } = await db.query('select 1 from pg_namespace where nspname = $1', [UNCHECKED_RESTORE]);
  return (rowCount ?? 0) > 0;
}

/** Holds off every migrating process until the caller's transaction ends (restore loads a schema). */
export async function lockMigrationsForTransaction(client: Queryable): Promise<void> {
  await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
}

export async function createMigrationsTable(client: Queryable): Promise<void> {
  // Looked for first: a database that takes no writes (a standby not yet promoted,
  // default_transaction_read_only) refuses CREATE TABLE IF NOT EXISTS even when the table is
  // there, and serve must start on one to keep the archive readable.
  const { rows } = await client.query<{ there: boolean }>(`select to_regclass('schema_migrations') is not null as there`);
  if (rows[0].there) return;
  await client.query(`create table if not exists schema_migrations (
      name text primary key, applied_at timestamptz not null default now())`);
}

/**
 * Runs one file of sql/ and records it, in the caller's transaction (restore runs them all in one).
 * A file meant to run outside a transaction (an index built concurrently) is run as a plain build
 * here: inside a transaction there is no other way, and restore builds on tables not yet loaded.
 */
export async function applyMigration(client: Queryable, file: string, dir = SQL_DIR): Promise<void> {
  const text = fs.readFileSync(path.join(dir, file), 'utf8');
  await client.query(NO_TRANSACTION.test(text) ? text.replace(/\bconcurrently\b/gi, '') : text);
  await client.query('insert into schema_migrations (name) values ($1)', [file]);
}

/**
 * A file whose first line is `-- listkeeper: no transaction` holds one statement that cannot run in
 * a transaction: `create index concurrently if not exists …` on a large table, which does not block
 * writes while it builds. It must be safe to run again (`if not exists`): a crash between the
 * statement and its record in schema_migrations runs it again at the next start. An interrupted
 * concurrent build leaves its index invalid, and `if not exists` would keep it: it is dropped first.
 *
 * Such a file runs without lock_timeout. A concurrent build or drop blocks no reader or writer of
 * its table (its lock conflicts only with DDL and VACUUM), but before it ends it waits for every
 * transaction older than it, whatever that transaction reads: under the timeout, a `listkeeper
 * backup` in progress (one snapshot for minutes) made each attempt build the index and give up,
 * and start-up failed for as long as the backup ran. It waits, and says which sessions it waits for.
 */
const NO_TRANSACTION = /^-- listkeeper: no transaction\s*\n/;
// How often a statement run outside a transaction that waits for other sessions says which.
const WAIT_REPORT_MS = 30_000;

async function applyOutsideTransaction(pool: pg.Pool, client: pg.PoolClient, pid: number, file: string, text: string): Promise<void> {
  // serve's connections give up on a lock after LOCK_TIMEOUT_MS (db/pool.ts): this one waits.
  const { rows: [{ lock_timeout: before }] } = await client.query<{ lock_timeout: string }>('show lock_timeout');
  await client.query(`set lock_timeout = 0`);
  const report = setInterval(() => void reportWaits(pool, pid, file), WAIT_REPORT_MS);
  try {
    const index = /create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*)/i.exec(text)?.[1];
    if (index) {
      const { rows } = await client.query<{ drop: string }>(
        `select format('drop index concurrently if exists %s', c.oid::regclass) as drop
           from pg_class c join pg_index i on i.indexrelid = c.oid
          where c.relname = $1 and c.relnamespace = current_schema()::regnamespace and not i.indisvalid`,
        [index.toLowerCase()],
      );
      for (const r of rows) {
        log.warn({ migration: file, index }, 'an earlier build of this index was interrupted and left it invalid: dropped, built again');
        await client.query(r.drop);
      }
    }
    await client.query(text);
    await client.query('insert into schema_migrations (name) values ($1)', [file]);
  } finally {
    clearInterval(report);
    await client.query(`select set_config('lock_timeout', $1, false)`, [before]).catch(() => undefined);
  }
}

/** The sessions a migration's backend waits for, in the log (from another pooled connection). */
async function reportWaits(pool: pg.Pool, pid: number, file: string): Promise<void> {
  const { rows } = await pool
    .query(
      `select pid, application_name, state, extract(epoch from now() - xact_start)::int as transaction_seconds, left(query, 200) as query
         from pg_stat_activity where pid = any(pg_blocking_pids($1))`,
      [pid],
    )
    .catch(() => ({ rows: [] }));
  if (rows.length > 0) log.warn({ migration: file, waitingFor: rows }, 'the migration waits for these sessions to end (transactions older than it)');
}

export function migrationFiles(dir = SQL_DIR): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
}
