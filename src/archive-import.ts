import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type pg from 'pg';
import {
  analyzeArchive, finishImportRun, importBatch, latestImportRun, messageIdsInList, recordImportProgress, startImportRun, tuneForBulkLoad,
  type ImportRun,
} from './db/archive-import.ts';
import type { Database } from './db/database.ts';
import type { ListRow } from './db/lists.ts';
import { InvalidInput, isAppError } from './errors.ts';
import { NotAnMbox, readMbox, type MboxMessage } from './mail/mbox.ts';
import { parse, type ParsedMessage } from './mail/parse.ts';
import { undoPipermailFrom } from './mail/pipermail.ts';
import { archiveMessageId } from './mail/raw-headers.ts';

/**
 * `listkeeper import`: an mbox file into a list's archive, in batches of a few hundred messages
 * per transaction. While PostgreSQL stores and indexes one batch, the next one is parsed here.
 * Each batch commits together with the run's progress row, so an interrupted import resumes at
 * the first message it had not committed, and a second run of the same file adds nothing:
 * Message-IDs already in the list are recognised from the headers alone and not parsed again.
 * A message that cannot be parsed or stored is reported with its position and skipped.
 */
export interface ImportOptions {
  batchSize?: number;
  onProgress?: (p: ImportState) => void;
  onBroken?: (b: BrokenMessage) => void;
  /** stop after the batch in flight commits; run again to resume */
  signal?: AbortSignal;
}

export interface ImportState {
  runId: number;
  resumedAt: number | null;
  /** bytes of the file read so far, and its size */
  bytes: number;
  totalBytes: number;
  seen: number;
  added: number;
  stored: number;
  duplicates: number;
  broken: number;
  seconds: number;
  interrupted: boolean;
}

export interface BrokenMessage {
  index: number;
  offset: number;
  messageId: string | null;
  reason: string;
}

interface Prepared {
  entries: MboxMessage[];
  parsed: { raw: Buffer; message: ParsedMessage; entry: MboxMessage }[];
  broken: BrokenMessage[];
}

const RETRYABLE = new Set(['40001', '40P01']);

export async function importMbox(db: Database, list: ListRow, file: string, opts: ImportOptions = {}): Promise<ImportState> {
  const batchSize = opts.batchSize ?? 500;
  const started = performance.now();
  const source = path.resolve(file);
  const { size, fingerprint, gzipped } = await describeFile(source);

  const previous = await latestImportRun(db.pool, list.id, fingerprint);
  const resume = previous && !previous.finished_at && previous.next_offset > 0 ? previous : null;
  const run: ImportRun = resume ?? (await startImportRun(db.pool, list.id, source, fingerprint));
  const state: ImportState = {
    runId: run.id, resumedAt: resume ? resume.next_index : null, bytes: 0, totalBytes: size,
    seen: run.seen, added: run.imported, stored: 0, duplicates: run.duplicates, broken: run.broken, seconds: 0, interrupted: false,
  };

  const fileStream = fs.createReadStream(source, { start: gzipped ? 0 : run.next_offset, highWaterMark: 1 << 20 });
  const stream: Readable = gzipped ? fileStream.pipe(zlib.createGunzip({ chunkSize: 1 << 20 })) : fileStream;
  const chunks = gzipped ? skipBytes(stream, run.next_offset) : stream;
  const client = await db.pool.connect();
  let inflight: Promise<void> | null = null;
  try {
    await tuneForBulkLoad(client);
    let pending: MboxMessage[] = [];
    const flush = async () => {
      const prepared = await prepare(db.pool, list.id, pending, opts.onBroken);
      pending = [];
      if (inflight) await inflight;
      inflight = write(client, run.id, list.id, prepared, state, opts.onBroken).then(() => {
        state.bytes = gzipped ? fileStream.bytesRead : run.next_offset + fileStream.bytesRead;
        state.seconds = (performance.now() - started) / 1000;
        opts.onProgress?.(state);
      });
    };
    for await (const entry of readMbox(chunks, { startOffset: run.next_offset, startIndex: run.next_index })) {
      pending.push(entry);
      if (pending.length >= batchSize) {
        await flush();
        if (opts.signal?.aborted) {
          state.interrupted = true;
          break;
        }
      }
    }
    if (!state.interrupted && pending.length > 0) await flush();
    if (inflight) await inflight;
    inflight = null;
    if (!state.interrupted) await finishImportRun(client, run.id);
    if (state.stored >= 1000) await analyzeArchive(client);
  } catch (err) {
    if (inflight) await (inflight as Promise<void>).catch(() => undefined);
    if (err instanceof NotAnMbox) throw new InvalidInput(`${file}: ${err.message}`, 'not_mbox');
    throw err;
  } finally {
    client.release();
    fileStream.destroy();
  }
  state.bytes = state.interrupted ? state.bytes : size;
  state.seconds = (performance.now() - started) / 1000;
  return state;
}

/** Parses the messages the list does not have yet; the others are counted as duplicates. */
async function prepare(pool: pg.Pool, listId: number, entries: MboxMessage[], onBroken?: (b: BrokenMessage) => void): Promise<Prepared> {
  const ids = entries.map((e) => archiveMessageId(e.raw));
  const known = await messageIdsInList(pool, listId, ids);
  const out: Prepared = { entries, parsed: [], broken: [] };
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (known.has(ids[i])) continue;
    try {
      const message = undoPipermailFrom(await parse(entry.raw));
      out.parsed.push({ raw: entry.raw, message, entry });
    } catch (err) {
      const b = { index: entry.index, offset: entry.offset, messageId: null, reason: isAppError(err) ? err.message : String(err) };
      out.broken.push(b);
      onBroken?.(b);
    }
  }
  return out;
}

/** One batch in one transaction with its progress; on a storage error, message by message. */
async function write(client: pg.PoolClient, runId: number, listId: number, p: Prepared, state: ImportState, onBroken?: (b: BrokenMessage) => void) {
  const last = p.entries[p.entries.length - 1];
  const progress = { nextOffset: last.end, nextIndex: last.index + 1, seen: p.entries.length };
  let outcome: Outcome | null = null;
  for (let attempt = 0; outcome === null; attempt++) {
    try {
      outcome = await inTransaction(client, async () => {
        const r = p.parsed.length ? await importBatch(client, listId, p.parsed) : { created: 0, added: 0 };
        const o = { ...r, broken: p.broken.length };
        await recordImportProgress(client, runId, counts(progress, o));
        return o;
      });
    } catch (err) {
      if (RETRYABLE.has((err as { code?: string }).code ?? '') && attempt < 5) continue;
      outcome = await writeOneByOne(client, runId, listId, p, progress, onBroken);
    }
  }
  state.seen += progress.seen;
  state.added += outcome.added;
  state.stored += outcome.created;
  state.broken += outcome.broken;
  state.duplicates += progress.seen - outcome.added - outcome.broken;
}

interface Outcome {
  created: number;
  added: number;
  broken: number;
}

function counts(progress: { nextOffset: number; nextIndex: number; seen: number }, o: Outcome) {
  return { ...progress, imported: o.added, duplicates: progress.seen - o.added - o.broken, broken: o.broken };
}

/** Finds the message PostgreSQL refused: each in its own transaction, the refused one reported. */
async function writeOneByOne(client: pg.PoolClient, runId: number, listId: number, p: Prepared, progress: { nextOffset: number; nextIndex: number; seen: number }, onBroken?: (b: BrokenMessage) => void): Promise<Outcome> {
  const o: Outcome = { created: 0, added: 0, broken: p.broken.length };
  for (const one of p.parsed) {
    try {
      const r = await inTransaction(client, () => importBatch(client, listId, [one]));
      o.created += r.created;
      o.added += r.added;
    } catch (err) {
      o.broken++;
      onBroken?.({ index: one.entry.index, offset: one.entry.offset, messageId: one.message.messageId, reason: `could not be stored: ${(err as Error).message}` });
    }
  }
  await recordImportProgress(client, runId, counts(progress, o));
  return o;
}

async function inTransaction<T>(client: pg.PoolClient, fn: () => Promise<T>): Promise<T> {
  await client.query('begin');
  try {
    const r = await fn();
    await client.query('commit');
    return r;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  }
}

/** Size, gzip or not, and a fingerprint (size and the hash of the first MiB) naming the file's content. */
async function describeFile(file: string): Promise<{ size: number; fingerprint: string; gzipped: boolean }> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (err) {
    throw new InvalidInput(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, 'no_file');
  }
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(Math.min(size, 1 << 20));
    await handle.read(head, 0, head.length, 0);
    const hash = crypto.createHash('sha256').update(head).digest('hex').slice(0, 32);
    return { size, fingerprint: `${size}:${hash}`, gzipped: head[0] === 0x1f && head[1] === 0x8b };
  } finally {
    await handle.close();
  }
}

/** The stream from the given (decompressed) offset on. */
async function* skipBytes(stream: AsyncIterable<Buffer>, skip: number): AsyncGenerator<Buffer> {
  let left = skip;
  for await (const chunk of stream) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}
