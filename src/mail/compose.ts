/*
 * Plain-text mail we write ourselves: notices, confirmations, replies to commands. Marked
 * Auto-Submitted (RFC 3834) so that auto-responders do not answer them and our own command
 * addresses ignore anything that answers automatically.
 */

import crypto from 'node:crypto';
import { asciiDomain, envelopeAddress, headerMailbox } from './address.ts';
import { subjectField, writtenField } from './header-block.ts';
import { base64Lines } from './base64-lines.ts';

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
  return `${Date.now().toString(36)}.${crypto.randomBytes(9).toString('hex')}@${asciiDomain(domain)}`;
}

/** Whether `value` has the shape newMessageId(domain) gives (one this server could have made). */
export function isNewMessageId(value: unknown, domain: string): value is string {
  if (typeof value !== 'string' || value.length > 300) return false;
  const at = value.lastIndexOf('@');
  return /^[0-9a-z]{1,12}\.[0-9a-f]{18}$/.test(value.slice(0, at)) && value.slice(at + 1) === asciiDomain(domain);
}

/**
 * A text as the body of a text/plain part: its lines ended by `eol` (a lone CR ends one too, as
 * relays would make it: sent raw, it was rewritten on the wire and broke the list's signature),
 * and how it travels: 7bit when it is ASCII, 8bit when it is UTF-8 and `eightBit` allows it, with
 * no line over RFC 5322's 998 octets; else base64 (a pasted paragraph, a decoded post's long lines),
 * or when `base64` asks for it.
 */
export function textBody(text: string, opts: { eol?: string; eightBit?: boolean; base64?: boolean } = {}): { charset: 'us-ascii' | 'utf-8'; encoding: '7bit' | '8bit' | 'base64'; body: string } {
  const eol = opts.eol ?? '\r\n';
  const lines = text.split(/\r\n|\r|\n/);
  const ascii = /^[\x00-\x7f]*$/.test(text);
  const fits = lines.every((l) => l.length <= 998 && (ascii || Buffer.byteLength(l) <= 998));
  const charset = ascii ? 'us-ascii' : 'utf-8';
  const body = lines.join(eol);
  if (fits && (ascii || opts.eightBit) && !opts.base64) return { charset, encoding: ascii ? '7bit' : '8bit', body };
  return { charset, encoding: 'base64', body: base64Lines(body, eol) };
}

export function composeText(m: TextMail): Buffer {
  const messageId = newMessageId(m.domain);
  const { charset, encoding, body } = textBody(m.text.replace(/(\r\n|\r|\n)?$/, '\n'));
  const lines = [
    // An international domain in A-labels, as in the envelope: in U-labels the field is raw UTF-8,
    // which only SMTPUTF8 carries (RFC 6532), and a server without 8BITMIME is not sent it at all.
    writtenField(`From: ${headerMailbox(m.from)}`),
    `To: ${envelopeAddress(m.to)}`,
    subjectField(m.subject),
    `Date: ${(m.date ?? new Date()).toUTCString().replace(/GMT$/, '+0000')}`,
    `Message-ID: <${messageId}>`,
    ...(m.inReplyTo ? [`In-Reply-To: <${m.inReplyTo}>`, `References: <${m.inReplyTo}>`] : []),
    ...(m.replyTo ? [writtenField(`Reply-To: ${headerMailbox(m.replyTo)}`)] : []),
    `Auto-Submitted: ${m.autoSubmitted ?? 'auto-generated'}`,
    ...(m.headers ?? []),
    'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${charset}`,
    `Content-Transfer-Encoding: ${encoding}`,
  ];
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${encoding === 'base64' ? `${body}\r\n` : body}`, 'utf8');
}
