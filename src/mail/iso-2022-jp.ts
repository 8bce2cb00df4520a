/*
 * ISO-2022-JP that no label names. It is 7-bit: JIS X 0208 characters as pairs of ASCII bytes
 * between escape sequences (ESC $ B … ESC ( B), so a part sent without a charset, or as
 * US-ASCII (Japanese mail clients and tools long did), reads as ASCII, and "日本語" was stored and
 * indexed as "\x1b$BF|K\\8l\x1b(B": no Japanese word in it could be found. Text read that way keeps
 * those bytes as they were (each a character below U+0080), so its runs are read again here.
 */

/**
 * A run of ISO-2022-JP: from an escape to a two-byte set (ESC $ @, ESC $ B) or to half-width
 * katakana (ESC ( I), over 7-bit characters other than ESC and over more such escapes (ESC ( B and
 * ESC ( J back to ASCII and JIS-Roman). Any other escape (a terminal's colours, ESC [) ends it.
 */
const RUN = /\x1b(?:\$[@B]|\(I)(?:[^\x1b\x80-\uffff]|\x1b(?:\$[@B]|\([BJI]))*/g;

/** False where the runtime has no ISO-2022-JP (Node built with small ICU): the text stays as read. */
const supported = (() => {
  try {
    return new TextDecoder('iso-2022-jp').encoding === 'iso-2022-jp';
  } catch {
    return false;
  }
})();

/**
 * The text with its ISO-2022-JP runs decoded. A run that is not valid ISO-2022-JP (a stray
 * escape, a line end inside a two-byte set) stays as it is. A character cut at the end of the
 * text, where a caller cut the bytes, is left out.
 */
export function decodeIso2022jpRuns(text: string): string {
  if (!supported || !text.includes('\x1b')) return text;
  return text.replace(RUN, (run: string, at: number) => {
    try {
      const end = at + run.length === text.length;
      return new TextDecoder('iso-2022-jp', { fatal: true }).decode(Buffer.from(run, 'latin1'), { stream: end });
    } catch {
      return run;
    }
  });
}
