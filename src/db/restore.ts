/*
 * `listkeeper restore FILE`: a backup (backup.ts) into an empty database. A backup made with
 * pg_dump goes to restore-pgdump.ts; one in the listkeeper format is restored here, in ONE
 * transaction, so that a refused or broken file leaves the database as empty as it was:
 *
 *   1. the header: a format and a schema this code knows (a backup from a newer listkeeper is refused);
 *   2. the migrations the backup's database had, exactly those (later ones run afterwards, as at start);
 *   3. foreign keys set aside, user triggers off and the tables emptied of what migrations inserted,
 *      then COPY FROM per table (the rows go in as they were: no trigger rewrites or counts them),
 *      each table's bytes checked against its sha256;
 *   4. the trailer: every table accounted for, the file's overall sha256 equal;
 *   5. sequences set, triggers back on, foreign keys added again (PostgreSQL checks every row);
 *   6. the check: each table read back with the backup's own query must give the same row count
 *      and the same sha256 as when it was backed up; then commit.
 *
 * Setting foreign keys aside (rather than session_replication_role = replica) needs no superuser:
 * the restoring role owns the tables, since its migrations created them.
 */

import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { Conflict, InvalidInput } from '../errors.ts';
import { gunzip } from '../gzip.ts';
import { backupTables, copyInSql, DERIVED_COLUMNS, DERIVING_TRIGGERS, ident } from './backup-catalog.ts';
import {
  BackupFileError,
  FORMAT_VERSION,
  FrameReader,
  isPgDumpHeader,
  parseRecord,
  PG_DUMP_FORMAT,
  type AnyBackupHeader,
  type BackupHeader,
  type BackupTable,
  type BackupTrailer,
  type TableEnd,
} from './backup-format.ts';
import { applyMigration, createMigrationsTable, lockMigrationsForTransaction, migrationFiles } from './migrate.ts';
import type { Queryable } from './pool.ts';
import { checkRestoredTables, refuseNonEmpty, type RestoreProgress, type RestoreResult } from './restore-check.ts';
import { restorePgDump } from './restore-pgdump.ts';

export type { RestoreProgress, RestoreResult };

export interface RestoreOptions {
  /** the server's URL, for pg_restore (a backup made with pg_dump) */
  url?: string;
  onProgress?: (p: RestoreProgress) => void;
}

/** Opens FILE (`-` for stdin; gzip is recognised by its first bytes, either way) and restores it. */
export async function restoreFromFile(pool: pg.Pool, file: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  let raw: Readable;
  if (file === '-') raw = process.stdin;
  else {
    try {
      const fd = fs.openSync(file, 'r');
      // Streamed, so a pipe or a device is read as it comes; a directory fails on its first read.
      if (fs.fstatSync(fd).isDirectory()) {
        fs.closeSync(fd);
        throw new InvalidInput(`${file} is a directory, not a backup file: give the file listkeeper backup wrote (or - for stdin)`, 'bad_file');
      }
      raw = fs.createReadStream('', { fd });
    } catch (err) {
      if (err instanceof InvalidInput) throw err;
      throw new InvalidInput(`cannot read ${file}: ${(err as Error).message}`);
    }
  }
  const input = await gunzipIfGzip(raw);
  try {
    return await restoreBackup(pool, input, opts);
  } finally {
    raw.destroy();
    await input.return(undefined).catch(() => undefined);
  }
}

/**
 * The stream's bytes, gunzipped when it starts as gzip does (1f 8b): every member, as `gzip -dc`
 * reads them. Bytes after the last member that are not gzip are refused (TrailingGzipGarbage,
 * FrameReader's message): listkeeper writes a backup whole and renames it, so they were added to
 * the file since, and whatever they are, restore does not guess which backup was meant.
 */
async function gunzipIfGzip(raw: Readable): Promise<AsyncGenerator<Buffer>> {
  const chunks = raw[Symbol.asyncIterator]();
  const first = await chunks.next();
  async function* again() {
    if (!first.done) yield first.value as Buffer;
    for (let c = await chunks.next(); !c.done; c = await chunks.next()) yield c.value as Buffer;
  }
  const gzip = !first.done && (first.value as Buffer)[0] === 0x1f && (first.value as Buffer)[1] === 0x8b;
  return gzip ? gunzip(again(), { chunkSize: 1 << 16 }) : again();
}

export async function restoreBackup(pool: pg.Pool, input: AsyncIterable<Buffer>, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const started = performance.now();
  const reader = new FrameReader(input);
  const any = await readHeader(reader);
  if (isPgDumpHeader(any)) return restorePgDump(pool, reader, any, opts, started);
  const header: BackupHeader = any;
  const client = await pool.connect();
  let failed: unknown;
  try {
    await client.query('begin');
    await client.query('set local idle_in_transaction_session_timeout = 0');
    await lockMigrationsForTransaction(client);
    // Under the lock: looked at before it, the database could be migrated (a serve starting) or
    // restored (a second restore) while this one waited for it.
    await refuseNonEmpty(client);
    await createMigrationsTable(client);
    for (const m of header.migrations) await applyMigration(client, m);
    const recreated = await checkTablesMatch(client, header);

    const keys = await foreignKeys(client);
    for (const k of keys) await client.query(`alter table ${ident(k.table)} drop constraint ${ident(k.name)}`);
    // Indexes are built once after the load rather than row by row during it (as pg_restore does):
    // the full-text GIN index above all. Those behind a constraint (primary keys) stay.
    const indexes = await plainIndexes(client);
    for (const x of indexes) await client.query(`drop index ${ident(x.name)}`);
    await client.query(`set local maintenance_work_mem = '256MB'`);
    for (const t of header.tables) await client.query(`alter table ${ident(t.name)} disable trigger user`);
    await enableDerivingTriggers(client);
    // Rows a migration inserted (sql/0056's conversion job) are in the backup as they were then.
    if (header.tables.length > 0) await client.query(`truncate ${header.tables.map((t) => ident(t.name)).join(', ')}`);

    const rowsTotal = header.tables.reduce((n, t) => n + t.rows, 0);
    let rowsDone = 0;
    const report = (phase: RestoreProgress['phase'], table: string | null, tableIndex: number) =>
      opts.onProgress?.({ phase, table, tableIndex, tables: header.tables.length, rowsDone, rowsTotal, bytes: reader.bytes });
    const ends: TableEnd[] = [];
    for (const [i, t] of header.tables.entries()) {
      report('loading', t.name, i);
      const copy = client.query(pgCopy.from(copyInSql(t)));
      let refused: Error | null = null;
      copy.on('error', (err: Error) => (refused ??= err));
      const hash = crypto.createHash('sha256');
      let end: TableEnd | null = null;
      let last = performance.now();
      try {
        while (!end) {
          const f = await reader.next();
          if (!f) throw new BackupFileError('the backup file is truncated (it ends before its trailer): it was not written to the end');
          if (f.kind === 'D') {
            hash.update(f.payload);
            if (!copy.write(f.payload)) await once(copy, 'drain');
            if (refused) throw refused;
          } else if (f.kind === 'E') end = parseRecord<TableEnd>(f.payload, 'a table end');
          else throw new BackupFileError(`the backup file is corrupt: a ${f.kind} record inside table ${t.name}`);
          if (performance.now() - last > 500) {
            last = performance.now();
            report('loading', t.name, i);
          }
        }
        if (end.table !== t.name || end.rows !== t.rows || end.sha256 !== hash.digest('hex')) {
          throw new BackupFileError(`the backup file is corrupt: table ${t.name}'s data does not match its checksum or row count`);
        }
        copy.end();
        await finished(copy);
      } catch (err) {
        copy.destroy();
        if (!isPgError(err)) throw err;
        throw new BackupFileError(`the backup file is corrupt: PostgreSQL refused table ${t.name}'s data (${(err as Error).message})`);
      }
      if (copy.rowCount !== t.rows) throw new BackupFileError(`the backup file is corrupt: table ${t.name} loaded ${copy.rowCount} rows, its header says ${t.rows}`);
      ends.push(end);
      rowsDone += t.rows;
    }
    await readTrailer(reader, ends);

    report('indexing', null, header.tables.length);
    for (const x of indexes) await client.query(x.definition);
    for (const s of header.sequences) {
      // An operator's own sequence (a serial column of a table of theirs, made again above).
      await client.query(`create sequence if not exists ${ident(s.name)}`);
      await client.query('select setval($1::regclass, $2::bigint, $3)', [ident(s.name), s.last_value, s.is_called]);
    }
    for (const t of header.tables) await client.query(`alter table ${ident(t.name)} enable trigger user`);
    for (const k of keys) {
      try {
        await client.query(`alter table ${ident(k.table)} add constraint ${ident(k.name)} ${k.definition}`);
      } catch (err) {
        throw new InvalidInput(`the restored rows break foreign key ${k.name} on ${k.table} (${(err as Error).message})`, 'restore_check_failed');
      }
    }

    // Read every table back exactly as the backup read it: the same bytes, or the restore is refused.
    rowsDone = 0;
    await checkRestoredTables(client, header.tables, ends, (table, i, done) => {
      rowsDone = done;
      report('checking', table, i);
    });
    await client.query('commit');
    return { header, tables: ends, seconds: (performance.now() - started) / 1000, recreated };
  } catch (err) {
    failed = err;
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release(failed instanceof Error && !(failed instanceof InvalidInput || failed instanceof Conflict) ? failed : undefined);
  }
}

function isPgError(err: unknown): boolean {
  return typeof (err as { severity?: unknown }).severity === 'string';
}

async function readHeader(reader: FrameReader): Promise<AnyBackupHeader> {
  await reader.start();
  const f = await reader.next();
  if (!f || f.kind !== 'H') throw new BackupFileError('the backup file is corrupt: it has no header');
  const header = parseRecord<AnyBackupHeader>(f.payload, 'its header');
  if (header.format !== FORMAT_VERSION && header.format !== PG_DUMP_FORMAT) {
    throw new InvalidInput(
      `this backup is in format ${header.format}, which this listkeeper (formats ${FORMAT_VERSION} and ${PG_DUMP_FORMAT}) cannot read: restore it with the listkeeper that made it or a later one`,
      'newer_backup',
    );
  }
  checkHeaderShape(header);
  const known = new Set(migrationFiles());
  const unknown = header.migrations.filter((m) => !known.has(m));
  if (unknown.length > 0) {
    throw new InvalidInput(
      `this backup comes from a newer listkeeper: its schema has migrations this version does not know (${unknown.join(', ')}); restore it with that version or a later one`,
      'newer_backup',
    );
  }
  return header;
}

/**
 * The header has the shape restore reads, checked before anything of it is used: a damaged or
 * crafted one ("migrations": "x", "tables": null) was refused with JavaScript's own words
 * ("header.migrations.filter is not a function") rather than as the corrupt file it is.
 */
function checkHeaderShape(h: AnyBackupHeader): void {
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const table = (t: unknown) => {
    const o = t as Partial<BackupHeader['tables'][number]> | null;
    return typeof o === 'object' && o !== null && typeof o.name === 'string' && Number.isSafeInteger(o.rows) && (o.rows as number) >= 0 && strings(o.key)
      && Array.isArray(o.columns) && o.columns.every((c) => typeof c?.name === 'string' && typeof c?.type === 'string');
  };
  const sequence = (q: unknown) => {
    const o = q as Partial<BackupHeader['sequences'][number]> | null;
    return typeof o === 'object' && o !== null && typeof o.name === 'string' && typeof o.last_value === 'string' && /^-?\d{1,20}$/.test(o.last_value) && typeof o.is_called === 'boolean';
  };
  const ok = strings(h.migrations) && Array.isArray(h.tables) && h.tables.every(table) && (h.excluded === undefined || strings(h.excluded))
    && (isPgDumpHeader(h)
      ? Number.isSafeInteger(h.pg_dump_major) && typeof h.pg_dump_version === 'string'
      : Array.isArray(h.sequences) && h.sequences.every(sequence));
  if (!ok) throw new BackupFileError('the backup file is corrupt: its header is not one listkeeper writes');
}

async function readTrailer(reader: FrameReader, ends: TableEnd[]): Promise<void> {
  const f = await reader.next();
  if (!f) throw new BackupFileError('the backup file is truncated (it ends before its trailer): it was not written to the end');
  if (f.kind !== 'T') throw new BackupFileError(`the backup file is corrupt: a ${f.kind} record where its trailer should be`);
  const trailer = parseRecord<BackupTrailer>(f.payload, 'its trailer');
  if (!Array.isArray(trailer?.tables) || typeof trailer.sha256 !== 'string') throw new BackupFileError('the backup file is corrupt: its trailer is not one listkeeper writes');
  const same = trailer.tables.length === ends.length && trailer.tables.every((t, i) => t.table === ends[i].table && t.rows === ends[i].rows && t.sha256 === ends[i].sha256);
  if (!same || trailer.sha256 !== reader.digest()) throw new BackupFileError('the backup file is corrupt: its checksum does not match its contents');
  if ((await reader.next()) !== null) throw new BackupFileError('the backup file is corrupt: it goes on after its trailer');
}

// A type as format_type() writes one: words (a schema before a dot), a modifier of digits after
// one of them ("character varying(40)", "timestamp(3) with time zone", "numeric(10,2)"), arrays,
// or "char" in its quotes.
const TYPE_NAME = /^(?:"char"|[a-z_][a-z0-9_]*(?:\(\d+(?:,\d+)?\))?(?:[ .][a-z_][a-z0-9_]*(?:\(\d+(?:,\d+)?\))?)*)(?:\[\])*$/;

/**
 * The migrated schema must have each backed-up table with the same stored columns, or COPY would
 * misplace values. A table or a column the migrations do not make is one an operator added to the
 * database (a table of their own, a column on lists): backup copied it as any other, and restore
 * refused the file for it, so every backup taken since could not be restored. It is made here from
 * the header (its columns' types and primary key: not its defaults, other constraints or indexes),
 * and named in what is returned. A column of this schema that the backup lacks, or has with
 * another type, is still refused.
 */
async function checkTablesMatch(db: Queryable, header: BackupHeader): Promise<string[]> {
  // Every table but the migrations' own, those this release leaves out too: an older one, backing
  // up this schema during a rolling upgrade, copied some of them (purges), and they load like the others.
  const here = new Map((await backupTables(db, ['schema_migrations'])).map((t) => [t.name, t]));
  const refused = (t: BackupTable) =>
    new InvalidInput(`the backup's table ${t.name} does not match the schema its migrations make here: this backup cannot be restored by this listkeeper`, 'restore_check_failed');
  const recreated: string[] = [];
  for (const t of header.tables) {
    // A release before sql/0070, backing up this schema during a rolling upgrade, copies the
    // search vector as any column: loaded, the trigger computes it again anyway.
    const columns = t.columns.filter((c) => !DERIVED_COLUMNS.includes(`${t.name}.${c.name}`));
    const mine = here.get(t.name);
    // The header is the file's, and a file can be written by anyone: a type goes into the statement
    // below as written, so it must read as a type name and nothing more (no ";", no quote).
    if (!columns.every((c) => TYPE_NAME.test(c.type))) throw refused(t);
    if (!mine) {
      if (t.key.length === 0 || !t.key.every((k) => columns.some((c) => c.name === k))) throw refused(t);
      await db.query(`create table ${ident(t.name)} (${columns.map((c) => `${ident(c.name)} ${c.type}`).join(', ')}, primary key (${t.key.map(ident).join(', ')}))`)
        .catch((err: Error) => {
          throw new InvalidInput(`the backup's table ${t.name}, which listkeeper's migrations do not make, could not be made here (${err.message})`, 'restore_check_failed');
        });
      recreated.push(`table ${t.name}`);
      continue;
    }
    if (JSON.stringify(mine.columns) === JSON.stringify(columns)) continue;
    // Only added columns may differ: each of this schema's, with its type, in the backup.
    const theirs = new Map(columns.map((c) => [c.name, c.type]));
    if (!mine.columns.every((c) => theirs.get(c.name) === c.type)) throw refused(t);
    for (const c of columns.filter((c) => !mine.columns.some((m) => m.name === c.name))) {
      await db.query(`alter table ${ident(t.name)} add column ${ident(c.name)} ${c.type}`);
      recreated.push(`column ${t.name}.${c.name}`);
    }
  }
  return recreated;
}

/** Indexes that no constraint owns, with the statement that makes each again. */
async function plainIndexes(db: Queryable): Promise<{ name: string; definition: string }[]> {
  const { rows } = await db.query<{ name: string; definition: string }>(
    `select c.relname as name, pg_get_indexdef(c.oid) as definition
       from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relnamespace = current_schema()::regnamespace
        and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)
      order by c.relname`,
  );
  return rows;
}

async function foreignKeys(db: Queryable): Promise<{ table: string; name: string; definition: string }[]> {
  const { rows } = await db.query<{ table: string; name: string; definition: string }>(
    `select conrelid::regclass::text as table, conname as name, pg_get_constraintdef(oid) as definition
       from pg_constraint where contype = 'f' and connamespace = current_schema()::regnamespace order by conname`,
  );
  return rows;
}

/**
 * The triggers that compute the columns a backup leaves out (DERIVED_COLUMNS) stay on while the
 * rows are loaded, where the backup's migrations made them (before sql/0070 the search vector was
 * a generated column, computed by the load itself).
 */
async function enableDerivingTriggers(client: pg.PoolClient): Promise<void> {
  for (const { table, trigger } of DERIVING_TRIGGERS) {
    const { rowCount } = await client.query('select 1 from pg_trigger where tgrelid = to_regclass($1) and tgname = $2', [table, trigger]);
    if (rowCount) await client.query(`alter table ${ident(table)} enable trigger ${ident(trigger)}`);
  }
}
