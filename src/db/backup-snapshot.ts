/*
 * What both backup methods (backup.ts, backup-pgdump.ts) share: the snapshot they read in and
 * what its header holds, and the file's output stream.
 */

import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type pg from 'pg';
import { backupTables, EXCLUDED_TABLES, ident } from './backup-catalog.ts';
import { FrameWriter, type AnyBackupHeader, type BackupHeader, type BackupTable, type TableEnd } from './backup-format.ts';
import type { PgTool } from './pg-tools.ts';

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

export type BackupMethod = 'listkeeper' | 'pg_dump';

export interface BackupResult {
  header: AnyBackupHeader;
  tables: TableEnd[];
  bytes: number;
  seconds: number;
  /** the method used, and for pg_dump its version */
  method: BackupMethod;
  tool?: PgTool;
}

/** Same snapshot, same rows: a difference would mean the snapshot did not hold. */
export function sameRows(t: BackupTable, end: TableEnd) {
  if (end.rows !== t.rows) throw new Error(`table ${t.name}: copied ${end.rows} rows where the snapshot counted ${t.rows}`);
}

/**
 * Begins the backup's snapshot on `client` and reads what every header holds: the tables with
 * their row counts, the migrations, the server's version.
 */
export async function openSnapshot(client: pg.PoolClient): Promise<Pick<BackupHeader, 'created_at' | 'server_version' | 'migrations' | 'tables' | 'excluded'>> {
  await client.query('begin isolation level repeatable read read only');
  // Waiting on a slow disk or pipe between two tables must not end the snapshot (pool.ts sets a limit).
  await client.query('set local idle_in_transaction_session_timeout = 0');
  const tables = await backupTables(client);
  for (const t of tables) {
    t.rows = (await client.query<{ n: number }>(`select count(*)::bigint as n from ${ident(t.name)}`)).rows[0].n;
  }
  return {
    created_at: new Date().toISOString(),
    server_version: (await client.query<{ v: string }>('select version() as v')).rows[0].v,
    migrations: (await client.query<{ name: string }>('select name from schema_migrations order by name')).rows.map((r) => r.name),
    tables,
    excluded: EXCLUDED_TABLES,
  };
}

/** The file's stream: gzipped or not into `sink`, a FrameWriter on it, and its two ends. */
export function openOutput(sink: Writable, gzip: boolean) {
  const out = gzip ? zlib.createGzip() : new PassThrough();
  const done = pipeline(out, sink);
  // Rejects when writing fails (disk full, a closed pipe), which ends a wait for 'drain'.
  const failed = done.then(() => new Promise<never>(() => undefined));
  failed.catch(() => undefined);
  done.catch(() => undefined); // awaited below
  return {
    writer: new FrameWriter(out, failed),
    async finish() {
      out.end();
      await done;
    },
    async abandon(err: Error) {
      out.destroy(err);
      await done.catch(() => undefined);
    },
  };
}
