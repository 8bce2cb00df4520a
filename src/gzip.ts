/*
 * Reading gzip as GNU gzip reads it (what `gzip -dc FILE` writes), for the files people bring:
 *
 * - every member of a file of several (`cat a.gz b.gz`, `gzip -c more >> file.gz`, bgzip's
 *   blocks), in order, each checked against its CRC-32 and length;
 * - zero bytes after the last member (tape and block-device padding) ignored, as gzip does;
 * - anything else after it, "trailing garbage", handed to the caller with the byte it starts at,
 *   to ignore with a warning (gzip: "decompression OK, trailing garbage ignored", exit 2) or to
 *   refuse. A member that begins with gzip's magic but is damaged is an error, as in gzip.
 *
 * Node's zlib.createGunzip reads several members too, but takes trailing garbage for a damaged
 * member ("incorrect header check"), and destroys itself with the last output it had decompressed
 * (the end of the last member, up to a chunk) still unsent. So the header of each member is read
 * here and its deflate data by an inflateRaw stream, which stops at the end of that data and
 * counts the input it used (`bytesWritten`): the member's trailer, and what follows, come after.
 * Errors carry zlib's codes and messages (`Z_DATA_ERROR`, `Z_BUF_ERROR` "unexpected end of file").
 */

import zlib from 'node:zlib';

export interface GunzipOptions {
  /** the size of the decompressed chunks (zlib's chunkSize) */
  chunkSize?: number;
  /**
   * Bytes after the last member that are neither another member nor zero padding, starting at
   * `offset` of the compressed input: they are not read. Without this the iteration fails with
   * TrailingGzipGarbage there (and with what it throws, when it throws).
   */
  onTrailingGarbage?: (offset: number) => void;
}

/** What a gzip stream's damage throws: zlib's code and message. */
export class GzipError extends Error {
  constructor(
    readonly code: 'Z_DATA_ERROR' | 'Z_BUF_ERROR',
    message: string,
  ) {
    super(message);
  }
}

/** Bytes after the last member that are not gzip, when the caller has not said to ignore them. */
export class TrailingGzipGarbage extends Error {
  readonly code = 'ERR_GZIP_TRAILING_GARBAGE';
  constructor(readonly offset: number) {
    super(`trailing garbage after the gzip data, from byte ${offset}`);
  }
}

/**
 * The decompressed bytes of every gzip member of `input`, in order, as they are asked for. An
 * iterator rather than a stream: a stream destroyed by an error drops the data it had buffered
 * before it, and the reader gets every byte before the error here (a restore's last frames, read
 * before the garbage after them is found). Returning from it lets go of `input`.
 */
export function gunzip(input: AsyncIterable<Buffer>, opts: GunzipOptions = {}): AsyncGenerator<Buffer> {
  return members(input, opts);
}

const RESERVED = 0xe0;
const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

async function* members(input: AsyncIterable<Buffer>, opts: GunzipOptions): AsyncGenerator<Buffer> {
  const src = new Input(input[Symbol.asyncIterator]());
  try {
    for (let n = 0; ; n++) {
      if (n > 0) {
        if (!(await src.fill(1))) return;
        if (!((await src.fill(2)) && src.at(0) === 0x1f && src.at(1) === 0x8b)) return await trailing(src, opts);
      }
      yield* member(src, opts);
    }
  } finally {
    src.close();
  }
}

/** After the last member: zero padding to the end is ignored; anything else is trailing garbage. */
async function trailing(src: Input, opts: GunzipOptions): Promise<void> {
  const offset = src.offset;
  for (;;) {
    if (src.buffered === 0 && !(await src.fill(1))) return;
    if (src.nonZero()) break;
    src.skip(src.buffered);
  }
  if (!opts.onTrailingGarbage) throw new TrailingGzipGarbage(offset);
  opts.onTrailingGarbage(offset);
}

/** One member: its header (RFC 1952 §2.3), its deflate data inflated, its trailer checked. */
async function* member(src: Input, opts: GunzipOptions): AsyncGenerator<Buffer> {
  const header = new HeaderReader(src);
  const fixed = await header.read(10);
  if (fixed[0] !== 0x1f || fixed[1] !== 0x8b) throw new GzipError('Z_DATA_ERROR', 'incorrect header check');
  if (fixed[2] !== 8) throw new GzipError('Z_DATA_ERROR', 'unknown compression method');
  const flags = fixed[3];
  if (flags & RESERVED) throw new GzipError('Z_DATA_ERROR', 'unknown header flags set');
  if (flags & FEXTRA) await header.skip((await header.read(2)).readUInt16LE(0));
  if (flags & FNAME) await header.skipString();
  if (flags & FCOMMENT) await header.skipString();
  if (flags & FHCRC) {
    const expected = header.crc & 0xffff;
    if ((await header.read(2)).readUInt16LE(0) !== expected) throw new GzipError('Z_DATA_ERROR', 'header crc mismatch');
  }

  const inflate = zlib.createInflateRaw(opts.chunkSize ? { chunkSize: opts.chunkSize } : {});
  // Damage reaches the loop below through the stream; this listener keeps it from being an
  // 'error' event nobody listens to once the loop has let go of the stream.
  inflate.on('error', () => undefined);
  const feeder = new Feeder(src, inflate);
  let crc = 0;
  let size = 0;
  try {
    for await (const chunk of inflate as AsyncIterable<Buffer>) {
      crc = crc32(chunk, crc);
      size += chunk.length;
      yield chunk;
    }
    await feeder.stop();
  } finally {
    feeder.abandon();
    inflate.destroy();
  }
  const trailer = await new HeaderReader(src).read(8);
  if (trailer.readUInt32LE(0) !== crc >>> 0) throw new GzipError('Z_DATA_ERROR', 'incorrect data check');
  if (trailer.readUInt32LE(4) !== size % 2 ** 32) throw new GzipError('Z_DATA_ERROR', 'incorrect length check');
}

/**
 * Hands the input to the inflater one chunk at a time, keeping the chunks it has not used up:
 * when the deflate data ends, what the inflater did not consume goes back to the input.
 */
class Feeder {
  private readonly fed: Buffer[] = [];
  /** the offset, from the deflate data's start, of fed[0] */
  private fedStart = 0;
  private stopping = false;
  private readonly running: Promise<void>;

  constructor(
    private readonly src: Input,
    private readonly inflate: zlib.InflateRaw,
  ) {
    this.running = this.run();
    this.running.catch(() => undefined);
  }

  private async run(): Promise<void> {
    let chunk: Buffer | null = this.src.takeAll();
    while (!this.stopping && !this.inflate.destroyed) {
      if (chunk && chunk.length > 0) {
        this.fed.push(chunk);
        await written(this.inflate, chunk);
        this.prune();
      }
      if (this.stopping || this.inflate.destroyed) return;
      chunk = await this.src.next();
      if (chunk === null) {
        if (!this.inflate.destroyed) this.inflate.end();
        return;
      }
      if (this.stopping) this.fed.push(chunk);
    }
  }

  /** Chunks wholly consumed are let go: memory stays at a chunk or two whatever the member's size. */
  private prune(): void {
    while (this.fed.length > 0 && this.fedStart + this.fed[0].length <= this.inflate.bytesWritten) {
      this.fedStart += this.fed[0].length;
      this.fed.shift();
    }
  }

  /** The deflate data has ended: the bytes fed after its end go back to the input. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    const rest = Buffer.concat(this.fed).subarray(this.inflate.bytesWritten - this.fedStart);
    this.fed.length = 0;
    this.src.unshift(rest);
  }

  /** On an error, or when the reader stops reading: nothing more is fed. */
  abandon(): void {
    this.stopping = true;
  }
}

/** Resolves once the inflater has processed `chunk`, or is destroyed. */
function written(inflate: zlib.InflateRaw, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      inflate.off('close', done);
      resolve();
    };
    inflate.once('close', done);
    inflate.write(chunk, done);
  });
}

/** Reads a header's (or trailer's) bytes from the input, keeping the CRC-32 of those read. */
class HeaderReader {
  crc = 0;
  constructor(private readonly src: Input) {}

  async read(n: number): Promise<Buffer> {
    if (!(await this.src.fill(n))) throw new GzipError('Z_BUF_ERROR', 'unexpected end of file');
    const bytes = this.src.take(n);
    this.crc = crc32(bytes, this.crc);
    return bytes;
  }

  async skip(n: number): Promise<void> {
    for (let left = n; left > 0; ) {
      if (!(await this.src.fill(1))) throw new GzipError('Z_BUF_ERROR', 'unexpected end of file');
      const bytes = this.src.take(Math.min(left, this.src.buffered));
      this.crc = crc32(bytes, this.crc);
      left -= bytes.length;
    }
  }

  /** A zero-terminated field (the file's name, a comment), of any length, without keeping it. */
  async skipString(): Promise<void> {
    for (;;) {
      if (!(await this.src.fill(1))) throw new GzipError('Z_BUF_ERROR', 'unexpected end of file');
      const end = this.src.indexOfZero();
      const bytes = this.src.take(end < 0 ? this.src.buffered : end + 1);
      this.crc = crc32(bytes, this.crc);
      if (end >= 0) return;
    }
  }
}

/**
 * The compressed input: the bytes read from it but not used yet, and where they are in it. While
 * a member's deflate data is inflated, the feeder takes the chunks as they come (next()), and
 * gives back those the inflater did not use (unshift()).
 */
class Input {
  private buf: Buffer = Buffer.alloc(0);
  /** bytes read from the input so far */
  private read = 0;
  private ended = false;

  constructor(private readonly chunks: AsyncIterator<Buffer>) {}

  /** The offset in the input of the first byte buffered. */
  get offset(): number {
    return this.read - this.buf.length;
  }

  get buffered(): number {
    return this.buf.length;
  }

  at(i: number): number {
    return this.buf[i];
  }

  nonZero(): boolean {
    return this.buf.some((b) => b !== 0);
  }

  indexOfZero(): number {
    return this.buf.indexOf(0);
  }

  /** At least n bytes buffered; false when the input ends first. */
  async fill(n: number): Promise<boolean> {
    while (this.buf.length < n) {
      const chunk = await this.next();
      if (chunk === null) return false;
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    }
    return true;
  }

  /** The next chunk of the input, after those buffered; null at its end. */
  async next(): Promise<Buffer | null> {
    if (this.ended) return null;
    const { value, done } = await this.chunks.next();
    if (done) {
      this.ended = true;
      return null;
    }
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value as Uint8Array);
    this.read += chunk.length;
    return chunk;
  }

  take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  skip(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  /** All that is buffered, for the inflater. */
  takeAll(): Buffer {
    return this.take(this.buf.length);
  }

  /** Bytes the inflater did not use, back in front of those buffered. */
  unshift(bytes: Buffer): void {
    this.buf = this.buf.length === 0 ? bytes : Buffer.concat([bytes, this.buf]);
  }

  /** Lets go of the input (a stream's iterator destroys it), without waiting for a read in flight. */
  close(): void {
    this.chunks.return?.().catch(() => undefined);
  }
}

/** zlib's CRC-32 (Node 20.15 and later), or the same in JavaScript. */
const crc32: (data: Buffer, value: number) => number =
  typeof zlib.crc32 === 'function' ? zlib.crc32 : (data, value) => crc32js(data, value);

let table: Int32Array | null = null;

function crc32js(data: Buffer, value: number): number {
  if (!table) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
  }
  let c = ~value;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
