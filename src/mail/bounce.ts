/*
 * Reading bounces: DSNs (RFC 3464, multipart/report with a message/delivery-status part) from
 * any MTA, and the plain-text reports some mail systems still send (classic Exim, qmail, Postfix
 * and Sendmail notices, …: bounce-formats.ts). Nothing else is a bounce, whatever numbers it
 * holds: an out-of-office reply that mentions a phone number or a date like 5.1.26 is recorded
 * as an auto-reply and never counts. Pure: it reads the raw bytes and the parsed text,
 * classification comes from bounce-rules.ts.
 */

import { autoResponderMark, autoSubmitted, isVacationSubject } from './automatic.ts';
import { MAIL_SYSTEM_FROM, plainBounceFormat, RETURNED_COPY } from './bounce-formats.ts';
import { classifyText, type BounceKind } from './bounce-rules.ts';

export interface BounceReport {
  recipient: string | null;
  action: string | null;
  status: string | null;
  diagnostic: string | null;
  kind: BounceKind;
  category: string;
  /** whether this is a failure at all (delayed/relayed/delivered reports and auto-replies are not) */
  failed: boolean;
}

export interface BounceInput {
  raw: Buffer;
  /** the message's plain text as parsed */
  text: string;
  /** X-Failed-Recipients and similar */
  headers: Map<string, string[]>;
}

export function readBounce(m: BounceInput): BounceReport[] {
  // A report quotes the mail (its Subject, a header, lines of the text) and is stored as text,
  // where PostgreSQL takes no NUL: one, in an auto-reply's Subject, made the message a 554. In the
  // diagnostic a NUL is a space; in an address, nothing (as in a DSN's fields).
  return reportsOf(m).map((r) => ({ ...r, recipient: r.recipient?.replaceAll('\u0000', '') || null, diagnostic: r.diagnostic?.replaceAll('\u0000', ' ') ?? null }));
}

function reportsOf(m: BounceInput): BounceReport[] {
  // What only auto-responders write wins over everything: such mail is never a bounce.
  const subject = m.headers.get('subject')?.[0] ?? '';
  const responder = autoResponderMark(m.headers) ?? (isVacationSubject(subject) ? { evidence: `Subject: ${subject.slice(0, 200)}` } : null);
  if (responder) return [notABounce('auto_reply', `an automatic reply (${responder.evidence}): never counted`)];
  if (isReportShaped(m.headers)) {
    const dsn = deliveryStatus(m.raw);
    const reports = dsn?.recipients.map((fields) => fromDsnFields(fields)) ?? [];
    if (reports.length > 0) return reports;
  }
  const plain = fromPlainText(m);
  if (plain) return [plain];
  // Mail systems mark their bounces Auto-Submitted too, so the header alone proves nothing either
  // way; without a report format, it names what the mail was.
  const auto = autoSubmitted(m.headers);
  if (auto !== null && auto !== 'no') return [notABounce('auto_reply', `automatic mail (Auto-Submitted: ${auto}) that is no delivery report: never counted`)];
  return [notABounce('not_a_bounce', 'neither a delivery status notification (RFC 3464) nor a known bounce format: never counted')];
}

function notABounce(category: string, diagnostic: string): BounceReport {
  return { recipient: null, action: null, status: null, diagnostic, kind: 'unknown', category, failed: false };
}

/**
 * A DSN is a multipart/report (RFC 3464 §2); a few old systems wrap the delivery-status part in
 * multipart/mixed, which is taken only from a mail system's address.
 */
function isReportShaped(headers: Map<string, string[]>): boolean {
  const type = headers.get('content-type')?.[0]?.toLowerCase() ?? '';
  if (/^\s*multipart\/report\b/.test(type)) return true;
  return /^\s*multipart\//.test(type) && MAIL_SYSTEM_FROM.test(headers.get('from')?.[0] ?? '');
}

function fromDsnFields(f: Map<string, string>): BounceReport {
  const action = (f.get('action') ?? '').toLowerCase() || null;
  const status = /\d\.\d{1,3}\.\d{1,3}/.exec(f.get('status') ?? '')?.[0] ?? null;
  const diagnostic = stripType(f.get('diagnostic-code') ?? f.get('x-exim-diagnostic') ?? null);
  const recipient = address(stripType(f.get('final-recipient') ?? f.get('original-recipient') ?? null));
  const failed = action === null ? /^5/.test(status ?? '') : action === 'failed';
  // A generic status (5.0.0) says little; the diagnostic is better evidence then.
  const { kind, category } = failed ? classifyText(status && !/\.0\.0$/.test(status) ? status : null, diagnostic ?? status) : { kind: 'unknown' as const, category: action ?? 'not_a_failure' };
  return { recipient, action, status, diagnostic, kind, category, failed };
}

/** How much of a plain-text bounce is read for its report. */
const REPORT_CHARS = 64 * 1024;

const STATUS_IN_TEXT = /\b([45]\.\d{1,3}\.\d{1,3})\b/;
const SMTP_REPLY_IN_TEXT = /(?:^|\s)([45]\d\d)[\s-][^\n]*/m;
/** Words of every format for "only a warning: delivery is still being tried". */
const WARNING = /\b(?:will be retried|warning only|still being retried|delivery attempts will continue|has not yet been delivered|could not be delivered for more than)\b/i;

/**
 * A plain-text report: only from a mail system's address and in one of the known formats. The
 * status and reason are read from the report alone, after the format's opening sentence and
 * before the returned copy of our message.
 */
function fromPlainText(m: BounceInput): BounceReport | null {
  if (!MAIL_SYSTEM_FROM.test(m.headers.get('from')?.[0] ?? '')) return null;
  // A report is a few KB before the returned copy: what a stranger sends past that is not read.
  const text = m.text.slice(0, REPORT_CHARS);
  const found = plainBounceFormat(text);
  if (!found) return null;
  const rest = text.slice(found.at);
  const copy = RETURNED_COPY.exec(rest);
  const report = copy ? rest.slice(0, copy.index) : rest;
  const lines = report.split(/\r?\n/);
  const line = lines.find((l) => STATUS_IN_TEXT.test(l) || SMTP_REPLY_IN_TEXT.test(l)) ?? null;
  const status = line ? STATUS_IN_TEXT.exec(line)?.[1] ?? null : null;
  const recipient = address(m.headers.get('x-failed-recipients')?.[0] ?? null)
    ?? address(/<([^<>\s@]+@[^<>\s]+)>/.exec(report)?.[1] ?? null)
    ?? address(/(?:^|\s)([^\s@<>"'()]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+)/im.exec(report.slice(report.indexOf('\n')))?.[1] ?? null);
  if (WARNING.test(report) || found.format.warning?.test(report)) {
    return { recipient, action: 'delayed', status, diagnostic: null, kind: 'unknown', category: 'delayed', failed: false };
  }
  // The lines around the code usually carry the reason (qmail puts the code after it). A report
  // without any code is classified on its own words (Postfix's old "unknown user"), and counts
  // for nothing when they say nothing the rules know.
  const at = line ? lines.indexOf(line) : lines.findIndex((l) => recipient !== null && l.toLowerCase().includes(recipient));
  const diagnostic = (at >= 0 ? lines.slice(Math.max(0, at - 1), at + 2) : lines.slice(0, 12)).join(' ').replace(/\s+/g, ' ').trim().slice(0, 1000);
  const { kind, category } = classifyText(status, diagnostic);
  return { recipient, action: 'failed', status, diagnostic, kind, category, failed: true };
}

/** The fields of a message/delivery-status part: per-message, then one map per recipient. */
export function deliveryStatus(raw: Buffer): { message: Map<string, string>; recipients: Map<string, string>[] } | null {
  const text = raw.toString('latin1');
  const header = /^content-type:[ \t]*message\/(?:global-)?delivery-status\b[^\n]*\n(?:[ \t][^\n]*\n)*/im.exec(text);
  if (!header) return null;
  // Skip the rest of the part's header, up to its blank line.
  const afterHeader = text.slice(header.index + header[0].length);
  const blank = /\r?\n\r?\n|^\r?\n/.exec(afterHeader);
  if (!blank) return null;
  let body = afterHeader.slice(blank.index + blank[0].length);
  const end = /^--[^\r\n]+$/m.exec(body);
  if (end) body = body.slice(0, end.index);
  const blocks = body.replace(/\r\n/g, '\n').split(/\n[ \t]*\n/).map((b) => b.trim()).filter(Boolean).map(fieldsOf);
  if (blocks.length === 0) return null;
  // The per-message block comes first; blocks naming a recipient are per-recipient.
  const recipients = blocks.filter((b) => b.has('final-recipient') || b.has('original-recipient'));
  return { message: blocks[0], recipients };
}

function fieldsOf(block: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of block.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    // No NUL (PostgreSQL text holds none: the bounce was refused with 554), and no field longer
    // than any real one (an address is at most 254 characters, a diagnostic a few lines).
    if (!fields.has(name)) fields.set(name, line.slice(colon + 1, colon + 1 + FIELD_CHARS).replaceAll('\u0000', '').trim());
  }
  return fields;
}

/** "smtp; 550 ..." → "550 ..."; "rfc822; a@b" → "a@b". */
function stripType(value: string | null): string | null {
  if (!value) return null;
  const semi = value.indexOf(';');
  return (semi >= 0 && semi < 12 ? value.slice(semi + 1) : value).trim() || null;
}

const FIELD_CHARS = 2000;

function address(value: string | null): string | null {
  if (!value) return null;
  // Unanchored, the pattern is tried at every position of a long value without an "@": bounded.
  const m = /<?([^<>\s;,]+@[^<>\s;,]+)>?/.exec(value.slice(0, 320));
  return m ? m[1].toLowerCase() : null;
}
