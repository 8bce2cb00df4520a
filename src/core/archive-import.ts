/*
 * `listkeeper import`: an mbox file into a list's archive, in batches of a few hundred messages
 * per transaction, stored set-based by import_messages() (sql/0004). The file is read in chunks,
 * and each chunk is split by thread into one batch per writer (connection), written at once
 * while the next chunk is parsed here, so PostgreSQL (tsvectors, indexes) and this process work
 * in parallel (parse() reads plain-text mail without the MIME parser). Split by thread, because
 * storing a message locks its thread's Message-IDs (lock_thread_keys): consecutive batches of a
 * file in date order share threads, and two writers given them took turns on those locks.
 * Each batch commits with a row recording its chunk's byte range and its part, so an interrupted
 * import resumes at the first chunk not wholly committed (sql/0057), and a second
 * run of the same file adds nothing: Message-IDs already in the list are recognised from the
 * headers alone, without parsing. A message that cannot be parsed or stored is reported with its
 * position and skipped.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import {
  differFromList, finishImportRun, importBatch, latestImportRun, messageIdsInList, recordImportBatch, resumePoint, sameMessage,
  settleArchive, startImportRun, tuneForBulkLoad, untuneForBulkLoad,
} from '../db/archive-import.ts';
import type { Database } from '../db/database.ts';
import type { ListRow } from '../db/lists.ts';
import { inTransaction, isConnectionLoss } from '../db/pool.ts';
import { InvalidInput, isAppError, TemporaryFailure } from '../errors.ts';
import { gunzip } from '../gzip.ts';
import { fromLineDate, NotAnMbox, readMbox, type MboxMessage } from '../mail/mbox.ts';
import { parse, type ParsedMessage } from '../mail/parse.ts';
import { undoPipermailFrom } from '../mail/pipermail.ts';
import { archiveIdentity } from '../mail/raw-headers.ts';

export interface ImportOptions {
  batchSize?: number;
  /** batches written at the same time (connections) */
  writers?: number;
  onProgress?: (p: ImportState) => void;
  onBroken?: (b: BrokenMessage) => void;
  /** stop after the batches in flight commit; run again to resume */
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
  /** connections that wrote at once, and the messages of a chunk they split between them */
  writers: number;
  chunkMessages: number;
  /**
   * A gzip file's bytes after its last member that are not gzip data (from `offset` to its end),
   * which were not read: GNU gzip's "trailing garbage", ignored as gzip ignores it.
   */
  trailingGarbage: { offset: number; bytes: number } | null;
}

export interface BrokenMessage {
  index: number;
  offset: number;
  messageId: string | null;
  reason: string;
}

/** One writer's share of a chunk of the file: the chunk's range, and the messages of its threads. */
interface Part {
  firstOffset: number;
  last: MboxMessage;
  part: number;
  parts: number;
  /** messages of the chunk given to this part, parsed or not */
  seen: number;
  parsed: { raw: Buffer; message: ParsedMessage; entry: MboxMessage }[];
  broken: number;
}

interface Outcome {
  created: number;
  added: number;
  duplicates: number;
  broken: number;
  seen: number;
}

const RETRYABLE = new Set(['40001', '40P01']);
// A batch also ends at this many bytes, so memory stays bounded when messages are big.
const BATCH_BYTES = 32 * 1024 * 1024;

export async function importMbox(db: Database, list: ListRow, file: string, opts: ImportOptions = {}): Promise<ImportState> {
  const batchSize = opts.batchSize ?? 500;
  const writerCount = Math.max(1, opts.writers ?? 2);
  const started = performance.now();
  const source = path.resolve(file);
  const { size, fingerprint, gzipped } = await describeFile(source);

  const previous = await latestImportRun(db.pool, list.id, fingerprint);
  const run = previous && !previous.finished_at ? previous : await startImportRun(db.pool, list.id, source, fingerprint);
  const from = await resumePoint(db.pool, run.id);
  const state: ImportState = {
    runId: run.id, resumedAt: from.nextOffset > 0 ? from.nextIndex : null, bytes: 0, totalBytes: size, seen: from.seen,
    added: from.imported, stored: 0, duplicates: from.duplicates, broken: from.broken, seconds: 0, interrupted: false,
    writers: writerCount, chunkMessages: batchSize * writerCount, trailingGarbage: null,
  };

  const fileStream = fs.createReadStream(source, { start: gzipped ? 0 : from.nextOffset, highWaterMark: 1 << 20 });
  // Every member of the file, as `gzip -dc` reads it (src/gzip.ts); damaged data reaches the loop
  // below as an error. Bytes after the last member that are not gzip are ignored, as gzip ignores
  // them, and said in the result: zlib's gunzip took them for damage and stopped the import there,
  // dropping what it had decompressed of the chunk before them (a small file's every message), and
  // the run could not be finished.
  const stream: AsyncIterable<Buffer> = gzipped
    ? gunzip(fileStream, { chunkSize: 1 << 20, onTrailingGarbage: (offset) => void (state.trailingGarbage = { offset, bytes: size - offset }) })
    : fileStream;
  const writers: pg.PoolClient[] = [];
  const inflight = new Set<Promise<void>>();
  try {
    for (let i = 0; i < writerCount; i++) {
      writers.push(await (db.sessionPool ?? db.pool).connect());
      await tuneForBulkLoad(writers[i]);
    }
    // Writer i writes part i of every chunk, one after the other: the parts of one chunk share no
    // thread, but part i of the next chunk shares threads with part i of this one.
    const busy: (Promise<void> | undefined)[] = writers.map(() => undefined);
    let failure: unknown = null;
    const dispatch = async (p: Part) => {
      await busy[p.part];
      if (failure) throw failure;
      const client = writers[p.part];
      const job: Promise<void> = write(client, run.id, list.id, p, opts.onBroken)
        .then((o) => {
          Object.assign(state, {
            seen: state.seen + o.seen, added: state.added + o.added, stored: state.stored + o.created, broken: state.broken + o.broken,
            duplicates: state.duplicates + o.duplicates,
            // committed so far (for gzip, compressed bytes read: offsets count decompressed bytes)
            bytes: gzipped ? fileStream.bytesRead : Math.max(state.bytes, p.last.end),
            seconds: (performance.now() - started) / 1000,
          });
          opts.onProgress?.(state);
        })
        .catch((err) => void (failure ??= err))
        .finally(() => inflight.delete(job));
      busy[p.part] = job;
      inflight.add(job);
    };

    // A chunk is a batch per writer. The one an interrupted run left partly committed is read again
    // up to exactly where it ended then, so that its parts are the same.
    let pending: MboxMessage[] = [];
    let pendingBytes = 0;
    let chunkStart = from.nextOffset;
    let chunkEnd = from.partialEnd;
    const chunks = gzipped ? skipBytes(stream, from.nextOffset) : stream;
    let previous = new Map<string, Buffer>();
    const writeChunk = async () => {
      const prepared = await prepare(db.pool, list, chunkStart, pending, writerCount, previous, opts.onBroken);
      previous = prepared.firsts;
      for (const part of prepared.parts) await dispatch(part);
      chunkStart = pending[pending.length - 1].end;
      chunkEnd = null;
      pending = [];
      pendingBytes = 0;
    };
    for await (const entry of readMbox(chunks, { startOffset: from.nextOffset, startIndex: from.nextIndex })) {
      pending.push(entry);
      pendingBytes += entry.raw.length;
      const full = chunkEnd !== null ? entry.end >= chunkEnd : pending.length >= state.chunkMessages || pendingBytes >= BATCH_BYTES;
      if (!full) continue;
      await writeChunk();
      if (opts.signal?.aborted) {
        state.interrupted = true;
        break;
      }
    }
    if (!state.interrupted && pending.length > 0) await writeChunk();
    await Promise.all(inflight);
    if (failure) throw failure;
    if (!state.interrupted) {
      await finishImportRun(db.pool, run.id);
      if (state.stored > 0) await settleArchive(writers[0], state.stored >= 1000);
    }
  } catch (err) {
    await Promise.allSettled(inflight);
    if (err instanceof NotAnMbox) throw new InvalidInput(`${file}: ${err.message}`, 'not_mbox');
    // The run stays unfinished with what was committed before the damage: the same file resumes there.
    if (gzipped && isZlibError(err)) throw new InvalidInput(`${file}: damaged or truncated gzip data (${(err as Error).message})`, 'bad_gzip');
    if (isConnectionLoss(err)) {
      throw new TemporaryFailure(
        `the database connection was lost during the import (${(err as Error).message}); ` +
          `the batches committed before it are kept: run the same command again to resume`,
        'database_lost',
      );
    }
    throw err;
  } finally {
    // The bulk-load settings (synchronous_commit off above all) must not outlive the import on
    // connections that go back to the pool.
    for (const w of writers) await untuneForBulkLoad(w).then(() => w.release(), (err) => w.release(err));
    fileStream.destroy();
  }
  state.bytes = state.interrupted ? state.bytes : size;
  state.seconds = (performance.now() - started) / 1000;
  return state;
}

/**
 * Parses the messages the list does not have yet (the others are counted as duplicates, or
 * reported when they are different messages under a Message-ID the list or the file has) and
 * splits the chunk into `parts` batches by thread (archiveIdentity's thread key). `previous`: the
 * first message under each Message-ID of the chunk before, whose batches may not have committed.
 */
async function prepare(
  pool: pg.Pool, list: ListRow, firstOffset: number, entries: MboxMessage[], parts: number, previous: Map<string, Buffer>, onBroken?: (b: BrokenMessage) => void,
): Promise<{ parts: Part[]; firsts: Map<string, Buffer> }> {
  // From the raw headers, so that a message falls in the same part whether it is parsed or not
  // (a resumed run finds some of a chunk already stored, and must split it as the first run did).
  const ids = entries.map((e) => archiveIdentity(e.raw));
  const known = await messageIdsInList(pool, list.id, ids.map((id) => id.messageId));
  // A Message-ID the list has names that message: one of another size is compared with it (so a
  // second run of a file compares nothing), and a different one is reported, as live mail with it
  // is refused (accept-post.ts): it was counted as "already archived" and silently left out.
  const sized = entries.flatMap((e, i) => (!e.skipped && known.has(ids[i].messageId) && known.get(ids[i].messageId) !== e.raw.length ? [i] : []));
  const differ = await differFromList(pool, list.id, sized.map((i) => ({ messageId: ids[i].messageId, raw: entries[i].raw })));
  const reused = new Set([...differ].map((k) => sized[k]));
  // The first message of the chunk under each Message-ID the list does not have is the one stored;
  // those of the chunk before may still be on their way (their batches not committed).
  const firstOfId = new Map<string, Buffer>();
  const last = entries[entries.length - 1];
  const out: Part[] = Array.from({ length: parts }, (_, part) => ({ firstOffset, last, part, parts, seen: 0, parsed: [], broken: 0 }));
  const partOfEntry = partsByThread(ids, parts);
  const reusedId = (i: number) => {
    out[partOfEntry[i]].broken++;
    onBroken?.({
      index: entries[i].index, offset: entries[i].offset, messageId: ids[i].messageId,
      reason: `Message-ID <${ids[i].messageId}> already names a different message in this file or in the archive of ${list.address}`,
    });
  };
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const p = out[partOfEntry[i]];
    p.seen++;
    if (entry.skipped) {
      p.broken++;
      onBroken?.({ index: entry.index, offset: entry.offset, messageId: null, reason: entry.skipped });
      continue;
    }
    if (reused.has(i)) {
      reusedId(i);
      continue;
    }
    if (known.has(ids[i].messageId)) continue;
    const first = firstOfId.get(ids[i].messageId) ?? previous.get(ids[i].messageId);
    if (first) {
      if (!first.equals(entry.raw) && !(await sameMessage(pool, first, entry.raw))) reusedId(i);
      continue;
    }
    try {
      p.parsed.push({ raw: entry.raw, message: undoPipermailFrom(await parse(entry.raw, new Date(), undatedAt(entry))), entry });
      firstOfId.set(ids[i].messageId, entry.raw);
    } catch (err) {
      p.broken++;
      onBroken?.({ index: entry.index, offset: entry.offset, messageId: null, reason: isAppError(err) ? err.message : String(err) });
    }
  }
  return { parts: out, firsts: firstOfId };
}

// The first e-mail was sent in 1971: a From_ line dated before it (the epoch) says nothing; nor
// does git format-patch's, which is this fixed date on every patch.
const FIRST_MAIL = Date.UTC(1971, 0, 1);
const GIT_FORMAT_PATCH = Date.UTC(2001, 8, 17);
const DAY_MS = 24 * 3600 * 1000;

/**
 * The date of a message of the file that gives none parse() can believe (no Date, or garbage, or
 * one more than a day in the future; and no Received hop with one): its From_ line's, written when
 * it was delivered into the mbox or archived, unless that is none or implausible; then the time
 * of the import. Dated by the import alone, such messages of a 2009 archive landed in this
 * month's pages and at the top of the list's feed, among the mail of this week.
 */
function undatedAt(entry: MboxMessage): Date {
  const now = Date.now();
  const t = fromLineDate(entry.fromLine)?.getTime();
  return t !== undefined && t >= FIRST_MAIL && t <= now + DAY_MS && t !== GIT_FORMAT_PATCH ? new Date(t) : new Date(now);
}

/**
 * Each message's part: messages that name a common Message-ID (as themselves, In-Reply-To or
 * References: the keys their threads lock) are one group, and a group goes where the thread key
 * of its first message in the chunk sends it. So no two parts of a chunk lock a common key, even
 * for mail that gives only In-Reply-To (a chain of replies, each naming the one before); and a
 * thread whose mail gives References keeps one part from chunk to chunk (its first Reference).
 */
export function partsByThread(ids: { threadKey: string; keys: string[] }[], parts: number): number[] {
  const up = new Map<string, string>();
  const find = (x: string): string => {
    let root = x;
    while (up.get(root) !== root) root = up.get(root)!;
    for (let y = x; y !== root; ) {
      const next = up.get(y)!;
      up.set(y, root);
      y = next;
    }
    return root;
  };
  for (const { keys } of ids) {
    for (const k of keys) if (!up.has(k)) up.set(k, k);
    for (const k of keys.slice(1)) {
      const [a, b] = [find(keys[0]), find(k)];
      if (a !== b) up.set(a, b);
    }
  }
  const firstOfGroup = new Map<string, string>();
  return ids.map(({ threadKey, keys }) => {
    const group = find(keys[0]);
    if (!firstOfGroup.has(group)) firstOfGroup.set(group, threadKey);
    return partOf(firstOfGroup.get(group)!, parts);
  });
}

/** A thread key's writer: FNV-1a of the key. Only speed depends on it (the locks keep threading right). */
export function partOf(key: string, parts: number): number {
  if (parts === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % parts;
}

/** The part's record, and what it counted: the record an earlier run committed for it, if any. */
async function record(client: pg.PoolClient, runId: number, p: Part, created: number, added: number, broken: number): Promise<Outcome> {
  const mine = { seen: p.seen, imported: added, duplicates: p.seen - added - broken, broken };
  const kept = await recordImportBatch(client, runId, {
    ...mine, firstOffset: p.firstOffset, nextOffset: p.last.end, nextIndex: p.last.index + 1, part: p.part, parts: p.parts,
  });
  return { created, added: kept.imported, duplicates: kept.duplicates, broken: kept.broken, seen: kept.seen };
}

/** One batch in one transaction with its record; on a storage error, message by message. */
async function write(client: pg.PoolClient, runId: number, listId: number, p: Part, onBroken?: (b: BrokenMessage) => void): Promise<Outcome> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await inTransaction(client, async () => {
        const r = p.parsed.length ? await importBatch(client, listId, p.parsed) : { created: 0, added: 0 };
        return record(client, runId, p, r.created, r.added, p.broken);
      });
    } catch (err) {
      // A lost connection says nothing about the messages: the import stops, to resume later.
      if (isConnectionLoss(err)) throw err;
      if (RETRYABLE.has((err as { code?: string }).code ?? '') && attempt < 5) continue;
      return writeOneByOne(client, runId, listId, p, onBroken);
    }
  }
}

/** Finds the message PostgreSQL refused: each in its own transaction, the refused one reported. */
async function writeOneByOne(client: pg.PoolClient, runId: number, listId: number, p: Part, onBroken?: (b: BrokenMessage) => void): Promise<Outcome> {
  let [created, added, broken] = [0, 0, p.broken];
  for (const one of p.parsed) {
    try {
      const r = await inTransaction(client, () => importBatch(client, listId, [one]));
      created += r.created;
      added += r.added;
    } catch (err) {
      if (isConnectionLoss(err)) throw err;
      broken++;
      onBroken?.({ index: one.entry.index, offset: one.entry.offset, messageId: one.message.messageId, reason: `could not be stored: ${(err as Error).message}` });
    }
  }
  return inTransaction(client, () => record(client, runId, p, created, added, broken));
}

function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('Z_');
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
    const stat = await handle.stat();
    // The import resumes by its position in the file and reads its head twice: a pipe or a device
    // died on the first read with "error: ESPIPE: invalid seek, read", a directory with EISDIR.
    if (!stat.isFile()) {
      throw new InvalidInput(`${file} is not a regular file (${stat.isDirectory() ? 'a directory' : 'a pipe or a device'}): save the mbox to a file and import that (the import resumes by its position in the file)`, 'no_file');
    }
    const { size } = stat;
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
