/*
 * Commands mailed to LIST-request@, one of the list's addresses: `subscribe`, `unsubscribe`, `help`, in the
 * subject or in the first lines of the body. Also: whether a message was sent by a machine, in
 * which case command addresses must not answer it (mail loops, auto-responders, bounces).
 */

import { DELIVERY_MODES, isOneOf, type DeliveryMode } from '../list-policies.ts';
import { automaticMark } from './automatic.ts';
import { htmlAsText } from './parse.ts';
import type { ParsedMessage } from './parsed-message.ts';

export type Command = { name: 'subscribe'; mode: DeliveryMode | null } | { name: 'unsubscribe' } | { name: 'help' };

const WORDS: Record<string, Command['name']> = {
  subscribe: 'subscribe',
  join: 'subscribe',
  unsubscribe: 'unsubscribe',
  leave: 'unsubscribe',
  remove: 'unsubscribe',
  signoff: 'unsubscribe',
  help: 'help',
  info: 'help',
};

function commandIn(line: string): Command | null {
  const m = /^\s*(?:(?:re|aw|fwd?)\s*:\s*)*([a-z]+)\b\s*([a-z]*)/i.exec(line);
  if (!m) return null;
  const name = WORDS[m[1].toLowerCase()];
  if (!name) return null;
  if (name === 'subscribe') {
    const mode = m[2].toLowerCase();
    return { name, mode: isOneOf(mode, DELIVERY_MODES) ? mode : null };
  }
  return { name };
}

/** HTML read for commands: they are in its first lines, and the rest is what a mail client quoted. */
export const COMMAND_HTML_CHARS = 64 * 1024;

/**
 * The text commands are read from (findCommand, findModerationCommand): the message's text, or,
 * when it has none but HTML (a multipart/alternative whose only part is HTML, which the parser
 * leaves as HTML), the text of its first COMMAND_HTML_CHARS of HTML. Mailman 3 reads the first
 * text/plain part only, and the Subject alone of mail without one.
 */
export async function commandText(m: Pick<ParsedMessage, 'text' | 'html'>): Promise<string> {
  if (m.text.trim() || !m.html) return m.text;
  // Editors write the spaces people type as &nbsp;: a space in a command and its reason.
  return (await htmlAsText(m.html, COMMAND_HTML_CHARS)).replace(/\u00a0/g, ' ');
}

/** The command in a message: the subject first, then the first few body lines that are not quotes. */
export function findCommand(subject: string, text: string): Command | null {
  const fromSubject = commandIn(subject);
  if (fromSubject) return fromSubject;
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('>'));
  for (const line of lines.slice(0, 5)) {
    if (/^--\s*$/.test(line)) break; // signature
    const c = commandIn(line);
    if (c) return c;
  }
  return null;
}

/**
 * True for mail a program sent: bounces (empty envelope sender, MAILER-DAEMON), auto-replies
 * (RFC 3834 Auto-Submitted, X-Autoreply), bulk mail, and mail that came through a list
 * (Precedence: list, List-Id): the command addresses answer people only.
 */
export function isAutomatic(headers: Map<string, string[]>, envelopeFrom: string | null, fromEmail = ''): boolean {
  if (automaticMark(headers, envelopeFrom, fromEmail)) return true;
  if (headers.get('precedence')?.[0]?.trim().toLowerCase() === 'list') return true;
  return headers.has('list-id');
}

/**
 * A moderator's decision mailed back about one held post (core/moderation-mail.ts): `approve`,
 * `discard`, or `reject` with the reason the sender is told.
 */
export interface ModerationCommand {
  action: 'approve' | 'reject' | 'discard';
  reason: string | null;
}

/** The token of a held post's reply address, LIST-confirm+mod-TOKEN@ (a subscription's is plain hex). */
export const MODERATION_TOKEN = /^mod-[a-f0-9]{32}$/;

const MODERATION_LINE = /^\s*(?:(?:re|aw|fwd?)\s*:\s*)*(approve|reject|discard)\b[\s:,.!-]*(.*)$/i;

function moderationIn(line: string): ModerationCommand | null {
  const m = MODERATION_LINE.exec(line);
  if (!m) return null;
  const action = m[1].toLowerCase() as ModerationCommand['action'];
  // Only "reject" takes words after it. "Approve? not sure" or "approve not" is no decision (the
  // moderator is told how to write one), where a word followed by anything used to approve.
  if (action !== 'reject' && m[2].trim() !== '') return null;
  const reason = action === 'reject' ? m[2].trim().slice(0, 500) || null : null;
  return { action, reason };
}

/**
 * The decision in a moderator's reply: the subject, else the first line of the body that is not
 * quoted, blank or the "On … wrote:" line above a quote. Only that line: a word further down, in
 * prose, is not taken for a decision.
 */
export function findModerationCommand(subject: string, text: string): ModerationCommand | null {
  const fromSubject = moderationIn(subject);
  if (fromSubject) return fromSubject;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('>') || /wrote:$/i.test(line)) continue;
    if (/^--\s*$/.test(line)) return null; // signature
    return moderationIn(line);
  }
  return null;
}
