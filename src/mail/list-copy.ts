/*
 * The copy of a post that goes to the members. Prepared once per (message, list); each member's
 * copy is then `head + member lines + body`, three buffers, so a fan-out to thousands does not
 * re-parse or re-build anything per recipient.
 *
 * By default only list headers are added at the top. The per-list options that change the
 * author's headers or body (subject prefix, Reply-To, DMARC mitigation, footer) are applied here
 * and only when the list asks for them. Every field added is folded: no line over 998 octets.
 */

import { envelopeAddress } from './address.ts';
import { addFooter } from './footer.ts';
import { MAX_LINE, foldField, encodeWord, fieldValue, headerEnd, headerFields, headerLines, splitMessage, withoutFields, type HeaderField } from './header-block.ts';
import { rewriteFrom } from './from-rewrite.ts';
import { LIST_FIELDS, listHeaderLines, memberHeaderLines, type ListIdentity } from './list-headers.ts';
import { arcSealFor, arcSet, bodyHash, headerRows, MemberSigner, signedFields, type ListKey } from './list-signing.ts';
import type { AuthChecks } from './post-checks.ts';

export interface CopyOptions {
  list: ListIdentity & { name: string };
  messageId: string;
  /** decoded subject, to see whether the prefix is already there */
  subject: string;
  fromName: string;
  fromEmail: string;
  subjectPrefix: string;
  footer: string;
  replyTo: { policy: 'none' | 'list' | 'address'; address: string | null };
  /**
   * DMARC mitigation for this post (decided in delivery/copies.ts): From rewritten to the list, or
   * the post wrapped whole as a message/rfc822 attachment of a message from the list.
   */
  mitigation: 'none' | 'munge_from' | 'wrap_message';
  /** trace fields of the hop into listkeeper (mail/post-checks.ts traceFields), put on top */
  trace?: string[];
  /** our authserv-id (SMTP_HELO_NAME): Authentication-Results with it that came in with the post are dropped */
  authservId?: string;
}

export interface PreparedCopy {
  /** trace fields (Received, Authentication-Results): the very top of every copy */
  trace: Buffer;
  head: Buffer;
  body: Buffer;
  eol: string;
  list: ListIdentity;
  /** set when the list signs (signCopies): what every member's signature shares */
  signing?: CopySigning;
}

/** The parts of the list's signatures computed once per post (docs/delivery.md, "The list's signatures"). */
export interface CopySigning {
  /** the ARC set, above the trace fields; empty when the post gets none */
  arc: Buffer;
  /** each member's DKIM-Signature: the key, the body hash and the shared fields, prepared once */
  signer: MemberSigner;
}

/**
 * Requests for a receipt from each reader (RFC 8098's Disposition-Notification-To and its older
 * spellings): every member's mail program would offer, or send by itself, a receipt to an address
 * the poster chose, handing them the members' addresses whoever may see the roster. Never on a
 * copy, as Mailman's cleanse handler has it; the archive keeps them (the record, byte for byte).
 */
export const RECEIPT_REQUESTS: readonly string[] = ['disposition-notification-to', 'return-receipt-to', 'x-confirm-reading-to', 'x-pmrqc'];

/** What a wrapper (wrap_message) keeps of the post's header: what a reader sees and threads by. */
const WRAPPER_KEEPS = new Set(['to', 'cc', 'subject', 'date', 'message-id', 'in-reply-to', 'references']);

export function prepareCopy(post: Buffer, o: CopyOptions): PreparedCopy {
  const raw = loneCrsAsLineEnds(post);
  const split = splitMessage(raw);
  const { eol } = split;
  let head = split.head;
  let rest = split.rest;
  const fields = headerFields(head);
  const drop = new Set<string>([...LIST_FIELDS, ...RECEIPT_REQUESTS].filter((n) => fields.some((f) => f.name === n)));
  const added: (string | Buffer)[] = listHeaderLines(o.list, o.messageId);
  if (o.mitigation === 'wrap_message') {
    // Mailman's wrap_message: a new message from the list whose one part is the post, its bytes
    // (and the author's signature) intact. RFC 2046 §5.2.1: message/rfc822 is 7bit or 8bit.
    // The content fields go in `head`, where addFooter looks for them.
    const content = ['MIME-Version: 1.0', 'Content-Type: message/rfc822', 'Content-Disposition: inline'];
    if (raw.some((b) => b >= 0x80)) content.push('Content-Transfer-Encoding: 8bit');
    head = Buffer.concat([...fields.filter((f) => WRAPPER_KEEPS.has(f.name)).map((f) => f.bytes), headerLines(content, eol)]);
    rest = Buffer.concat([Buffer.from(eol), raw]);
  }
  // A post that came without a Message-ID goes out with the one the archive gave it, so every
  // member's client threads replies to it alike and its Archived-At names an ID the copy carries.
  if (!fields.some((f) => f.name === 'message-id')) added.push(`Message-ID: <${o.messageId}>`);
  let subjectTail: Buffer | null = null;

  const prefix = o.subjectPrefix.trim();
  if (prefix && !o.subject.includes(prefix)) {
    const original = fields.find((f) => f.name === 'subject');
    const value = original ? original.bytes.toString('latin1').replace(/^[^:]*:[ \t]*/, '').replace(/\r?\n$/, '') : '';
    // The original value stays as written (encoded words or raw 8-bit), only the prefix is new.
    added.push(`Subject: ${encodeWord(prefix)}${value ? ' ' : ''}`);
    drop.add('subject');
    subjectTail = Buffer.from(value, 'latin1');
  }

  const replyTo = o.replyTo.policy === 'list' ? o.list.address : o.replyTo.policy === 'address' ? o.replyTo.address : null;
  const listSetsReplyTo = !!replyTo;
  if (replyTo) {
    // An international domain in A-labels, as in the envelope: the stored spelling (U-labels) is
    // raw UTF-8 in a header, which only SMTPUTF8 carries (RFC 6532) and a server without 8BITMIME
    // is not sent at all (5.6.3).
    added.push(`Reply-To: <${envelopeAddress(replyTo)}>`);
    drop.add('reply-to');
  }
  if (o.mitigation !== 'none') {
    const rewrite = rewriteFrom({ fields, fromName: o.fromName, fromEmail: o.fromEmail, list: o.list, listSetsReplyTo, eol });
    added.push(...rewrite.fields);
    for (const name of rewrite.replaces) drop.add(name);
  }

  head = withoutFields(head, drop);
  // Only we write results under our name (RFC 8601 §5): one that arrived with the post is a forgery
  // or stale, and a reader trusting our authserv-id would believe it.
  if (o.authservId) head = withoutOurResults(head, o.authservId);
  if (o.footer.trim()) ({ head, rest } = addFooter(head, rest, o.footer, eol));

  const top = buildTop(added, subjectTail, eol);
  // Trace values may be folded (CRLF and a space): each copy keeps the post's own line ending.
  const trace = (o.trace ?? []).map((t) => t.replace(/\r?\n/g, eol));
  return { trace: headerLines(trace, eol), head: Buffer.concat([top, head]), body: rest, eol, list: o.list };
}

/**
 * The post with each lone CR (one not before LF) made a line ending, as it goes on the wire: the
 * SMTP client sends a lone CR as CRLF (nodemailer's DataStream; RFC 5321 §2.3.8 allows CR only in
 * CRLF). Read with the CR inside a field, "Subject: x<CR>List-Unsubscribe: <https://evil…>" was
 * one Subject to the list and two fields to every member: a field the list drops (a
 * List-Unsubscribe of the sender's, an Authentication-Results under our authserv-id) went out
 * below the list's own. The same buffer when there is none, as in nearly every post.
 */
function loneCrsAsLineEnds(raw: Buffer): Buffer {
  let cr = raw.indexOf(0x0d);
  while (cr >= 0 && raw[cr + 1] === 0x0a) cr = raw.indexOf(0x0d, cr + 2);
  if (cr < 0) return raw;
  const eol = headerEnd(raw)?.eol ?? (raw.includes('\r\n') ? '\r\n' : '\n');
  return Buffer.from(raw.toString('latin1').replace(/\r(?!\n)/g, eol), 'latin1');
}

/**
 * Mail to LIST-owner@ as it is forwarded: an X-Loop line naming `ownerAddress` on top (it stops
 * the message from coming round again if an owner's address leads back here), read as it goes out
 * (a lone CR made a line end, as for a copy) and without Authentication-Results fields that use
 * our authserv-id, which only we may write (RFC 8601 §5): "dmarc=pass" under our name, forged by
 * the sender, was shown to the owners; and without requests for a read receipt (RECEIPT_REQUESTS).
 */
export function ownerForward(raw: Buffer, authservId: string, ownerAddress: string): Buffer {
  const split = splitMessage(loneCrsAsLineEnds(raw));
  // The -owner@ address stands for the owners: a receipt asked of each would name them to the sender.
  const head = withoutOurResults(withoutFields(split.head, new Set(RECEIPT_REQUESTS)), authservId);
  return Buffer.concat([Buffer.from(`${FORWARD_MARK}${ownerAddress}${split.eol}`), head, split.rest]);
}

const FORWARD_MARK = 'X-Loop: ';

/**
 * Whether a queued mail is a forward made by ownerForward(), a stranger's message, rather than
 * mail the list wrote (notices and digests start with their From). The list does not sign a
 * forward: its key on a message From "postmaster@" the list's domain, written by anyone, made
 * DKIM and DMARC pass for the list's own domain at the owners' provider. The author's own
 * signature, if any, still verifies: the forward only gains a line on top.
 */
export function isOwnerForward(raw: Buffer): boolean {
  return raw.subarray(0, FORWARD_MARK.length).toString('latin1') === FORWARD_MARK;
}

/** The header without Authentication-Results fields whose authserv-id is ours. */
function withoutOurResults(head: Buffer, authservId: string): Buffer {
  const fields = headerFields(head);
  const ours = (f: HeaderField) => f.name === 'authentication-results' && authservIdOf(fieldValue(f)) === authservId.toLowerCase();
  return fields.some(ours) ? Buffer.concat(fields.filter((f) => !ours(f)).map((f) => f.bytes)) : head;
}

/** The authserv-id an Authentication-Results value starts with (RFC 8601 §2.2), comments aside, in lower case. */
function authservIdOf(value: string): string {
  // Comments nest (RFC 5322 §3.2.2): "((x)) ours;" is ours to a reader. One pass, counting depth.
  let bare = '';
  let depth = 0;
  for (let i = 0; i < value.length && bare.length < 300; i++) {
    const c = value[i];
    if (c === '\\') i++;
    else if (c === '(') depth++;
    else if (c === ')' && depth > 0) bare += --depth === 0 ? ' ' : '';
    else if (depth === 0) bare += c;
  }
  // The authserv-id may be a quoted-string (RFC 8601 §2.2: value).
  return bare.trim().split(/[\s;]/)[0].replace(/^"(.*)"$/, '$1').toLowerCase();
}

/**
 * The new fields, folded only where a line would exceed 998 octets (the list's own fields stay one
 * line each, as readers and tests expect them); Buffers are fields ready as they are.
 */
function buildTop(lines: (string | Buffer)[], subjectTail: Buffer | null, eol: string): Buffer {
  const parts: Buffer[] = [];
  for (const line of lines) {
    if (Buffer.isBuffer(line)) parts.push(line);
    else if (line.startsWith('Subject: ') && subjectTail) {
      const subject = Buffer.concat([Buffer.from(line, 'utf8'), subjectTail, Buffer.from(eol)]);
      // The author's subject is as long as it was; only a line the prefix pushed too far is folded.
      parts.push(foldField(subject, eol, MAX_LINE) ?? subject);
    } else {
      const field = Buffer.from(`${line}${eol}`, 'utf8');
      parts.push(foldField(field, eol, MAX_LINE) ?? field);
    }
  }
  return Buffer.concat(parts);
}

/** One member's copy. */
export function memberCopy(p: PreparedCopy, token: string | null): Buffer {
  return Buffer.concat([p.trace, headerLines(memberHeaderLines(p.list, token), p.eol), p.head, p.body]);
}

/**
 * Makes a prepared copy one the list signs: the body hash and the ARC set are computed here, once
 * for all members. The ARC set (from the arrival checks `auth`; RSA keys only, the one algorithm
 * of RFC 8617) covers the shared header section and the body, not the member's lines.
 */
export async function signCopies(p: PreparedCopy, key: ListKey, auth: AuthChecks | undefined, signedAt: Date): Promise<PreparedCopy> {
  // `body` starts with the blank line that ends the header section.
  const bh = bodyHash(p.body.subarray(p.body.indexOf(0x0a) + 1));
  const rows = headerRows(p.head);
  const seal = key.key.asymmetricKeyType === 'rsa' ? arcSealFor(auth, rows, key.domain) : null;
  const arc = seal ? await arcSet(key, rows, bh, seal, signedAt) : [];
  return { ...p, signing: { arc: headerLines(arc.map((l) => l.replace(/\r\n/g, p.eol)), p.eol), signer: new MemberSigner(key, signedFields(rows), bh, signedAt) } };
}

/**
 * One member's copy, signed when the list signs: the member's DKIM-Signature on top (it covers
 * their List-Unsubscribe lines and the shared fields), then the post's ARC set, the trace fields,
 * the member's lines and the shared part. Only the header hash is signed per member.
 */
export async function signedMemberCopy(p: PreparedCopy, token: string | null): Promise<Buffer> {
  const lines = memberHeaderLines(p.list, token);
  const member = headerLines(lines, p.eol);
  if (!p.signing) return Buffer.concat([p.trace, member, p.head, p.body]);
  const s = p.signing;
  const signature = await s.signer.sign(lines);
  return Buffer.concat([headerLines([signature.replace(/\r\n/g, p.eol)], p.eol), s.arc, p.trace, member, p.head, p.body]);
}

/** Per-member lines for composed mail (digests) that already carries the list's shared headers. */
export function withMemberLines(raw: Buffer, list: ListIdentity, token: string | null): Buffer {
  const eol = raw.indexOf('\r\n') >= 0 ? '\r\n' : '\n';
  return Buffer.concat([headerLines(memberHeaderLines(list, token), eol), raw]);
}
