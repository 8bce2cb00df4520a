/*
 * `listkeeper backup FILE`: every table that a site needs (lists, members, keys, archive, queue),
 * read in one REPEATABLE READ READ ONLY transaction (one snapshot: the file is consistent while
 * serve goes on writing), each as `COPY … TO STDOUT (FORMAT binary)`, streamed frame by frame into
 * one file (backup-format.ts). Memory stays bounded by a frame whatever the archive's size.
 *
 * Why not pg_dump: the embedded default ships no pg_dump, and the machine's client tools are often
 * of another major. One format, made and checked by listkeeper itself, restores the same way from
 * either server (docs/operations.md says when to use pg_dump or pgBackRest instead).
 */

import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { backupTables, collatableKeys, copyOutSql, EXCLUDED_TABLES, ident, sequenceNames } from './backup-catalog.ts';
import { FORMAT_VERSION, FrameWriter, type BackupHeader, type TableEnd } from './backup-format.ts';

export interface BackupProgress {
  /** the table being copied (null once all are done) */
  table: string | null;
  tableIndex: number;
  tables: number;
  /** rows of the tables copied so far, of all rows in the snapshot */
  rowsDone: number;
  rowsTotal: number;
  /** bytes written so far (before compression) */
  bytes: number;
}

export interface BackupResult {
  header: BackupHeader;
  tables: TableEnd[];
  bytes: number;
  seconds: number;
}

/**
 * Writes a backup to FILE (gzipped when it ends in .gz) through FILE.tmp, synced to disk and then
 * renamed, so FILE is either the previous file or a whole new backup; `-` writes to stdout.
 */
export async function backupToFile(pool: pg.Pool, file: string, opts: { onProgress?: (p: BackupProgress) => void } = {}): Promise<BackupResult> {
  const gzip = file.endsWith('.gz');
  if (file === '-') return writeBackup(pool, process.stdout, { gzip: false, ...opts });
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600); // it holds password hashes and DKIM private keys
  try {
    const result = await writeBackup(pool, fs.createWriteStream('', { fd, autoClose: false }), { gzip, ...opts });
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

/** Makes a rename or a new file in `dir` durable (fsync of the folder). */
export function syncDir(dir: string) {
  const d = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(d);
  } finally {
    fs.closeSync(d);
  }
}

/** Streams a backup into `sink`, which is ended (but not closed when it is stdout) when done. */
export async function writeBackup(pool: pg.Pool, sink: Writable, opts: { gzip: boolean; onProgress?: (p: BackupProgress) => void }): Promise<BackupResult> {
  const started = performance.now();
  const out = opts.gzip ? zlib.createGzip() : new PassThrough();
  const done = pipeline(out, sink);
  // Rejects when writing fails (disk full, a closed pipe), which ends a wait for 'drain'.
  const failed = done.then(() => new Promise<never>(() => undefined));
  failed.catch(() => undefined);
  done.catch(() => undefined); // awaited below
  const writer = new FrameWriter(out, failed);
  const client = await pool.connect();
  let result: BackupResult;
  try {
    await client.query('begin isolation level repeatable read read only');
    // Waiting on a slow disk or pipe between two tables must not end the snapshot (pool.ts sets a limit).
    await client.query('set local idle_in_transaction_session_timeout = 0');
    const tables = await backupTables(client);
    for (const t of tables) {
      t.rows = (await client.query<{ n: number }>(`select count(*)::bigint as n from ${ident(t.name)}`)).rows[0].n;
    }
    const header: BackupHeader = {
      format: FORMAT_VERSION,
      created_at: new Date().toISOString(),
      server_version: (await client.query<{ v: string }>('select version() as v')).rows[0].v,
      migrations: (await client.query<{ name: string }>('select name from schema_migrations order by name')).rows.map((r) => r.name),
      tables,
      sequences: [],
      excluded: EXCLUDED_TABLES,
    };
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
      const hash = crypto.createHash('sha256');
      const copy = client.query(pgCopy.to(copyOutSql(t, await collatableKeys(client, t.name))));
      let last = performance.now();
      for await (const chunk of copy as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await writer.frame('D', chunk);
        if (performance.now() - last > 500) {
          last = performance.now();
          report(t.name, i);
        }
      }
      // Same snapshot, same rows: a difference would mean the snapshot did not hold.
      if (copy.rowCount !== t.rows) throw new Error(`table ${t.name}: copied ${copy.rowCount} rows where the snapshot counted ${t.rows}`);
      const end = { table: t.name, rows: t.rows, sha256: hash.digest('hex') };
      ends.push(end);
      await writer.json('E', end);
      rowsDone += t.rows;
    }
    await client.query('commit');
    report(null, tables.length);
    const digest = writer.digest();
    await writer.json('T', { tables: ends, sha256: digest });
    result = { header, tables: ends, bytes: writer.bytes, seconds: 0 };
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    out.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
  out.end();
  await done;
  result.seconds = (performance.now() - started) / 1000;
  return result;
}
