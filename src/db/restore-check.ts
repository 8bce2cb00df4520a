/*
 * What restore does the same way whichever method made the backup (restore.ts, restore-pgdump.ts):
 * it goes only into an empty database, and it ends with the check, every restored table read back
 * with the backup's own query (readTable) against the backup's row count and sha256.
 */

import type pg from 'pg';
import { Conflict, InvalidInput } from '../errors.ts';
import { readTable } from './backup-catalog.ts';
import { UNCHECKED_RESTORE_LEFT, uncheckedRestoreLeft } from './migrate.ts';
import type { AnyBackupHeader, BackupTable, TableEnd } from './backup-format.ts';
import type { Queryable } from './pool.ts';

export interface RestoreProgress {
  phase: 'loading' | 'indexing' | 'checking';
  table: string | null;
  tableIndex: number;
  tables: number;
  rowsDone: number;
  rowsTotal: number;
  bytes: number;
}

export interface RestoreResult {
  header: AnyBackupHeader;
  tables: TableEnd[];
  seconds: number;
  /** tables and columns the backup had and listkeeper's migrations do not make (an operator's), made from the backup's header */
  recreated?: string[];
}

/** "Empty": no table, view or sequence outside PostgreSQL's own schemas. */
export async function refuseNonEmpty(db: Queryable): Promise<void> {
  if (await uncheckedRestoreLeft(db)) throw new Conflict(UNCHECKED_RESTORE_LEFT, 'database_not_empty');
  const { rows } = await db.query<{ n: number; some: string | null }>(
    `select count(*)::int as n, min(n.nspname || '.' || c.relname) as some
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
        and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'`,
  );
  if (rows[0].n > 0) {
    throw new Conflict(
      `the database is not empty (${rows[0].n} tables and sequences, such as ${rows[0].some}): restore only goes into an empty database; create one (createdb) or point DATABASE_URL or DATA_DIR at a new one`,
      'database_not_empty',
    );
  }
}

/**
 * The check: each table of `tables` read back with the backup's query must give the row count and
 * the sha256 of its `ends` entry (same order), byte for byte, or the restore is refused.
 * `report` hears of each table before it is read (and null at the end) with the rows checked so far.
 */
export async function checkRestoredTables(
  client: pg.PoolClient,
  tables: BackupTable[],
  ends: TableEnd[],
  report: (table: string | null, tableIndex: number, rowsDone: number) => void,
): Promise<void> {
  let rowsDone = 0;
  for (const [i, t] of tables.entries()) {
    report(t.name, i, rowsDone);
    const got = await readTable(client, t);
    if (got.rows !== t.rows || got.sha256 !== ends[i].sha256) {
      throw new InvalidInput(`check failed: table ${t.name} reads back as ${got.rows} rows whose checksum differs from the backup's (${t.rows} rows)`, 'restore_check_failed');
    }
    rowsDone += t.rows;
  }
  report(null, tables.length, rowsDone);
}
