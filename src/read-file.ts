/*
 * The one reader of a file a command or the configuration names and that is read whole into
 * memory: at most the limit its use gives, refused before reading when it is no file to read.
 * A path given by mistake (/dev/zero, a disk image, a log, a directory) is refused in one clear
 * line naming it and the limit, after reading at most the limit, so memory stays bounded.
 * Files that are streamed (an mbox to import, a backup to restore) are not read here.
 */

import fs from 'node:fs';

export interface ReadLimit {
  /** the most bytes the use reads: past it the file is refused */
  limit: number;
  /** what the file is for, in the refusal: "a setting's file", "a Mailman export file" */
  what: string;
  /** said after the refusal of a file too big: what to do instead */
  hint?: string;
  /** a pipe (a FIFO, `<(…)`, /dev/stdin) read up to the limit, where the use allows one */
  pipes?: boolean;
}

/** A file refused, with a message that names it (and the limit when it is too big). */
export class FileRefused extends Error {
  constructor(
    readonly file: string,
    /** what is wrong, without the path: "is a device, not a regular file: …", "ENOENT" */
    readonly detail: string,
    readonly reason: 'too_big' | 'not_a_file' | 'unreadable',
  ) {
    super(reason === 'unreadable' ? `cannot read ${file}: ${detail}` : `${file} ${detail}`);
  }
}

/**
 * The bytes of `file`, when it is a regular file (or a pipe, with `pipes`) of at most `limit`
 * bytes. A regular file is refused by its size before any byte is read; a pipe has no size to go
 * by and is refused once it has given more than the limit.
 */
export function readBoundedFile(file: string, use: ReadLimit): Buffer {
  // Its kind before opening it: opening a FIFO waits for a writer, which may never come.
  refuseKind(file, fsCall(file, () => fs.statSync(file)), use);
  const fd = fsCall(file, () => fs.openSync(file, 'r'));
  try {
    const stat = fsCall(file, () => fs.fstatSync(fd));
    const kind = refuseKind(file, stat, use);
    if (stat.size > use.limit) throw tooBig(file, use);
    // One buffer of the size it says (a pipe: pieces as they come), one byte more to see it did not grow.
    const pieces: Buffer[] = [];
    let got = 0;
    while (got <= use.limit) {
      const piece = Buffer.allocUnsafe(Math.min(kind === 'file' ? Math.max(stat.size - got + 1, 1 << 16) : 1 << 16, use.limit + 1 - got));
      const n = fsCall(file, () => fs.readSync(fd, piece, 0, piece.length, null));
      if (n === 0) break;
      pieces.push(piece.subarray(0, n));
      got += n;
    }
    if (got > use.limit) throw tooBig(file, use);
    return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** A PEM file the configuration names (certificates, a CA bundle, a key): a large CA bundle is 300 KB. */
export const PEM_LIMIT: ReadLimit = { limit: 4 * 1024 * 1024, what: 'a PEM file' };

/** `limit` bytes in words: 1 MB, 64 KB, or bytes when it is no round number of either. */
export function sizeInWords(limit: number): string {
  if (limit % (1 << 20) === 0) return `${limit / (1 << 20)} MB`;
  if (limit % 1024 === 0) return `${limit / 1024} KB`;
  return `${limit} bytes`;
}

function refuseKind(file: string, stat: fs.Stats, use: ReadLimit): 'file' | 'pipe' {
  if (stat.isFile()) return 'file';
  if (stat.isFIFO() && use.pipes) return 'pipe';
  const kind = stat.isFIFO() ? 'pipe' : stat.isDirectory() ? 'directory' : stat.isSocket() ? 'socket' : 'device';
  throw new FileRefused(file, `is a ${kind}, not a regular file: ${use.what} must be a regular file${use.pipes ? ' or a pipe' : ''}`, 'not_a_file');
}

function fsCall<T>(file: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw new FileRefused(file, describeError(err), 'unreadable');
  }
}

function tooBig(file: string, use: ReadLimit): FileRefused {
  return new FileRefused(file, `holds more than ${sizeInWords(use.limit)}, the most listkeeper reads for ${use.what}${use.hint ? `: ${use.hint}` : ''}`, 'too_big');
}

// The code only (ENOENT, EACCES): fs's message repeats the path, and says no more.
function describeError(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
