/*
 * The backup file's container: one stream of length-framed records, so that writing and reading
 * it keep only one frame in memory whatever the archive's size (docs/operations.md, "Backups").
 *
 *   MAGIC
 *   'H' header   JSON: format, created_at, server version, schema (migrations applied),
 *                tables in load order with their columns and row counts, sequences' values
 *   per table:   'D' COPY (FORMAT binary) bytes, in frames of at most MAX_FRAME
 *                'E' JSON {table, rows, sha256} (sha256 of that table's COPY bytes)
 *   'T' trailer  JSON {tables: [{table, rows, sha256}], sha256} (sha256 of every byte before it)
 *
 * A frame is its kind (1 byte), its length (uint32 big-endian) and the payload. The whole stream
 * may be gzipped (a FILE ending in .gz is written so; a reader detects it by its magic bytes).
 */

import crypto from 'node:crypto';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { InvalidInput } from '../errors.ts';

export const MAGIC = Buffer.from('LISTKEEPER BACKUP\n');
export const FORMAT_VERSION = 1;
/** Larger COPY chunks are split; a reader refuses a longer frame as corruption rather than buffer it. */
export const MAX_FRAME = 1 << 20;

export type FrameKind = 'H' | 'D' | 'E' | 'T';

export interface BackupTable {
  name: string;
  /** stored columns in COPY order (generated ones are left out: PostgreSQL computes them again) */
  columns: { name: string; type: string }[];
  /** the primary key's columns: COPY reads in this order, so a restored table re-reads to the same bytes */
  key: string[];
  rows: number;
}

export interface BackupHeader {
  format: number;
  created_at: string;
  server_version: string;
  /** the migrations applied to the database backed up: its schema version */
  migrations: string[];
  tables: BackupTable[];
  sequences: { name: string; last_value: string; is_called: boolean }[];
  /** tables left out on purpose (transient state), for the reader's information */
  excluded: string[];
}

export interface TableEnd {
  table: string;
  rows: number;
  sha256: string;
}

export interface BackupTrailer {
  tables: TableEnd[];
  sha256: string;
}

/** The reason a backup file cannot be used, as one line for the operator. */
export class BackupFileError extends InvalidInput {
  constructor(message: string) {
    super(message, 'bad_backup_file');
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

  async json(kind: Exclude<FrameKind, 'D'>, value: unknown): Promise<void> {
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
  bytes = 0;

  constructor(input: Readable) {
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
    if (!['H', 'D', 'E', 'T'].includes(kind) || length > MAX_FRAME) {
      throw new BackupFileError(`the backup file is corrupt at byte ${this.bytes - 5} (not a valid record)`);
    }
    const payload = length === 0 ? Buffer.alloc(0) : await this.take(length);
    if (payload === null) throw truncated();
    if (kind !== 'T') this.hash.update(head).update(payload);
    return { kind, payload };
  }

  /** The sha256 of every byte before the trailer (call when the trailer has been read). */
  digest(): string {
    return this.hash.digest('hex');
  }

  /** n bytes; null at a clean end of the stream (nothing buffered), a truncation error mid-way. */
  private async take(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      const { value, done } = await this.chunks.next().catch(gzipError);
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

/** A gzip stream that ends early or is damaged throws zlib errors: one clear line instead. */
function gzipError(err: unknown): never {
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('Z_') || code === 'ERR_ZLIB') throw new BackupFileError(`the backup file is truncated or corrupt (gzip: ${(err as Error).message})`);
  throw err;
}

function truncated(): BackupFileError {
  return new BackupFileError('the backup file is truncated (it ends before its trailer): it was not written to the end');
}
