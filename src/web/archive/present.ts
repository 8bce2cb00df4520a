/* What archive pages show of messages and lists, shaped for the views. */

import { defangSchemes, obfuscateAddress, obfuscateMarkup, obfuscateText } from '../../mail/obfuscate.ts';
import { escapeHtml } from '../../mail/render-body.ts';
import { messageUrl } from '../../mail/urls.ts';

/** A subject as shown: addresses in it are obfuscated for anonymous readers, like the body's. */
export function shownSubject(subject: string, obfuscate: boolean): string {
  if (!subject) return '(no subject)';
  return obfuscate ? obfuscateText(subject) : subject;
}

/** An author as shown: the name, else the address (obfuscated for anonymous readers). */
export function authorName(name: string, email: string, obfuscate: boolean): string {
  if (name && name !== email) return obfuscate ? obfuscateText(name) : name;
  return email ? (obfuscate ? obfuscateAddress(email) : email) : '(unknown sender)';
}

/** "Name <address>" for a header line. */
export function authorFull(name: string, email: string, obfuscate: boolean): string {
  const address = obfuscate ? obfuscateAddress(email) : email;
  if (!name || name === email) return address || '(unknown sender)';
  return `${obfuscate ? obfuscateText(name) : name} <${address}>`;
}

export interface MessageLink {
  href: string;
  subject: string;
  author: string;
  date: Date;
}

export function messageLink(m: { message_id: string; subject: string; from_name: string; from_email: string; date: Date | string }, obfuscate: boolean): MessageLink {
  return { href: messageUrl(m.message_id), subject: shownSubject(m.subject, obfuscate), author: authorName(m.from_name, m.from_email, obfuscate), date: new Date(m.date) };
}

/** Control characters no page shows; \u0001 and \u0002 among them, which mark matches in excerpts. */
const CONTROLS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g;

/** An excerpt (matches between \u0001 and \u0002, search-excerpt.ts) as safe HTML with <mark>. */
export function excerptHtml(excerpt: string, obfuscate: boolean): string {
  // One pass over the text: the marks made tags, any other control character dropped.
  const html = escapeHtml(excerpt).replace(CONTROLS, (c) => (c === '\u0001' ? '<mark>' : c === '\u0002' ? '</mark>' : ''));
  // Addresses after the marks are made: a searched word is marked inside one ("ann@<mark>example</mark>.org").
  return defangSchemes(obfuscate ? obfuscateMarkup(html) : html);
}

/** Participants of a thread as shown (names, or obfuscated addresses). */
export function participants(list: string[] | null, obfuscate: boolean): string[] {
  return (list ?? []).map((p) => (p.includes('@') ? (obfuscate ? obfuscateText(p) : p) : p));
}
