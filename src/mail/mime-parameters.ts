/*
 * What a message's MIME parameters would cost mailparser, told before it is asked. It reads a
 * Content-Type or Content-Disposition field's parameters in time that grows faster than their
 * number (libmime, RFC 2231 continuations joined): 40 parts of 50,000 parameters each (21.6 MB)
 * took 24 s, holding the ingest's event loop, against 0.5 s for 20,000 parts of 100 each (16.5 MB)
 * and 2 s for a 20 MB attachment. Real mail has a handful per field; a file name split into
 * RFC 2231 sections has a few dozen. Pure.
 */

/** Parameters (counted by their `;`, quoted ones included) one field may have. */
export const MAX_MIME_PARAMETERS = 256;

// A field at a line's start, in the message's header or a part's: a body line that looks like one
// (a forwarded header quoted in text) is counted too, which only a line of 256 `;` would notice.
const PARAMETER_FIELD = /^content-(?:type|disposition)[ \t]*:/gim;

/** Whether some Content-Type or Content-Disposition field of `raw` has more than MAX_MIME_PARAMETERS parameters. */
export function tooManyMimeParameters(raw: Buffer): boolean {
  // Cheap first: a message with fewer `;` in all cannot have such a field.
  if (countSemicolons(raw, MAX_MIME_PARAMETERS + 1) <= MAX_MIME_PARAMETERS) return false;
  const text = raw.toString('latin1');
  PARAMETER_FIELD.lastIndex = 0;
  for (let m = PARAMETER_FIELD.exec(text); m; m = PARAMETER_FIELD.exec(text)) {
    let count = 0;
    let i = m.index + m[0].length;
    // The field runs to a line end that no space or tab continues (folding).
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x3b && ++count > MAX_MIME_PARAMETERS) return true;
      if (c === 0x0a) {
        const next = text.charCodeAt(i + 1);
        if (next !== 0x20 && next !== 0x09) break;
      }
    }
    PARAMETER_FIELD.lastIndex = i;
  }
  return false;
}

function countSemicolons(raw: Buffer, enough: number): number {
  let n = 0;
  for (let at = raw.indexOf(0x3b); at >= 0 && n < enough; at = raw.indexOf(0x3b, at + 1)) n++;
  return n;
}
