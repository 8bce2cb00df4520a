/*
 * The header fields of DMARC mitigation (list-copy.ts), by Mailman 3's rules (handlers/dmarc.py,
 * munged_headers): From becomes "Author via list" <list address>, and the author stays reachable.
 *
 * - When the list leaves Reply-To alone, the author goes in Reply-To: after the author's own
 *   Reply-To addresses if there are any (and not twice), so "reply" still reaches whoever the
 *   author asked for, and the author.
 * - When the list sets Reply-To (to itself or an address), the author goes in Cc, after the Cc
 *   addresses already there: "reply" goes where the list says, "reply all" includes the author.
 * - A display name that is an address loses its domain ("bob@example.org" → "bob"): two domains
 *   in From look like spam, and the address is in Reply-To or Cc anyway.
 * Every field is folded to 78 octets where it can be and 998 always (RFC 5322 §2.1.1).
 */

import addressparser from 'nodemailer/lib/addressparser';
import { envelopeAddress } from './address.ts';
import { displayName, fieldValue, foldField, type HeaderField } from './header-block.ts';

export interface RewriteInput {
  /** the original header fields */
  fields: HeaderField[];
  fromName: string;
  fromEmail: string;
  list: { name: string; address: string };
  /** the list sets Reply-To itself (reply_to = list or address): the author goes in Cc */
  listSetsReplyTo: boolean;
  eol: string;
}

export interface Rewrite {
  /** the new fields, each folded and with its line ending */
  fields: Buffer[];
  /** lower-case names of the original fields they replace */
  replaces: string[];
}

export function rewriteFrom(o: RewriteInput): Rewrite {
  // Addresses with an international domain in A-labels, as the envelope writes them (list-headers.ts).
  const from = field(`From: ${displayName(`${viaName(o.fromName, o.fromEmail)} via ${o.list.name}`)} <${envelopeAddress(o.list.address)}>`, o.eol);
  const addTo = o.listSetsReplyTo ? 'Cc' : 'Reply-To';
  const existing = o.fields.filter((f) => f.name === addTo.toLowerCase());
  const authorAddress = envelopeAddress(o.fromEmail);
  const author = `${o.fromName.trim() ? `${displayName(o.fromName)} ` : ''}<${authorAddress}>`;
  const authorOnly = field(`${addTo}: ${author}`, o.eol) ?? field(`${addTo}: <${authorAddress}>`, o.eol);
  let reach: Buffer | null;
  if (existing.length === 0) reach = authorOnly;
  else {
    // The addresses already there keep their bytes (encoded words, 8-bit text as written).
    const values = existing.map((f) => rawValue(f, o.eol));
    const listed = existing.flatMap((f) => addresses(fieldValue(f)));
    const authorKeys = [o.fromEmail, authorAddress].map((a) => Buffer.from(a.toLowerCase(), 'utf8').toString('latin1'));
    const parts = [Buffer.from(`${addTo}: `), ...values.flatMap((v, i) => (i ? [Buffer.from(', '), v] : [v]))];
    if (!authorKeys.some((k) => listed.includes(k))) parts.push(Buffer.from(`, ${author}`, 'utf8'));
    // Folded at the white space that is there; a value with an unfoldable run (the author's own
    // header was already too long) gives way to the author's address alone.
    reach = foldField(Buffer.concat([...parts, Buffer.from(o.eol)]), o.eol) ?? authorOnly;
  }
  return { fields: [from, reach].filter((b): b is Buffer => b !== null), replaces: ['from', addTo.toLowerCase()] };
}

/** The name in "NAME via list": the author's display name, or the address's local part; never a domain. */
export function viaName(fromName: string, fromEmail: string): string {
  const name = fromName.trim() || fromEmail;
  const stripped = name.replace(/@(?:[^\s.@<>"]+\.)+[^\s.@<>"]+/g, '').trim();
  return stripped || fromEmail.split('@')[0];
}

function field(line: string, eol: string): Buffer | null {
  return foldField(Buffer.from(`${line}${eol}`, 'utf8'), eol);
}

/** A field's value as it was written: after the colon and its white space, without the final line ending. */
function rawValue(f: HeaderField, eol: string): Buffer {
  let v = f.bytes.subarray(f.bytes.indexOf(0x3a) + 1);
  if (v.subarray(v.length - eol.length).toString('latin1') === eol) v = v.subarray(0, v.length - eol.length);
  let start = 0;
  while (start < v.length && (v[start] === 0x20 || v[start] === 0x09)) start++;
  return v.subarray(start);
}

/** Lower-case addresses in an address-list value (groups flattened). */
function addresses(value: string): string[] {
  return addressparser(value, { flatten: true }).map((a) => a.address.toLowerCase()).filter(Boolean);
}
