/* Bulk writes of `listkeeper import`: batches through import_messages() and the progress row. */

import type { ParsedMessage } from '../mail/parse.ts';
import { storedAttachmentText } from '../mail/attachment-text.ts';
import type { Queryable } from './pool.ts';

export interface ImportRun {
  id: number;
  list_id: number;
  source: string;
  fingerprint: string;
  finished_at: Date | null;
}

/** The latest run of this file into this list, finished or not. */
export async function latestImportRun(db: Queryable, listId: number, fingerprint: string): Promise<ImportRun | null> {
  const { rows } = await db.query<ImportRun>(
    'select id, list_id, source, fingerprint, finished_at from archive_imports where list_id = $1 and fingerprint = $2 order by id desc limit 1',
    [listId, fingerprint],
  );
  return rows[0] ?? null;
}

export async function startImportRun(db: Queryable, listId: number, source: string, fingerprint: string): Promise<ImportRun> {
  const { rows } = await db.query<ImportRun>(
    'insert into archive_imports (list_id, source, fingerprint) values ($1, $2, $3) returning id, list_id, source, fingerprint, finished_at',
    [listId, source, fingerprint],
  );
  return rows[0];
}

export interface ImportTotals {
  seen: number;
  imported: number;
  duplicates: number;
  broken: number;
}

export interface ResumePoint extends ImportTotals {
  nextOffset: number;
  nextIndex: number;
  /** the chunk at nextOffset when some of its parts committed: where it ends (re-read up to there) */
  partialEnd: number | null;
}

/**
 * Where an interrupted run goes on: the end of the unbroken chain of complete chunks from the
 * start (a chunk is complete when every one of its parts is recorded), and the totals of that chain.
 */
export async function resumePoint(db: Queryable, runId: number): Promise<ResumePoint> {
  const { rows } = await db.query<ResumePoint>(
    `with recursive chunks as (
       select first_offset, max(next_offset) as next_offset, max(next_index) as next_index,
              sum(seen) as seen, sum(imported) as imported, sum(duplicates) as duplicates, sum(broken) as broken,
              count(*) = max(parts) as complete
         from archive_import_batches where import_id = $1 group by first_offset
     ), chain (first_offset, next_offset, next_index, seen, imported, duplicates, broken) as (
       select first_offset, next_offset, next_index, seen, imported, duplicates, broken
         from chunks where first_offset = 0 and complete
       union all
       select k.first_offset, k.next_offset, k.next_index, k.seen, k.imported, k.duplicates, k.broken
         from chain c join chunks k on k.first_offset = c.next_offset and k.complete
     ), totals as (
       select coalesce(max(next_offset), 0)::bigint as "nextOffset", coalesce(max(next_index), 0)::int as "nextIndex",
              coalesce(sum(seen), 0)::int as seen, coalesce(sum(imported), 0)::int as imported,
              coalesce(sum(duplicates), 0)::int as duplicates, coalesce(sum(broken), 0)::int as broken
         from chain
     )
     select t.*, (select k.next_offset from chunks k where k.first_offset = t."nextOffset" and not k.complete)::bigint as "partialEnd"
       from totals t`,
    [runId],
  );
  const r = rows[0];
  return { ...r, nextOffset: Number(r.nextOffset), partialEnd: r.partialEnd === null ? null : Number(r.partialEnd) };
}

export interface BatchRecord extends ImportTotals {
  firstOffset: number;
  nextOffset: number;
  nextIndex: number;
  /** which part of its chunk, of how many (one per writer) */
  part: number;
  parts: number;
}

/**
 * A batch's range and counts; called in the batch's transaction so they commit with its messages.
 * When this part was recorded by an earlier, interrupted run (its messages are now duplicates),
 * that record stands and its totals are returned, so nothing is counted twice.
 */
export async function recordImportBatch(db: Queryable, runId: number, b: BatchRecord): Promise<ImportTotals> {
  const { rows } = await db.query<ImportTotals>(
    `with added as (
       insert into archive_import_batches (import_id, first_offset, next_offset, next_index, seen, imported, duplicates, broken, part, parts)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict do nothing
       returning seen, imported, duplicates, broken)
     select * from added
     union all
     select seen, imported, duplicates, broken from archive_import_batches
      where import_id = $1 and first_offset = $2 and part = $9 and not exists (select 1 from added)`,
    [runId, b.firstOffset, b.nextOffset, b.nextIndex, b.seen, b.imported, b.duplicates, b.broken, b.part, b.parts],
  );
  return rows[0];
}

export async function finishImportRun(db: Queryable, runId: number): Promise<void> {
  await db.query('update archive_imports set finished_at = now() where id = $1', [runId]);
}

/** Which of these Message-IDs the list already has, with the size of its message under each. */
export async function messageIdsInList(db: Queryable, listId: number, messageIds: string[]): Promise<Map<string, number>> {
  if (messageIds.length === 0) return new Map();
  const { rows } = await db.query<{ message_id: string; size: number }>(
    `select m.message_id, m.size from messages m join list_messages lm on lm.message_id = m.id and lm.list_id = $1
      where m.message_id = any($2::text[])`,
    [listId, messageIds],
  );
  return new Map(rows.map((r) => [r.message_id, r.size]));
}

/**
 * Which of these messages differ from the list's message under their Message-ID (trace header
 * fields aside: message_same_content in sql/0013, the rule live mail is held to), by position.
 */
export async function differFromList(db: Queryable, listId: number, items: { messageId: string; raw: Buffer }[]): Promise<Set<number>> {
  if (items.length === 0) return new Set();
  const { rows } = await db.query<{ ord: number }>(
    `select x.ord::int from unnest($2::text[], $3::bytea[]) with ordinality x(message_id, raw, ord)
      where not exists (select 1 from messages m join list_messages lm on lm.message_id = m.id and lm.list_id = $1
                         where m.message_id = x.message_id and message_same_content(m.raw, x.raw, false))`,
    [listId, items.map((i) => i.messageId), items.map((i) => i.raw)],
  );
  return new Set(rows.map((r) => r.ord - 1));
}

/** Whether two messages are the same one, trace header fields aside (message_same_content). */
export async function sameMessage(db: Queryable, a: Buffer, b: Buffer): Promise<boolean> {
  const { rows } = await db.query<{ same: boolean }>('select message_same_content($1, $2, false) as same', [a, b]);
  return rows[0].same;
}

/**
 * Stores and threads parsed messages in one set-based call (see import_messages in sql/0004;
 * its latest form is sql/0070's).
 * Returns how many were stored and how many were newly added to the list.
 */
export async function importBatch(db: Queryable, listId: number, batch: { raw: Buffer; message: ParsedMessage }[]): Promise<{ created: number; added: number }> {
  const col = <T>(f: (m: ParsedMessage, raw: Buffer) => T) => batch.map((b) => f(b.message, b.raw));
  const { rows } = await db.query<{ created: number; added: number }>(
    'select * from import_messages($1, $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::text[])',
    [
      listId,
      col((m) => m.messageId),
      col((_m, raw) => raw),
      col((m) => m.subject),
      col((m) => m.fromName),
      col((m) => m.fromEmail),
      col((m) => m.date.toISOString()),
      col((m) => m.inReplyTo ?? ''),
      col((m) => m.references.join(' ')),
      col((m) => m.text),
      col((m) => m.attachments.length > 0),
      col((m) => storedAttachmentText(m.attachments)),
    ],
  );
  return rows[0];
}

/**
 * Session settings for a bulk load: commits need not wait for the disk (a crash only repeats the
 * last batches, as progress commits with them), and new search entries gather in a larger GIN
 * pending list that is merged into the index in big sorted steps (about 10% faster).
 */
export async function tuneForBulkLoad(db: Queryable): Promise<void> {
  await db.query(`set synchronous_commit = off`);
  await db.query(`set gin_pending_list_limit = '64MB'`);
  await db.query(`set work_mem = '64MB'`);
}

/** Undoes tuneForBulkLoad (every session setting back to its default), before the client is pooled again. */
export async function untuneForBulkLoad(db: Queryable): Promise<void> {
  await db.query('reset all');
}

/**
 * After a load: the search index's pending entries merged (searches scan them one by one until
 * then), and fresh planner statistics, so archive pages get good plans at once.
 */
export async function settleArchive(db: Queryable, big: boolean): Promise<void> {
  await db.query(`set work_mem = '64MB'`);
  await db.query(`select gin_clean_pending_list('messages_tsv'::regclass)`);
  if (big) await db.query('analyze messages, list_messages, unresolved_refs');
}
