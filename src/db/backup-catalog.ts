/*
 * What a backup holds, read from PostgreSQL's catalog rather than listed by hand, so that a table a
 * later migration adds is backed up without anyone remembering to: every table of the schema but
 * the transient ones below, with its stored columns and primary key, and every sequence.
 */

import crypto from 'node:crypto';
import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import type { Queryable } from './pool.ts';
import type { BackupTable, TableEnd } from './backup-format.ts';

/**
 * Left out on purpose: state that belongs to running processes or expires within hours, and that
 * a restored site does better without. Web sessions and login links (people log in again: a
 * backup file then carries no live credential but password hashes), rate-limit windows and the
 * owner-add cap's hits of the last day, the delivery workers' heartbeats (a restored site's
 * workers register themselves), purges waiting for
 * the cache in front (a restore changes every page: purge the whole cache after one), and the
 * migrations table (restore applies the migrations themselves; the header lists them).
 */
export const EXCLUDED_TABLES = ['sessions', 'login_tokens', 'rate_limits', 'rate_limit_hits', 'delivery_workers', 'purges', 'schema_migrations'];

/**
 * Columns computed from the others, left out as generated columns are: the search vector (a
 * trigger's since sql/0070, generated before) would add a third to a backup's size. Restore keeps
 * the triggers that compute them on while it loads (DERIVING_TRIGGERS), so they are computed as
 * the rows arrive, as generated columns are.
 */
export const DERIVED_COLUMNS = ['messages.tsv'];
export const DERIVING_TRIGGERS = [{ table: 'messages', trigger: 'messages_search_vector' }];

/**
 * The tables to copy, parents before children (foreign keys), each with its columns and key; `rows`
 * is 0 here. `excluded`: the tables left out (restore compares with all of them: an older release
 * left out fewer).
 */
export async function backupTables(db: Queryable, excluded: readonly string[] = EXCLUDED_TABLES): Promise<BackupTable[]> {
  const { rows } = await db.query<{ name: string; columns: { name: string; type: string }[]; key: string[] | null; parents: string[] }>(
    `select c.relname as name,
            (select json_agg(json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, a.atttypmod)) order by a.attnum)
               from pg_attribute a
              where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
                and c.relname || '.' || a.attname <> all($2)) as columns,
            (select array_agg(a.attname::text order by k.i)
               from pg_constraint p
               cross join unnest(p.conkey) with ordinality as k(attnum, i)
               join pg_attribute a on a.attrelid = p.conrelid and a.attnum = k.attnum
              where p.conrelid = c.oid and p.contype = 'p') as key,
            array(select distinct f.confrelid::regclass::text from pg_constraint f
                   where f.conrelid = c.oid and f.contype = 'f' and f.confrelid <> c.oid) as parents
       from pg_class c
      where c.relnamespace = current_schema()::regnamespace and c.relkind in ('r', 'p') and not c.relispartition
        and c.relname <> all($1)
      order by c.relname`,
    [excluded, DERIVED_COLUMNS],
  );
  for (const r of rows) if (!r.key) throw new Error(`table ${r.name} has no primary key: a backup needs one to read it in a stable order`);
  // Parents first: a reader of the file sees lists before their members. (Restore does not need
  // the order: it sets foreign keys aside while loading and checks them all afterwards.)
  const ordered: BackupTable[] = [];
  const placed = new Set<string>();
  const known = new Set(rows.map((r) => r.name));
  while (ordered.length < rows.length) {
    const before = ordered.length;
    for (const r of rows) {
      if (placed.has(r.name) || !r.parents.every((p) => placed.has(p) || !known.has(p))) continue;
      placed.add(r.name);
      ordered.push({ name: r.name, columns: r.columns, key: r.key!, rows: 0 });
    }
    if (ordered.length === before) throw new Error('the tables\' foreign keys form a cycle');
  }
  return ordered;
}

/** The schema's sequences (serial columns and counters), by name. */
export async function sequenceNames(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `select relname as name from pg_class where relnamespace = current_schema()::regnamespace and relkind = 'S' order by relname`,
  );
  return rows.map((r) => r.name);
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * The one query that reads a table for a backup and again after a restore: the stored columns,
 * in primary-key order (text keys compared bytewise, so the order is the same under any
 * collation), so that the restored table reads back to exactly the bytes that were saved.
 */
export function copyOutSql(t: BackupTable, collatable: Set<string>): string {
  const order = t.key.map((k) => (collatable.has(k) ? `${ident(k)} collate "C"` : ident(k))).join(', ');
  return `copy (select ${t.columns.map((c) => ident(c.name)).join(', ')} from ${ident(t.name)} order by ${order}) to stdout (format binary)`;
}

/**
 * Reads table `t` with copyOutSql and gives its row count and the sha256 of its COPY bytes, the
 * one fingerprint of a table that every backup method records and every restore checks; each
 * chunk goes to `onChunk` too (the listkeeper format writes them into the file), awaited in turn.
 */
export async function readTable(client: pg.PoolClient, t: BackupTable, onChunk?: (chunk: Buffer) => Promise<void>): Promise<TableEnd> {
  const copy = client.query(pgCopy.to(copyOutSql(t, await collatableKeys(client, t.name))));
  const hash = crypto.createHash('sha256');
  for await (const chunk of copy as AsyncIterable<Buffer>) {
    hash.update(chunk);
    if (onChunk) await onChunk(chunk);
  }
  // The stream ends at the server's CopyDone; the row count comes in the CommandComplete after it,
  // which node-postgres may read later (another packet, a busy machine). A backup once failed on
  // "copied 0 rows where the snapshot counted 61". The next statement on this connection is
  // answered only after that message has been handled.
  await client.query('select 1');
  return { table: t.name, rows: copy.rowCount, sha256: hash.digest('hex') };
}

export function copyInSql(t: BackupTable): string {
  return `copy ${ident(t.name)} (${t.columns.map((c) => ident(c.name)).join(', ')}) from stdin (format binary)`;
}

/** The key columns of `t` that have a collation (text and the like). */
export async function collatableKeys(db: Queryable, table: string): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>(
    `select a.attname as name from pg_attribute a
      where a.attrelid = ($1::text)::regclass and a.attnum > 0 and a.attcollation <> 0`,
    [ident(table)],
  );
  return new Set(rows.map((r) => r.name));
}

export { ident };
