/*
 * `listkeeper backup FILE`: every table that a site needs (lists, members, keys, archive, queue),
 * read in one REPEATABLE READ READ ONLY transaction (one snapshot: the file is consistent while
 * serve goes on writing), streamed frame by frame into one file (backup-format.ts). Memory stays
 * bounded by a frame whatever the archive's size. Two methods (docs/operations.md, "Backups"):
 *
 * - pg_dump (backup-pgdump.ts), chosen by default when a pg_dump of the server's major is on the
 *   PATH: pg_dump's custom format, from the same snapshot;
 * - listkeeper, everywhere else (the embedded default ships no pg_dump, and the machine's client
 *   tools are often of another major): each table as `COPY … TO STDOUT (FORMAT binary)`.
 *
 * Both record each table's row count and sha256 from the same query (readTable), which restore
 * checks the restored tables against, whichever method made the file.
 */

import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type pg from 'pg';
import { InvalidInput } from '../errors.ts';
import { ident, readTable, sequenceNames } from './backup-catalog.ts';
import { FORMAT_VERSION, type BackupHeader, type TableEnd } from './backup-format.ts';
import { writePgDumpBackup } from './backup-pgdump.ts';
import { openOutput, openSnapshot, sameRows, type BackupProgress, type BackupResult } from './backup-snapshot.ts';
import { findPgTool, serverMajor, type PgTool } from './pg-tools.ts';

export type { BackupProgress, BackupResult };

export const BACKUP_METHODS = ['auto', 'listkeeper', 'pg_dump'] as const;

export interface BackupOptions {
  /** `auto` (the default): pg_dump when one of the server's major is on the PATH, else listkeeper */
  method?: (typeof BACKUP_METHODS)[number];
  /** the server's URL for pg_dump: the one `pool` connects to (a snapshot is imported on the server that exported it) */
  url?: string;
  onProgress?: (p: BackupProgress) => void;
}

/**
 * Writes a backup to FILE (gzipped when it ends in .gz) through FILE.tmp, synced to disk and then
 * renamed, so FILE is either the previous file or a whole new backup; `-` writes to stdout.
 */
export async function backupToFile(pool: pg.Pool, file: string, opts: BackupOptions = {}): Promise<BackupResult> {
  const gzip = file.endsWith('.gz');
  // Chosen before FILE.tmp is made: a refused --method pg_dump leaves nothing behind.
  const tool = await chooseMethod(pool, opts.method ?? 'auto');
  if (file === '-') return writeBackup(pool, process.stdout, { ...opts, gzip: false, tool });
  // Refused before the backup is made, not by the rename at its end: a folder for FILE (or an
  // empty name) failed there with "EISDIR … rename", after the whole database had been read.
  if (file === '' || file.endsWith('/') || isDirectory(file)) throw new InvalidInput(`backup: ${file === '' ? 'FILE is empty' : `${file} is a folder`}: name the file to write (${path.join(file || '.', 'site.lkb')})`, 'bad_backup_file');
  const tmp = `${file}.tmp`;
  let fd: number;
  try {
    fd = createPrivate(tmp); // it holds password hashes and DKIM private keys
  } catch (err) {
    throw new InvalidInput(`backup: cannot write ${tmp} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'bad_backup_file');
  }
  try {
    const result = await writeBackup(pool, fs.createWriteStream('', { fd, autoClose: false }), { ...opts, gzip, tool });
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
    syncDir(path.dirname(path.resolve(file)));
    return result;
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function isDirectory(file: string): boolean {
  try {
    return fs.lstatSync(file).isDirectory(); // a link is replaced by the rename, not followed
  } catch {
    return false;
  }
}

/**
 * A new file of our own, mode 0600: never one that is there already. Opened with 'w', a FILE.tmp
 * left by someone else (in a shared folder) kept its owner and mode 0666, and a symlink was
 * followed: the backup, secrets and all, went where it pointed. One left by a backup that died is
 * removed first (the link itself, never what it points to).
 */
function createPrivate(file: string): number {
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
  try {
    return fs.openSync(file, flags, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    fs.unlinkSync(file);
    return fs.openSync(file, flags, 0o600);
  }
}

/** Makes a rename or a new file in `dir` durable (fsync of the folder). */
export function syncDir(dir: string) {
  const d = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}

/**
 * The pg_dump to use, or null for the listkeeper format: `auto` takes a pg_dump on the PATH of the
 * server's major (an older one cannot read a newer server; a newer one would make an archive
 * that only its own major's pg_restore reads); `pg_dump` insists on one, with one line saying
 * why there is none.
 */
export async function chooseMethod(pool: pg.Pool, method: NonNullable<BackupOptions['method']>): Promise<PgTool | null> {
  if (method === 'listkeeper') return null;
  const [tool, versionNum] = await Promise.all([
    findPgTool('pg_dump'),
    pool.query<{ v: string }>("select current_setting('server_version_num') as v").then((r) => Number(r.rows[0].v)),
  ]);
  const major = serverMajor(versionNum);
  if (tool && tool.major === major) return tool;
  if (method === 'auto') return null;
  const found = tool ? `the pg_dump on the PATH is ${tool.major === null ? `not PostgreSQL's (it says "${tool.version}")` : `version ${tool.version}`}` : 'there is no pg_dump on the PATH';
  throw new InvalidInput(
    `--method pg_dump needs a pg_dump of the server's major version (PostgreSQL ${major}), and ${found}: install PostgreSQL ${major}'s client programs (Debian: postgresql-client-${major}) or use --method listkeeper`,
    'no_matching_pg_dump',
  );
}

/** Streams a backup into `sink`, which is ended (but not closed when it is stdout) when done. */
export async function writeBackup(pool: pg.Pool, sink: Writable, opts: Omit<BackupOptions, 'method'> & { gzip: boolean; tool?: PgTool | null }): Promise<BackupResult> {
  if (opts.tool) {
    if (!opts.url) throw new Error('a backup with pg_dump needs the server\'s URL');
    return writePgDumpBackup(pool, sink, { ...opts, url: opts.url, tool: opts.tool });
  }
  const started = performance.now();
  const output = openOutput(sink, opts.gzip);
  const { writer } = output;
  const client = await pool.connect();
  let result: BackupResult;
  let failed: Error | undefined;
  try {
    const snapshot = await openSnapshot(client);
    const { tables } = snapshot;
    const header: BackupHeader = { format: FORMAT_VERSION, ...snapshot, sequences: [] };
    // A sequence is outside the snapshot: its value now is at least the one any copied row took
    // from it, which is all a restored site needs (its next id is past every row's).
    for (const name of await sequenceNames(client)) {
      const r = (await client.query<{ last_value: string; is_called: boolean }>(`select last_value::text, is_called from ${ident(name)}`)).rows[0];
      header.sequences.push({ name, last_value: r.last_value, is_called: r.is_called });
    }
    await writer.start();
    await writer.json('H', header);
    const rowsTotal = tables.reduce((n, t) => n + t.rows, 0);
    let rowsDone = 0;
    const ends: TableEnd[] = [];
    const report = (table: string | null, tableIndex: number) =>
      opts.onProgress?.({ table, tableIndex, tables: tables.length, rowsDone, rowsTotal, bytes: writer.bytes });
    for (const [i, t] of tables.entries()) {
      report(t.name, i);
      let last = performance.now();
      const end = await readTable(client, t, async (chunk) => {
        await writer.frame('D', chunk);
        if (performance.now() - last > 500) {
          last = performance.now();
          report(t.name, i);
        }
      });
      sameRows(t, end);
      ends.push(end);
      await writer.json('E', end);
      rowsDone += t.rows;
    }
    await client.query('commit');
    report(null, tables.length);
    const digest = writer.digest();
    await writer.json('T', { tables: ends, sha256: digest });
    result = { header, tables: ends, bytes: writer.bytes, seconds: 0, method: 'listkeeper' };
  } catch (err) {
    // Not a rollback: a write that failed in the middle of a table (a full disk, a closed pipe)
    // leaves the connection inside a COPY that nobody reads, and a rollback queued behind it never
    // ran: the process exited with code 13 and no message, leaving FILE.tmp. Closing the
    // connection (release with the error) ends the read-only transaction as well.
    failed = err as Error;
    await output.abandon(failed);
    throw err;
  } finally {
    client.release(failed);
  }
  await output.finish();
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

