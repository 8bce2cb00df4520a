/*
 * src/gzip.ts reads gzip as GNU gzip does (`gzip -dc`): every member, zero padding ignored,
 * trailing garbage handed to the caller with its offset, damage refused with zlib's words. Each
 * case is read in chunks of 1 byte, 7 bytes and all at once, so that member boundaries, headers
 * and trailers fall across chunks.
 */

import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gunzip, TrailingGzipGarbage } from '../src/gzip.ts';

const CHUNKS = [1, 7, 1 << 20];

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** What gunzip gives, the offset of trailing garbage it was told of, and the error it ended with. */
async function read(bytes: Buffer, size: number, opts: { refuse?: boolean; chunkSize?: number } = {}) {
  const out: Buffer[] = [];
  let garbage: number | null = null;
  let error: { code?: string; message: string } | null = null;
  const onTrailingGarbage = opts.refuse ? undefined : (offset: number) => void (garbage = offset);
  try {
    for await (const c of gunzip(chunked(bytes, size), { onTrailingGarbage, chunkSize: opts.chunkSize })) out.push(c);
  } catch (err) {
    error = err as Error;
  }
  return { text: Buffer.concat(out).toString(), garbage, error: error && `${error.code}: ${error.message}` };
}

const a = zlib.gzipSync('hello ');
const b = zlib.gzipSync('world\n');

describe('gunzip', () => {
  it('reads one member, and every member of a file of several, in order', async () => {
    for (const size of CHUNKS) {
      expect(await read(a, size)).toEqual({ text: 'hello ', garbage: null, error: null });
      expect(await read(Buffer.concat([a, b, a]), size)).toEqual({ text: 'hello world\nhello ', garbage: null, error: null });
    }
  });

  it('reads a large member split across many chunks, and one after it, byte for byte', async () => {
    const big = crypto.randomBytes(3 << 20).toString('base64');
    for (const size of [1000, 65536]) {
      const r = await read(Buffer.concat([zlib.gzipSync(big), b]), size, { chunkSize: 1 << 16 });
      expect(r.error).toBeNull();
      expect(r.text === `${big}world\n`).toBe(true);
    }
  });

  it('ignores zero padding after the last member, as gzip does', async () => {
    for (const size of CHUNKS) expect(await read(Buffer.concat([a, b, Buffer.alloc(1000)]), size)).toEqual({ text: 'hello world\n', garbage: null, error: null });
  });

  it('hands trailing garbage to the caller with the byte it starts at, after every byte before it', async () => {
    const members = Buffer.concat([a, b]);
    for (const size of CHUNKS) {
      for (const tail of [Buffer.from('garbage'), Buffer.from([0x1f]), Buffer.from([0x1f, 0x41]), Buffer.concat([Buffer.alloc(100), Buffer.from('x')])]) {
        expect(await read(Buffer.concat([members, tail]), size)).toEqual({ text: 'hello world\n', garbage: members.length, error: null });
      }
    }
  });

  it('without a caller to hand it to, refuses trailing garbage, having given every byte before it', async () => {
    for (const size of CHUNKS) {
      expect(await read(Buffer.concat([a, Buffer.from('zz')]), size, { refuse: true })).toEqual({
        text: 'hello ', garbage: null, error: `ERR_GZIP_TRAILING_GARBAGE: trailing garbage after the gzip data, from byte ${a.length}`,
      });
    }
    const all = async () => {
      for await (const _ of gunzip(chunked(Buffer.concat([a, Buffer.from('zz')]), 4)));
    };
    await expect(all()).rejects.toBeInstanceOf(TrailingGzipGarbage);
  });

  it('refuses damage with zlib\'s words: a damaged or truncated member, a bad checksum or length, a member that is not deflate', async () => {
    const crc = Buffer.from(a);
    crc[crc.length - 8] ^= 1;
    const length = Buffer.from(a);
    length[length.length - 1] ^= 1;
    const method = Buffer.from(b);
    method[2] = 7;
    const cases: [Buffer, string][] = [
      [a.subarray(0, 12), 'Z_BUF_ERROR: unexpected end of file'],
      [a.subarray(0, a.length - 3), 'Z_BUF_ERROR: unexpected end of file'],
      [Buffer.concat([a, b.subarray(0, 5)]), 'Z_BUF_ERROR: unexpected end of file'],
      [crc, 'Z_DATA_ERROR: incorrect data check'],
      [length, 'Z_DATA_ERROR: incorrect length check'],
      // A second member that begins as gzip does but is damaged is damage, not garbage (gzip too).
      [Buffer.concat([a, method]), 'Z_DATA_ERROR: unknown compression method'],
      [Buffer.from('not gzip at all'), 'Z_DATA_ERROR: incorrect header check'],
    ];
    for (const size of CHUNKS) {
      for (const [bytes, error] of cases) expect((await read(bytes, size)).error, `${error} ${size}`).toBe(error);
    }
  });

  it('skips the optional header fields (extra, name, comment) and checks the header\'s CRC', async () => {
    const fixed = Buffer.from([0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3]);
    const header = Buffer.concat([fixed, Buffer.from([3, 0, 1, 2, 3]), Buffer.from('site-2026-12-01.lkb\0'), Buffer.from('a comment\0')]);
    const hcrc = Buffer.alloc(2);
    hcrc.writeUInt16LE(crc32(header) & 0xffff);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc32(Buffer.from('named')));
    trailer.writeUInt32LE(5, 4);
    const file = Buffer.concat([header, hcrc, zlib.deflateRawSync('named'), trailer]);
    expect(zlib.gunzipSync(file).toString()).toBe('named');
    const damaged = Buffer.from(file);
    damaged[12] ^= 1;
    for (const size of CHUNKS) {
      expect(await read(file, size)).toEqual({ text: 'named', garbage: null, error: null });
      expect((await read(damaged, size)).error).toBe('Z_DATA_ERROR: header crc mismatch');
    }
  });
});

function crc32(data: Buffer): number {
  let c = ~0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return ~c >>> 0;
}
