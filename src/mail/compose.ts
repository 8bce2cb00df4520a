/*
 * Plain-text mail we write ourselves: notices, confirmations, replies to commands. Marked
 * Auto-Submitted (RFC 3834) so that auto-responders do not answer them and our own command
 * addresses ignore anything that answers automatically.
 */

import crypto from 'node:crypto';
import { subjectField } from './header-block.ts';

export interface TextMail {
  from: string;
  to: string;
  subject: string;
  text: string;
  replyTo?: string;
  /** extra header lines, already formatted ("Name: value") */
  headers?: string[];
  /** domain for the generated Message-ID */
  domain: string;
  autoSubmitted?: 'auto-generated' | 'auto-replied';
  inReplyTo?: string | null;
  date?: Date;
}

export function newMessageId(domain: string): string {
  return `${Date.now().toString(36)}.${crypto.randomBytes(9).toString('hex')}@${domain}`;
}

/** Whether `value` has the shape newMessageId(domain) gives (one this server could have made). */
export function isNewMessageId(value: unknown, domain: string): value is string {
  if (typeof value !== 'string' || value.length > 300) return false;
  const at = value.lastIndexOf('@');
  return /^[0-9a-z]{1,12}\.[0-9a-f]{18}$/.test(value.slice(0, at)) && value.slice(at + 1) === domain;
}

export function composeText(m: TextMail): Buffer {
  const messageId = newMessageId(m.domain);
  const body = m.text.replace(/\r?\n/g, '\r\n').replace(/(\r\n)?$/, '\r\n');
  const ascii = /^[\x00-\x7f]*$/.test(body) && body.split('\r\n').every((l) => l.length <= 998);
  const lines = [
    `From: ${m.from}`,
    `To: ${m.to}`,
    subjectField(m.subject),
    `Date: ${(m.date ?? new Date()).toUTCString().replace(/GMT$/, '+0000')}`,
    `Message-ID: <${messageId}>`,
    ...(m.inReplyTo ? [`In-Reply-To: <${m.inReplyTo}>`, `References: <${m.inReplyTo}>`] : []),
    ...(m.replyTo ? [`Reply-To: ${m.replyTo}`] : []),
    `Auto-Submitted: ${m.autoSubmitted ?? 'auto-generated'}`,
    ...(m.headers ?? []),
    'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${ascii ? 'us-ascii' : 'utf-8'}`,
    `Content-Transfer-Encoding: ${ascii ? '7bit' : 'base64'}`,
  ];
  const encoded = ascii ? body : `${(Buffer.from(body, 'utf8').toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')}\r\n`;
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${encoded}`, 'utf8');
}
