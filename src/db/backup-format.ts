/*
 * The backup file's container: one stream of length-framed records, so that writing and reading
 * it keep only one frame in memory whatever the archive's size (docs/operations.md, "Backups").
 * Two methods write it; the header's `format` says which.
 *
 * The listkeeper format (format 1), any server:
 *   MAGIC
 *   'H' header   JSON: format, created_at, server version, schema (migrations applied),
 *                tables in load order with their columns and row counts, sequences' values
 *   per table:   'D' COPY (FORMAT binary) bytes, in frames of at most MAX_FRAME
 *                'E' JSON {table, rows, sha256} (sha256 of that table's COPY bytes)
 *   'T' trailer  JSON {tables: [{table, rows, sha256}], sha256} (sha256 of every byte before it)
 *
 * The pg_dump format (format "pg_dump"), when a pg_dump of the server's major is on the PATH:
 *   MAGIC
 *   'H' header   JSON: as above without sequences (pg_dump carries them), plus the server's
 *                version number and pg_dump's version
 *   'P' frames   pg_dump's custom-format archive, each frame its sha256 (32 bytes) then its
 *                bytes, so that a damaged frame is refused before pg_restore reads it
 *   'T' trailer  JSON {tables: [{table, rows, sha256}], pg_dump: {bytes, sha256}, sha256}: each
 *                table's rows and sha256 as the listkeeper format computes them, from the same
 *                snapshot, for restore's check; the archive's; the file's
 *
 * A frame is its kind (1 byte), its length (uint32 big-endian) and the payload. The whole stream
 * may be gzipped (a FILE ending in .gz is written so; a reader detects it by its magic bytes).
 */

import crypto from 'node:crypto';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { InvalidInput } from '../errors.ts';
import { TrailingGzipGarbage } from '../gzip.ts';

export const MAGIC = Buffer.from('LISTKEEPER BACKUP\n');
export const FORMAT_VERSION = 1;
/** Larger COPY chunks are split; a reader refuses a longer frame as corruption rather than buffer it. */
export const MAX_FRAME = 1 << 20;

export type FrameKind = 'H' | 'D' | 'E' | 'P' | 'T';
const KINDS: string[] = ['H', 'D', 'E', 'P', 'T'];
/** A 'P' frame's sha256 before its bytes. */
export const FRAME_DIGEST = 32;

export interface BackupTable {
  name: string;
  /** stored columns in COPY order (generated ones are left out: PostgreSQL computes them again) */
  columns: { name: string; type: string }[];
  /** the primary key's columns: COPY reads in this order, so a restored table re-reads to the same bytes */
  key: string[];
  rows: number;
}

interface HeaderCommon {
  created_at: string;
  server_version: string;
  /** the migrations applied to the database backed up: its schema version */
  migrations: string[];
  tables: BackupTable[];
  /** tables left out on purpose (transient state; their definitions are in a pg_dump archive, not their rows) */
  excluded: string[];
}

/** The listkeeper format's header. */
export interface BackupHeader extends HeaderCommon {
  format: number;
  sequences: { name: string; last_value: string; is_called: boolean }[];
}

/** The pg_dump format's header. */
export interface PgDumpHeader extends HeaderCommon {
  format: typeof PG_DUMP_FORMAT;
  server_version_num: number;
  /** as `pg_dump --version` gave it (`15.20`), and its major: restore needs a pg_restore of that major or later */
  pg_dump_version: string;
  pg_dump_major: number;
}

export const PG_DUMP_FORMAT = 'pg_dump';

export type AnyBackupHeader = BackupHeader | PgDumpHeader;

export const isPgDumpHeader = (h: AnyBackupHeader): h is PgDumpHeader => h.format === PG_DUMP_FORMAT;

export interface TableEnd {
  table: string;
  rows: number;
  sha256: string;
}

export interface BackupTrailer {
  tables: TableEnd[];
  /** the pg_dump format's archive: its length and sha256 */
  pg_dump?: { bytes: number; sha256: string };
  sha256: string;
}

/** The reason a backup file cannot be used, as one line for the operator. */
export class BackupFileError extends InvalidInput {
  constructor(message: string) {
    super(message, 'bad_backup_file');
  }
}

/** A JSON record of the file (header, table end, trailer), or one line saying it is unreadable. */
export function parseRecord<T>(payload: Buffer, what: string): T {
  try {
    return JSON.parse(payload.toString('utf8')) as T;
  } catch {
    throw new BackupFileError(`the backup file is corrupt: ${what} is not readable`);
  }
}

/** Writes frames to `out`, waiting for it to drain (memory stays bounded), and hashes all it writes. */
export class FrameWriter {
  private readonly hash = crypto.createHash('sha256');
  private hashing = true;
  bytes = 0;

  constructor(
    private readonly out: Writable,
    private readonly failed: Promise<never>,
  ) {}

  async start(): Promise<void> {
    await this.write(MAGIC);
  }

  /** Writes a payload as frames of `kind`; a data payload longer than MAX_FRAME is split. */
  async frame(kind: FrameKind, payload: Buffer): Promise<void> {
    let at = 0;
    do {
      const part = payload.subarray(at, at + MAX_FRAME);
      const head = Buffer.alloc(5);
      head.write(kind, 0, 'latin1');
      head.writeUInt32BE(part.length, 1);
      await this.write(head);
      await this.write(part);
      at += MAX_FRAME;
    } while (at < payload.length);
  }

  /** Writes a part of a pg_dump archive as 'P' frames, each led by its own sha256. */
  async pgDump(data: Buffer): Promise<void> {
    for (let at = 0; at < data.length; at += MAX_FRAME - FRAME_DIGEST) {
      const part = data.subarray(at, at + MAX_FRAME - FRAME_DIGEST);
      await this.frame('P', Buffer.concat([crypto.createHash('sha256').update(part).digest(), part]));
    }
  }

  async json(kind: 'H' | 'E' | 'T', value: unknown): Promise<void> {
    const payload = Buffer.from(JSON.stringify(value));
    if (payload.length > MAX_FRAME) throw new Error(`backup ${kind} record too large (${payload.length} bytes)`);
    await this.frame(kind, payload);
  }

  /** The sha256 of everything written so far; taken once, just before the trailer (which it does not cover). */
  digest(): string {
    this.hashing = false;
    return this.hash.digest('hex');
  }

  private async write(buf: Buffer): Promise<void> {
    if (buf.length === 0) return;
    if (this.hashing) this.hash.update(buf);
    this.bytes += buf.length;
    if (!this.out.write(buf)) await Promise.race([once(this.out, 'drain'), this.failed]);
  }
}

/** Reads frames from a (decompressed) backup stream, checking the magic and the frames' shape. */
export class FrameReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private readonly hash = crypto.createHash('sha256');
  /** the trailer has been read (and its caller checked it before asking for more) */
  private trailerRead = false;
  bytes = 0;

  constructor(input: AsyncIterable<Buffer>) {
    this.chunks = input[Symbol.asyncIterator]();
  }

  async start(): Promise<void> {
    const magic = await this.take(MAGIC.length);
    if (!magic || !magic.equals(MAGIC)) throw new BackupFileError('not a listkeeper backup file (it does not begin as one)');
    this.hash.update(magic);
  }

  /** The next frame, or null at the end of the stream. */
  async next(): Promise<{ kind: FrameKind; payload: Buffer } | null> {
    const head = await this.take(5);
    if (head === null) return null;
    const kind = head.toString('latin1', 0, 1) as FrameKind;
    const length = head.readUInt32BE(1);
    if (!KINDS.includes(kind) || length > MAX_FRAME) {
      throw new BackupFileError(`the backup file is corrupt at byte ${this.bytes - 5} (not a valid record)`);
    }
    const payload = length === 0 ? Buffer.alloc(0) : await this.take(length);
    if (payload === null) throw truncated();
    if (kind !== 'T') this.hash.update(head).update(payload);
    else this.trailerRead = true;
    return { kind, payload };
  }

  /** The sha256 of every byte before the trailer (call when the trailer has been read). */
  digest(): string {
    return this.hash.digest('hex');
  }

  /** n bytes; null at a clean end of the stream (nothing buffered), a truncation error mid-way. */
  private async take(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      const { value, done } = await this.chunks.next().catch((err) => gzipError(err, this.trailerRead && this.buf.length === 0));
      if (done) {
        if (this.buf.length === 0) return null;
        throw truncated();
      }
      this.buf = this.buf.length === 0 ? (value as Buffer) : Buffer.concat([this.buf, value as Buffer]);
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.bytes += n;
    return out;
  }
}

/**
 * A gzip stream that ends early or is damaged throws zlib errors: one clear line instead. Bytes
 * after the gzip data that are not gzip (src/gzip.ts) are refused too, as bytes after the trailer
 * are: listkeeper writes a backup to FILE.tmp and renames it once whole, so they were added to the
 * file since (appended to, written over a longer file, two files joined), and restore does not
 * guess what was meant. After a trailer that checked out, the line says how to restore the
 * backup before them, knowingly (`gzip -dc` warns about them and leaves them out).
 */
function gzipError(err: unknown, afterTrailer: boolean): never {
  if (err instanceof TrailingGzipGarbage) {
    if (afterTrailer) {
      throw new BackupFileError(
        `the backup file is corrupt: it goes on after its gzip data (the bytes from byte ${err.offset} are not gzip); ` +
          'the backup before them checked out against its checksums: to restore it all the same, use gzip -dc FILE | listkeeper restore -',
      );
    }
    throw new BackupFileError(`the backup file is truncated (its gzip data ends before its trailer), and the bytes from byte ${err.offset} are not gzip`);
  }
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('Z_') || code === 'ERR_ZLIB') throw new BackupFileError(`the backup file is truncated or corrupt (gzip: ${(err as Error).message})`);
  throw err;
}

function truncated(): BackupFileError {
  return new BackupFileError('the backup file is truncated (it ends before its trailer): it was not written to the end');
}
