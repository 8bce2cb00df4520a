/*
 * Base64 in the lines mail wants, both ways, at the speed of a 25 MB post: no regular expression
 * and no string per line (a footer inside a 25 MB HTML post took 0.7–1.4 s with them).
 */

const LINE = 76;

/** Bytes (or a text, as UTF-8) in base64, in lines of 76 characters (RFC 2045 §6.8), joined by `eol`, without a final one. */
export function base64Lines(data: Buffer | string, eol: string): string {
  return base64LinesBuffer(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, eol).toString('latin1');
}

/** base64Lines() as bytes. */
export function base64LinesBuffer(bytes: Buffer, eol: string): Buffer {
  const encoded = Buffer.from(bytes.toString('base64'), 'latin1');
  const lines = Math.ceil(encoded.length / LINE);
  if (lines <= 1) return encoded;
  const sep = Buffer.from(eol, 'latin1');
  const out = Buffer.allocUnsafe(encoded.length + (lines - 1) * sep.length);
  let at = 0;
  for (let from = 0; from < encoded.length; from += LINE) {
    if (from > 0) at += sep.copy(out, at);
    at += encoded.copy(out, at, from, Math.min(from + LINE, encoded.length));
  }
  return out;
}

/** 1 for the 64 letters of base64, 2 for its padding `=` */
const ALPHABET = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') ALPHABET[c.charCodeAt(0)] = 1;
ALPHABET[0x3d] = 2;

/**
 * A base64 body's bytes. Encoders that encode line by line end lines with `=` padding in the
 * middle of the body; Buffer.from(…, 'base64') stops at the first, and the rest of the post was
 * lost. So each padded run is decoded on its own. Characters outside the alphabet (line breaks)
 * are skipped; null for what is not base64 at all: a run whose length is not a multiple of four,
 * or with more than two `=`.
 */
export function decodeBase64(body: Buffer): Buffer | null {
  const clean = Buffer.allocUnsafe(body.length);
  const runs: [number, number][] = [];
  let n = 0;
  let runStart = 0;
  let pad = 0;
  const endRun = () => {
    if ((n - runStart) % 4 !== 0 || pad > 2) return false;
    if (n > runStart) runs.push([runStart, n]);
    runStart = n;
    pad = 0;
    return true;
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    const kind = ALPHABET[c];
    if (kind === 0) continue;
    if (kind === 2) pad++;
    else if (pad > 0 && !endRun()) return null;
    clean[n++] = c;
  }
  if (!endRun()) return null;
  if (runs.length === 1) return Buffer.from(clean.toString('latin1', runs[0][0], runs[0][1]), 'base64');
  return Buffer.concat(runs.map(([from, to]) => Buffer.from(clean.toString('latin1', from, to), 'base64')));
}
