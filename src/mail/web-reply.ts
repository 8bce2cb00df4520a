/*
 * A reply written on a message page (web/archive/reply.ts): the mail a member's own client would
 * send, so that it takes the same path as any post. Also the mailto: link (RFC 6068) offered to
 * readers who cannot post from the web.
 */

import { newMessageId } from './compose.ts';
import { displayName, subjectField, writtenField } from './header-block.ts';
import { base64Lines } from './base64-lines.ts';

/** References kept in a reply: the thread's first message and the newest ones (RFC 5322 §3.6.4 allows trimming). */
export const REPLY_REFERENCES = 20;

/** "Re: " once: a subject that already starts with "Re:" (in any case) keeps it. */
export function replySubject(subject: string): string {
  const s = subject.replace(/[\r\n]+/g, ' ').trim();
  return /^re\s*:/i.test(s) ? s : `Re: ${s}`;
}

/** The parent's References plus its Message-ID, capped: the root and the newest ones stay. */
export function replyReferences(parentRefs: string[], parentId: string): string[] {
  const all = [...parentRefs.filter((r) => r !== parentId), parentId];
  if (all.length <= REPLY_REFERENCES) return all;
  return [all[0], ...all.slice(-(REPLY_REFERENCES - 1))];
}

export interface WebReply {
  fromEmail: string;
  fromName?: string;
  to: string;
  subject: string;
  text: string;
  parentId: string;
  references: string[];
  /** MAIL_DOMAIN, for the new Message-ID */
  domain: string;
  /** the reply's Message-ID when it has one already (a form sent again); else a new one */
  messageId?: string;
  date?: Date;
}

export function composeReply(r: WebReply): { raw: Buffer; messageId: string } {
  const messageId = r.messageId ?? newMessageId(r.domain);
  const name = r.fromName ? displayName(r.fromName) : '';
  const body = r.text.replace(/\r\n?/g, '\n').replace(/\n/g, '\r\n').replace(/(\r\n)?$/, '\r\n');
  const lines = [
    writtenField(`From: ${name ? `${name} <${r.fromEmail}>` : r.fromEmail}`),
    `To: ${r.to}`,
    subjectField(r.subject),
    `Date: ${(r.date ?? new Date()).toUTCString().replace(/GMT$/, '+0000')}`,
    `Message-ID: <${messageId}>`,
    `In-Reply-To: <${r.parentId}>`,
    // One id per line: a long References field stays within the line limits (RFC 5322 §2.1.1).
    `References: ${r.references.map((id) => `<${id}>`).join('\r\n ')}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: base64',
  ];
  const encoded = `${base64Lines(body, '\r\n')}\r\n`;
  return { raw: Buffer.from(`${lines.join('\r\n')}\r\n\r\n${encoded}`, 'utf8'), messageId };
}

/** mailto:LIST?subject=Re:…&In-Reply-To=<id> (RFC 6068: hfields percent-encoded as UTF-8). */
export function mailtoReply(listAddress: string, subject: string, parentId: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `mailto:${listAddress.split('@').map(enc).join('@')}?subject=${enc(replySubject(subject))}&In-Reply-To=${enc(`<${parentId}>`)}`;
}
