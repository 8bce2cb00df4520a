/*
 * Digests for members in digest mode: MIME (RFC 2046 multipart/digest, each post a
 * message/rfc822 part: its body byte for byte under the header fields a reader needs, as
 * Mailman keeps them) and plain text (RFC 1153). Pure builders; the list's shared headers are
 * included, the per-member List-Unsubscribe lines are added when sending.
 */

import crypto from 'node:crypto';
import { newMessageId, textBody } from './compose.ts';
import { envelopeAddress } from './address.ts';
import { displayName, headerFields, splitMessage, subjectField, writtenField } from './header-block.ts';
import { listHeaderLines, type ListIdentity } from './list-headers.ts';
import { oneLine } from './parsed-message.ts';
import { hasEightBit } from './seven-bit.ts';

export interface DigestMessage {
  messageId: string;
  raw: Buffer;
  subject: string;
  fromName: string;
  fromEmail: string;
  date: Date;
  text: string;
}

export interface DigestInfo {
  list: ListIdentity & { name: string; domain: string };
  volume: number;
  issue: number;
  date: Date;
}

function subjectOf(d: DigestInfo) {
  return `${d.list.name} Digest, Vol ${d.volume}, Issue ${d.issue}`;
}

/**
 * The author as a line of text. Subjects and names are one line from parse(), but a post stored
 * before that was so could still have line breaks: they made lines of the digest's own, in the
 * plain digest a separator and a whole forged message (as notices do, it is applied again here).
 */
function author(m: DigestMessage): string {
  return oneLine(m.fromName ? `${m.fromName} <${m.fromEmail}>` : m.fromEmail);
}

function topics(messages: DigestMessage[]): string[] {
  return messages.map((m, i) => `   ${i + 1}. ${oneLine(m.subject) || '(no subject)'} (${author(m)})`);
}

function header(d: DigestInfo, contentType: string, extra: string[] = []): string[] {
  // An international domain in A-labels, as list-headers.ts writes it.
  const address = envelopeAddress(d.list.address);
  return [
    writtenField(`From: ${displayName(`${d.list.name} list`)} <${address.replace('@', '-request@')}>`),
    `To: ${address}`,
    subjectField(subjectOf(d)),
    `Date: ${d.date.toUTCString().replace(/GMT$/, '+0000')}`,
    `Message-ID: <${newMessageId(d.list.domain)}>`,
    ...listHeaderLines(d.list, null),
    'MIME-Version: 1.0',
    contentType,
    ...extra,
  ];
}

function intro(d: DigestInfo, messages: DigestMessage[]): string {
  return [
    `Send ${d.list.name} mailing list submissions to`,
    `    ${d.list.address}`,
    '',
    `To change to receiving each message, or to unsubscribe, use the link in the`,
    `List-Unsubscribe header of this message or write to ${d.list.address.replace('@', '-request@')}.`,
    '',
    "Today's Topics:",
    '',
    ...topics(messages),
    '',
  ].join('\r\n');
}

/**
 * The header fields a post keeps in a MIME digest: Mailman 2.1's MIME_DIGEST_KEEP_HEADERS (which
 * takes in its PLAIN_DIGEST_KEEP_HEADERS), what a reader and a mail program need to show, thread
 * and answer the post, and to decode its body. Everything else stays out: the trace of the
 * author's path (every Received, with the addresses of their machine and provider, Return-Path,
 * X-Originating-IP), signatures and results that judged the original (DKIM-Signature, ARC-*,
 * Authentication-Results) and whatever X- fields the author's programs and ours added, all of
 * which a member who takes the digest would otherwise receive about every poster.
 */
export const MIME_DIGEST_KEEP_HEADERS: ReadonlySet<string> = new Set([
  'date', 'from', 'to', 'cc', 'subject', 'message-id', 'keywords', 'in-reply-to', 'references',
  'content-type', 'mime-version', 'content-transfer-encoding', 'precedence', 'reply-to',
]);

/** A post as a MIME digest carries it: the kept header fields as they were written (folding and order), then its body, byte for byte. */
export function digestPart(raw: Buffer): Buffer {
  const { head, rest } = splitMessage(raw);
  const fields = headerFields(head);
  const kept = fields.filter((f) => MIME_DIGEST_KEEP_HEADERS.has(f.name));
  return kept.length === fields.length ? raw : Buffer.concat([...kept.map((f) => f.bytes), rest]);
}

export function mimeDigest(d: DigestInfo, messages: DigestMessage[]): Buffer {
  const outer = `=_digest_${crypto.randomBytes(10).toString('hex')}`;
  const inner = `=_posts_${crypto.randomBytes(10).toString('hex')}`;
  // A topic line can pass 998 octets (a long subject and name): the part is then base64.
  const topicsPart = textBody(intro(d, messages), { eightBit: true });
  // A message/rfc822 part (and a multipart) with 8-bit bytes says so (RFC 2045 §6.4, RFC 2046
  // §5.2.1): unlabelled it is 7bit, which a relay checking 8-bit bodies (Postfix's
  // strict_8bitmime_body) refuses. seven-bit.ts relabels each post it converts 7bit.
  const posts = messages.map((m) => digestPart(m.raw));
  const eightBit = posts.map((raw) => hasEightBit(raw));
  const label = eightBit.includes(true) ? 'Content-Transfer-Encoding: 8bit\r\n' : '';
  const parts: Buffer[] = [
    Buffer.from(`${header(d, `Content-Type: multipart/mixed; boundary="${outer}"`, label || topicsPart.encoding === '8bit' ? ['Content-Transfer-Encoding: 8bit'] : []).join('\r\n')}\r\n\r\n`),
    Buffer.from(`--${outer}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: ${topicsPart.encoding}\r\nContent-Description: Today's Topics (${messages.length} messages)\r\n\r\n`),
    Buffer.from(topicsPart.body, 'utf8'),
    Buffer.from(`\r\n--${outer}\r\nContent-Type: multipart/digest; boundary="${inner}"\r\n${label}\r\n`),
  ];
  for (const [i, raw] of posts.entries()) {
    parts.push(Buffer.from(`--${inner}\r\nContent-Type: message/rfc822\r\n${eightBit[i] ? 'Content-Transfer-Encoding: 8bit\r\n' : ''}\r\n`), raw);
    if (raw.length && raw[raw.length - 1] !== 0x0a) parts.push(Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${inner}--\r\n\r\n--${outer}--\r\n`));
  return Buffer.concat(parts);
}

/**
 * A post's text with each line that starts with "-" stuffed with "- " (RFC 934 §2). RFC 1153 asks
 * only for lines of exactly 30 dashes to be changed, but a burster that reads the digest as RFC 934
 * (nmh's burst; Emacs's undigest when the strict RFC 1153 reading fails) takes any line of "-" and
 * no space for a boundary: a post with "-----" and a From and Subject under it was two messages
 * there, the second one forged. Bursters take the "- " off again. Lines are as textBody() ends them
 * (a lone CR ends one too).
 */
function stuffed(text: string): string {
  return text.split(/\r\n|\r|\n/).map((l) => (l.startsWith('-') ? `- ${l}` : l)).join('\r\n').trimEnd();
}

const SEPARATOR_70 = '-'.repeat(70);
const SEPARATOR_30 = '-'.repeat(30);

/** RFC 1153: the posts' plain text (stuffed: see stuffed()), separated by lines of 30 dashes, after a 70-dash line. */
export function plainDigest(d: DigestInfo, messages: DigestMessage[]): Buffer {
  const body: string[] = [intro(d, messages), SEPARATOR_70, ''];
  messages.forEach((m, i) => {
    body.push(
      `Message: ${i + 1}`,
      `Date: ${m.date.toUTCString().replace(/GMT$/, '+0000')}`,
      `From: ${author(m)}`,
      `Subject: ${oneLine(m.subject)}`,
      `Message-ID: <${m.messageId}>`,
      '',
      stuffed(m.text),
      '',
      SEPARATOR_30,
      '',
    );
  });
  body.push(`End of ${subjectOf(d)}`, '*'.repeat(subjectOf(d).length + 7), '');
  // Posts' text, decoded, often has paragraphs on one line past 998 octets: then base64.
  const text = textBody(body.join('\r\n'), { eightBit: true });
  return Buffer.concat([
    Buffer.from(`${header(d, 'Content-Type: text/plain; charset=utf-8', [`Content-Transfer-Encoding: ${text.encoding}`]).join('\r\n')}\r\n\r\n`),
    Buffer.from(text.encoding === 'base64' ? `${text.body}\r\n` : text.body, 'utf8'),
  ]);
}
