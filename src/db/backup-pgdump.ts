/*
 * The pg_dump method of `listkeeper backup` (backup.ts chooses it): one REPEATABLE READ READ ONLY
 * transaction exports its snapshot, `pg_dump --snapshot` dumps the database from exactly that
 * snapshot in its custom format, and meanwhile the transaction reads every table with the query
 * that the listkeeper format uses (readTable), for the row counts and sha256s that restore checks
 * the restored tables against. The two reads run at once (pg_dump is its own process and session).
 * pg_dump's output is framed into the file as it comes (backup-format.ts, 'P' frames): memory
 * stays bounded whatever the archive's size.
 */

import crypto from 'node:crypto';
import type { Writable } from 'node:stream';
import type pg from 'pg';
import { TemporaryFailure } from '../errors.ts';
import { ident, readTable } from './backup-catalog.ts';
import { PG_DUMP_FORMAT, type PgDumpHeader, type TableEnd } from './backup-format.ts';
import { openOutput, openSnapshot, sameRows, type BackupProgress, type BackupResult } from './backup-snapshot.ts';
import { onInterrupt, runPgTool, toolFailure, type PgTool, type ToolRun } from './pg-tools.ts';

/** A lock pg_dump cannot take within this (a migration holding a table) ends the backup rather than waiting for ever. */
const LOCK_WAIT = '60s';

export async function writePgDumpBackup(
  pool: pg.Pool,
  sink: Writable,
  opts: { gzip: boolean; url: string; tool: PgTool; onProgress?: (p: BackupProgress) => void },
): Promise<BackupResult> {
  const started = performance.now();
  const output = openOutput(sink, opts.gzip);
  const { writer } = output;
  const client = await pool.connect();
  let run: ToolRun | undefined;
  let interrupt!: (err: Error) => void;
  const interrupted = new Promise<never>((_resolve, reject) => (interrupt = reject));
  interrupted.catch(() => undefined);
  const stopListening = onInterrupt((signal) => interrupt(new TemporaryFailure(`backup interrupted by ${signal}: pg_dump was stopped and no file was written`, 'interrupted')));
  let result: BackupResult;
  try {
    const snapshot = await openSnapshot(client);
    const { tables } = snapshot;
    const header: PgDumpHeader = {
      format: PG_DUMP_FORMAT,
      ...snapshot,
      server_version_num: Number((await client.query<{ v: string }>("select current_setting('server_version_num') as v")).rows[0].v),
      pg_dump_version: opts.tool.version,
      pg_dump_major: opts.tool.major!,
    };
    const schema = (await client.query<{ s: string }>('select current_schema() as s')).rows[0].s;
    const snapshotId = (await client.query<{ id: string }>('select pg_export_snapshot() as id')).rows[0].id;
    await writer.start();
    await writer.json('H', header);

    run = runPgTool('pg_dump', pgDumpArgs(snapshotId, schema, snapshot.excluded, opts.gzip), opts.url, `listkeeper:${process.pid}:backup`, { stdin: 'ignore', stdout: 'pipe' });
    const rowsTotal = tables.reduce((n, t) => n + t.rows, 0);
    let rowsDone = 0;
    let step: string | null = tables[0]?.name ?? 'pg_dump';
    let last = performance.now();
    const report = (force = false) => {
      if (!force && performance.now() - last < 500) return;
      last = performance.now();
      opts.onProgress?.({ table: step, tableIndex: 0, tables: tables.length, rowsDone, rowsTotal, bytes: writer.bytes });
    };

    const archive = crypto.createHash('sha256');
    let archiveBytes = 0;
    const dumping = (async (tool: ToolRun) => {
      for await (const chunk of tool.child.stdout as AsyncIterable<Buffer>) {
        archive.update(chunk);
        archiveBytes += chunk.length;
        await writer.pgDump(chunk);
        report();
      }
      const end = await tool.ended;
      if (end.code !== 0) throw new TemporaryFailure(toolFailure('pg_dump', tool, end), 'pg_dump_failed');
    })(run);
    const hashing = (async () => {
      const ends: TableEnd[] = [];
      for (const t of tables) {
        step = t.name;
        report(true);
        const end = await readTable(client, t);
        sameRows(t, end);
        ends.push(end);
        rowsDone += t.rows;
      }
      step = 'pg_dump';
      report(true);
      return ends;
    })();
    dumping.catch(() => undefined);
    hashing.catch(() => undefined);
    // Either one failing (or a signal) ends the wait at once; the catch below stops the other.
    const [, ends] = await Promise.race([Promise.all([dumping, hashing]), interrupted]);
    await client.query('commit');
    step = null;
    report(true);
    const digest = writer.digest();
    await writer.json('T', { tables: ends, pg_dump: { bytes: archiveBytes, sha256: archive.digest('hex') }, sha256: digest });
    result = { header, tables: ends, bytes: writer.bytes, seconds: 0, method: 'pg_dump', tool: opts.tool };
    client.release();
  } catch (err) {
    await run?.stop();
    // The connection may be inside a COPY: closing it is the way to end that.
    client.release(err as Error);
    await output.abandon(err as Error);
    throw err;
  } finally {
    stopListening();
  }
  await output.finish();
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/**
 * The whole database from the exported snapshot, in the custom format (pg_restore reads it from a
 * pipe). The transient tables' definitions are in it but not their rows (backup-catalog.ts says
 * why); schema_migrations' rows are: they are the restored schema's record of itself, and restore
 * checks them against the header's list. A gzipped FILE has pg_dump leave its archive
 * uncompressed, rather than compress it twice.
 */
function pgDumpArgs(snapshotId: string, schema: string, excluded: string[], gzip: boolean): string[] {
  const args = ['--format=custom', `--snapshot=${snapshotId}`, `--lock-wait-timeout=${LOCK_WAIT}`];
  for (const t of excluded) if (t !== 'schema_migrations') args.push(`--exclude-table-data=${ident(schema)}.${ident(t)}`);
  if (gzip) args.push('--compress=0');
  return args;
}
