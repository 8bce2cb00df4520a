import type { ParsedMessage } from '../mail/parse.ts';
import type { Queryable } from './pool.ts';

/** Bulk writes of `listkeeper import`: batches through import_messages() and the progress row. */

export interface ImportRun {
  id: number;
  list_id: number;
  source: string;
  fingerprint: string;
  next_offset: number;
  next_index: number;
  seen: number;
  imported: number;
  duplicates: number;
  broken: number;
  finished_at: Date | null;
}

/** The latest run of this file into this list, finished or not. */
export async function latestImportRun(db: Queryable, listId: number, fingerprint: string): Promise<ImportRun | null> {
  const { rows } = await db.query<ImportRun>(
    'select * from archive_imports where list_id = $1 and fingerprint = $2 order by id desc limit 1',
    [listId, fingerprint],
  );
  return rows[0] ?? null;
}

export async function startImportRun(db: Queryable, listId: number, source: string, fingerprint: string): Promise<ImportRun> {
  const { rows } = await db.query<ImportRun>(
    'insert into archive_imports (list_id, source, fingerprint) values ($1, $2, $3) returning *',
    [listId, source, fingerprint],
  );
  return rows[0];
}

export interface ImportProgress {
  nextOffset: number;
  nextIndex: number;
  seen: number;
  imported: number;
  duplicates: number;
  broken: number;
}

/** Adds a batch's counts; called in the batch's transaction so progress and data commit together. */
export async function recordImportProgress(db: Queryable, runId: number, p: ImportProgress): Promise<void> {
  await db.query(
    `update archive_imports set next_offset = $2, next_index = $3, seen = seen + $4, imported = imported + $5,
            duplicates = duplicates + $6, broken = broken + $7, updated_at = now() where id = $1`,
    [runId, p.nextOffset, p.nextIndex, p.seen, p.imported, p.duplicates, p.broken],
  );
}

export async function finishImportRun(db: Queryable, runId: number): Promise<ImportRun> {
  const { rows } = await db.query<ImportRun>('update archive_imports set finished_at = now(), updated_at = now() where id = $1 returning *', [runId]);
  return rows[0];
}

/** Which of these Message-IDs the list already has. */
export async function messageIdsInList(db: Queryable, listId: number, messageIds: string[]): Promise<Set<string>> {
  if (messageIds.length === 0) return new Set();
  const { rows } = await db.query<{ message_id: string }>(
    `select m.message_id from messages m join list_messages lm on lm.message_id = m.id and lm.list_id = $1
      where m.message_id = any($2::text[])`,
    [listId, messageIds],
  );
  return new Set(rows.map((r) => r.message_id));
}

/**
 * Stores and threads parsed messages in one set-based call (see import_messages in sql/0004).
 * Returns how many were stored and how many were newly added to the list.
 */
export async function importBatch(db: Queryable, listId: number, batch: { raw: Buffer; message: ParsedMessage }[]): Promise<{ created: number; added: number }> {
  const col = <T>(f: (m: ParsedMessage, raw: Buffer) => T) => batch.map((b) => f(b.message, b.raw));
  const { rows } = await db.query<{ created: number; added: number }>(
    'select * from import_messages($1, $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::boolean[])',
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
    ],
  );
  return rows[0];
}

/** Session settings for a bulk load: commits need not wait for the disk (a crash only repeats
 * the last batches, as progress commits with them), and the GIN index is merged in larger steps. */
export async function tuneForBulkLoad(db: Queryable): Promise<void> {
  await db.query(`set synchronous_commit = off`);
  await db.query(`set gin_pending_list_limit = '16MB'`);
}

/** Fresh planner statistics after a big load, so archive pages get good plans at once. */
export async function analyzeArchive(db: Queryable): Promise<void> {
  await db.query('analyze messages, list_messages, unresolved_refs');
}
