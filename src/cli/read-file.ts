/* Reading a file a command was given, of any kind, without reading more than the command can use. */

import fs from 'node:fs';

/**
 * At most `limit` bytes of a file of any kind. Not by its size: a FIFO, /dev/stdin, a device or a
 * /proc file says 0 and can hold any amount. A directory fails to read (EISDIR).
 */
export function readAtMost(file: string, limit: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    // In pieces as they come, not one buffer of `limit` bytes: most files are far smaller.
    const pieces: Buffer[] = [];
    let got = 0;
    while (got < limit) {
      const piece = Buffer.allocUnsafe(Math.min(1 << 20, limit - got));
      const n = fs.readSync(fd, piece, 0, piece.length, null);
      if (n === 0) break;
      pieces.push(piece.subarray(0, n));
      got += n;
    }
    return Buffer.concat(pieces, got);
  } finally {
    fs.closeSync(fd);
  }
}
