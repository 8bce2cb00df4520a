/*
 * DKIM signatures whose l= is longer than the body they sign (RFC 6376 §3.5: the count of
 * canonicalised body octets signed). Such a signature cannot be one the signer made for this body;
 * OpenDKIM fails it (DKIM_SIGERROR_TOOLARGE_L). mailauth checks it over the whole body and writes
 * "TOTAL … EXPECTING …" to standard output with console.log (dkim-verifier.js), a line that is not
 * JSON in the middle of the log stream. Such signatures are taken out before mailauth sees the
 * message, and recorded here as permerror. A leaf: pure functions over bytes.
 */

import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { fieldValue, headerFields, splitMessage, unfold } from './header-block.ts';

export interface OverlongSignature {
  domain: string;
  selector: string;
  /** the signature's l= */
  length: number;
  /** the canonicalised body's length, for the signature's body canonicalisation */
  body: number;
}

/** The message without its DKIM signatures whose l= passes the end of the body, and those signatures. */
export function withoutOverlongSignatures(raw: Buffer): { raw: Buffer; overlong: OverlongSignature[] } {
  const { head, rest, eol } = splitMessage(raw);
  const fields = headerFields(head);
  const bodyLength = new Map<'simple' | 'relaxed', number>();
  const body = rest.subarray(eol.length);
  const overlong: OverlongSignature[] = [];
  const kept = fields.filter((f) => {
    if (f.name !== 'dkim-signature') return true;
    const tags = new Map(unfold(fieldValue(f)).split(';').map((t) => {
      const at = t.indexOf('=');
      return [t.slice(0, at).trim().toLowerCase(), t.slice(at + 1).replace(/\s+/g, '')] as const;
    }));
    const l = tags.get('l');
    if (l === undefined || !/^\d{1,76}$/.test(l)) return true;
    const c = (tags.get('c') ?? 'simple/simple').split('/')[1]?.toLowerCase() ?? 'simple';
    if (c !== 'simple' && c !== 'relaxed') return true;
    let length = bodyLength.get(c);
    if (length === undefined) {
      const hasher = dkimBody(c, 'sha256', false);
      hasher.update(body);
      hasher.digest('base64');
      length = hasher.bodyHashedBytes;
      bodyLength.set(c, length);
    }
    if (Number(l) <= length) return true;
    overlong.push({ domain: tags.get('d') ?? '', selector: tags.get('s') ?? '', length: Number(l), body: length });
    return false;
  });
  return overlong.length ? { raw: Buffer.concat([...kept.map((f) => f.bytes), rest]), overlong } : { raw, overlong };
}
