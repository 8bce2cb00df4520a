/*
 * `listkeeper restore FILE` of a backup made with pg_dump (backup-pgdump.ts), into an empty
 * database:
 *
 *   1. a pg_restore on the PATH of pg_dump's major or later, or a refusal naming what to install;
 *   2. our transaction holds the migrations' lock (no process migrates the database meanwhile) and
 *      sees that the database is empty;
 *   3. the 'P' frames, each checked against its own sha256 before pg_restore reads it, are
 *      streamed into `pg_restore --single-transaction --exit-on-error` (it makes the schema, loads
 *      the rows, sets the sequences, builds the indexes and commits); the trailer's checksums of
 *      the archive and of the whole file must match;
 *   4. the check, as for the listkeeper format: the restored schema_migrations are the header's,
 *      and each table read back with the backup's query gives the backup's row count and sha256.
 *
 * pg_restore commits on its own before the check can read what it restored. So any failure after
 * it started (a damaged or truncated file, pg_restore's error, a failed check, a signal) ends with
 * pg_restore stopped and every object that was not in the database before dropped again
 * (emptyAgain): the database is left as empty as it was found, or the error says it is not.
 * A restore killed outright (kill -9) cannot do that: the schema UNCHECKED_RESTORE (migrate.ts),
 * made before pg_restore runs and dropped with the check's commit, then stays, and no listkeeper
 * process starts on that database.
 */

import crypto from 'node:crypto';
import { once } from 'node:events';
import type pg from 'pg';
import { AppError, InvalidInput, TemporaryFailure } from '../errors.ts';
import { BackupFileError, FRAME_DIGEST, parseRecord, type BackupTrailer, type FrameReader, type PgDumpHeader } from './backup-format.ts';
import { lockMigrationsForTransaction, UNCHECKED_RESTORE } from './migrate.ts';
import { findPgTool, onInterrupt, runPgTool, toolFailure, type ToolRun } from './pg-tools.ts';
import { dedicatedClient, type Queryable } from './pool.ts';
import { checkRestoredTables, refuseNonEmpty, type RestoreProgress, type RestoreResult } from './restore-check.ts';

const TRUNCATED = 'the backup file is truncated (it ends before its trailer): it was not written to the end';
/** Emptying the database again waits at most this for a lock (a pg_restore session still ending). */
const CLEANUP_LOCK_WAIT = '60s';

export async function restorePgDump(
  pool: pg.Pool,
  reader: FrameReader,
  header: PgDumpHeader,
  opts: { url?: string; onProgress?: (p: RestoreProgress) => void },
  started: number,
): Promise<RestoreResult> {
  if (!opts.url) throw new Error('a backup made with pg_dump needs the server\'s URL to restore');
  const tool = await findPgTool('pg_restore');
  if (!tool || tool.major === null || tool.major < header.pg_dump_major) {
    const found = !tool ? 'there is none on the PATH' : tool.major === null ? `the PATH's pg_restore is not PostgreSQL's (it says "${tool.version}")` : `the PATH's is version ${tool.version}`;
    throw new InvalidInput(
      `this backup was made with pg_dump ${header.pg_dump_version}: restoring it needs pg_restore ${header.pg_dump_major} or later, and ${found}; ` +
        `install PostgreSQL ${header.pg_dump_major}'s client programs or later (Debian: postgresql-client-${header.pg_dump_major})`,
      'no_matching_pg_restore',
    );
  }
  const rowsTotal = header.tables.reduce((n, t) => n + t.rows, 0);
  const report = (phase: RestoreProgress['phase'], table: string | null, tableIndex: number, rowsDone: number) =>
    opts.onProgress?.({ phase, table, tableIndex, tables: header.tables.length, rowsDone, rowsTotal, bytes: reader.bytes });

  const appName = `listkeeper:${process.pid}:restore`;
  let interrupt!: (err: Error) => void;
  const interrupted = new Promise<never>((_resolve, reject) => (interrupt = reject));
  interrupted.catch(() => undefined);
  const stopListening = onInterrupt((signal) => interrupt(new TemporaryFailure(`interrupted by ${signal}`, 'interrupted')));
  const client = await pool.connect();
  let before: ObjectsBefore | undefined;
  let run: ToolRun | undefined;
  try {
    await client.query('begin');
    await client.query('set local idle_in_transaction_session_timeout = 0');
    await lockMigrationsForTransaction(client);
    await refuseNonEmpty(client);
    before = await objectsNow(client);
    // Committed now, by a connection of its own (pg_restore commits before the check can run, and
    // the pool may have no other): a restore killed before its check leaves it, and nothing starts
    // on that database.
    await markUnchecked(opts.url);

    run = runPgTool('pg_restore', ['--exit-on-error', '--single-transaction', '--no-owner', '--no-privileges'], opts.url, appName, { stdin: 'pipe', stdout: 'ignore' });
    const trailer = await Promise.race([feed(reader, run, () => report('loading', 'pg_restore', 0, 0)), interrupted]);
    const end = await Promise.race([run.ended, interrupted]);
    if (end.code !== 0) throw new InvalidInput(toolFailure('pg_restore', run, end), 'pg_restore_failed');
    if (trailer === 'pg_restore ended') throw new BackupFileError('the backup file is corrupt: pg_restore finished before the end of the pg_dump archive');

    const ends = trailer.tables;
    const same = ends.length === header.tables.length && ends.every((e, i) => e.table === header.tables[i].name && e.rows === header.tables[i].rows);
    if (!same) throw new BackupFileError('the backup file is corrupt: its trailer does not list the tables its header does');
    const migrations = (await client.query<{ name: string }>('select name from schema_migrations order by name')).rows.map((r) => r.name);
    if (JSON.stringify(migrations) !== JSON.stringify(header.migrations)) {
      throw new InvalidInput('check failed: the restored schema_migrations differ from the migrations the backup\'s header lists', 'restore_check_failed');
    }
    await Promise.race([checkRestoredTables(client, header.tables, ends, (table, i, done) => report('checking', table, i, done)), interrupted]);
    await client.query(`drop schema ${UNCHECKED_RESTORE}`);
    await client.query('commit');
    client.release();
    return { header, tables: ends, seconds: (performance.now() - started) / 1000 };
  } catch (err) {
    await run?.stop();
    // Our connection may be inside a COPY or an aborted transaction: close it (its lock goes with it).
    client.release(err as Error);
    if (before) await emptyAgain(pool, before, appName, err as Error);
    throw err;
  } finally {
    stopListening();
  }
}

async function markUnchecked(url: string): Promise<void> {
  const marker = dedicatedClient(url, 'restore');
  await marker.connect();
  try {
    await marker.query(`create schema ${UNCHECKED_RESTORE}`);
  } finally {
    await marker.end().catch(() => undefined);
  }
}

/**
 * Streams the 'P' frames into pg_restore's stdin, each checked before it goes, and reads the
 * trailer; returns it, or 'pg_restore ended' when pg_restore ended before taking all.
 */
async function feed(reader: FrameReader, run: ToolRun, progress: () => void): Promise<BackupTrailer | 'pg_restore ended'> {
  const stdin = run.child.stdin!;
  const archive = crypto.createHash('sha256');
  let bytes = 0;
  let last = 0;
  for (;;) {
    const f = await reader.next();
    if (!f) throw new BackupFileError(TRUNCATED);
    if (f.kind === 'T') {
      const trailer = parseRecord<BackupTrailer | null>(f.payload, 'its trailer');
      // The trailer is not under the file's checksum (it holds it): its shape is checked before it
      // is read, or a hand-made one stopped the restore with JavaScript's own words.
      if (!trailer || typeof trailer !== 'object' || !Array.isArray(trailer.tables) || !trailer.tables.every((t) => t && typeof t === 'object') || typeof trailer.sha256 !== 'string') {
        throw new BackupFileError('the backup file is corrupt: its trailer is not one listkeeper writes');
      }
      if (trailer.pg_dump?.bytes !== bytes || trailer.pg_dump.sha256 !== archive.digest('hex') || trailer.sha256 !== reader.digest()) {
        throw new BackupFileError('the backup file is corrupt: its checksum does not match its contents');
      }
      if ((await reader.next()) !== null) throw new BackupFileError('the backup file is corrupt: it goes on after its trailer');
      stdin.end();
      return trailer;
    }
    if (f.kind !== 'P' || f.payload.length < FRAME_DIGEST) throw new BackupFileError(`the backup file is corrupt: a ${f.kind} record inside the pg_dump archive`);
    const data = f.payload.subarray(FRAME_DIGEST);
    if (!crypto.createHash('sha256').update(data).digest().equals(f.payload.subarray(0, FRAME_DIGEST))) {
      throw new BackupFileError(`the backup file is corrupt: the pg_dump archive's bytes from ${bytes} do not match their checksum`);
    }
    archive.update(data);
    bytes += data.length;
    if (run.child.exitCode !== null || run.child.signalCode !== null) return 'pg_restore ended';
    if (!stdin.write(data)) {
      // A pipe pg_restore closed (it failed) rejects the wait for 'drain': its exit says why.
      const ended = await Promise.race([once(stdin, 'drain').then(() => false, () => true), run.ended.then(() => true)]);
      if (ended) return 'pg_restore ended';
    }
    if (performance.now() - last > 500) {
      last = performance.now();
      progress();
    }
  }
}

interface ObjectsBefore {
  schemas: string[];
  extensions: string[];
  /** `type identity` of each object in those schemas */
  objects: Set<string>;
}

const SYSTEM_SCHEMA = `n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'`;

/** What the database holds before pg_restore runs: emptyAgain drops all else. */
async function objectsNow(db: Queryable): Promise<ObjectsBefore> {
  const schemas = (await db.query<{ name: string }>(`select n.nspname as name from pg_namespace n where ${SYSTEM_SCHEMA}`)).rows.map((r) => r.name);
  const extensions = (await db.query<{ name: string }>('select extname as name from pg_extension')).rows.map((r) => r.name);
  const objects = new Set((await schemaObjects(db, schemas)).map((o) => `${o.type} ${o.identity}`));
  return { schemas, extensions, objects };
}

/** Every object that belongs to one of `schemas` (by its namespace), tables first. */
async function schemaObjects(db: Queryable, schemas: string[]): Promise<{ type: string; identity: string }[]> {
  const { rows } = await db.query<{ type: string; identity: string }>(
    `select o.type, o.identity
       from pg_namespace n
       join pg_depend d on d.refclassid = 'pg_namespace'::regclass and d.refobjid = n.oid and d.deptype = 'n'
       cross join lateral pg_identify_object(d.classid, d.objid, 0) o
      where n.nspname = any($1)
      order by o.type not in ('table', 'view', 'materialized view', 'foreign table'), o.type, o.identity`,
    [schemas],
  );
  return rows;
}

/** The kinds of object a listkeeper dump creates in a schema, as DROP names them (pg_identify_object's types). */
const DROPPABLE = new Set([
  'table', 'view', 'materialized view', 'foreign table', 'sequence', 'function', 'procedure', 'aggregate', 'type', 'domain', 'collation', 'conversion',
  'operator', 'operator class', 'operator family', 'statistics object', 'text search configuration', 'text search dictionary', 'text search parser', 'text search template',
]);
const DROP_KEYWORD: Record<string, string> = { 'statistics object': 'statistics' };

/**
 * Drops, in one transaction, what was not in the database before pg_restore ran (`before`): the
 * extensions and schemas it created, and its objects in the schemas that were there. A restore
 * goes only into an empty database, so that is all of the restore and nothing else. If even that
 * fails, the error says that the database is not as it was.
 */
async function emptyAgain(pool: pg.Pool, before: ObjectsBefore, appName: string, cause: Error): Promise<void> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    // pg_restore's session may outlive pg_restore while it finishes a statement: end it.
    await client.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1 and pid <> pg_backend_pid()', [appName]);
    await client.query('begin');
    await client.query(`set local lock_timeout = '${CLEANUP_LOCK_WAIT}'`);
    await lockMigrationsForTransaction(client);
    for (const e of (await client.query<{ name: string }>('select extname as name from pg_extension')).rows) {
      if (!before.extensions.includes(e.name)) await client.query(`drop extension if exists ${quote(e.name)} cascade`);
    }
    const schemas = (await client.query<{ name: string }>(`select n.nspname as name from pg_namespace n where ${SYSTEM_SCHEMA}`)).rows.map((r) => r.name);
    for (const s of schemas) if (!before.schemas.includes(s)) await client.query(`drop schema if exists ${quote(s)} cascade`);
    // One at a time, each with what depends on it, until none is left that was not there before.
    const dropped = new Set<string>();
    for (;;) {
      const left = (await schemaObjects(client, before.schemas)).find((o) => !before.objects.has(`${o.type} ${o.identity}`));
      if (!left) break;
      const key = `${left.type} ${left.identity}`;
      if (!DROPPABLE.has(left.type) || dropped.has(key)) throw new Error(`cannot drop ${key}`);
      dropped.add(key);
      await client.query(`drop ${DROP_KEYWORD[left.type] ?? left.type} if exists ${left.identity} cascade`);
    }
    await client.query('commit');
  } catch (err) {
    failed = err as Error;
    await client.query('rollback').catch(() => undefined);
  } finally {
    client.release(failed);
  }
  if (failed) {
    throw new AppError(
      `${cause.message}; and dropping what pg_restore had restored failed too (${failed.message}): the database holds part of a restore, drop it and create it again before restoring`,
      'restore_left_partial',
      500,
      451,
    );
  }
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
