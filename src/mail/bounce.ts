import { classifyText, type BounceKind } from './bounce-rules.ts';

/**
 * Reading bounces: DSNs (RFC 3464, multipart/report with a message/delivery-status part) from
 * any MTA, and the plain-text reports older MTAs (Exim's classic form, qmail) still send.
 * Pure: it reads the raw bytes and the parsed text, classification comes from bounce-rules.ts.
 */
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
  const dsn = deliveryStatus(m.raw);
  if (dsn) {
    const reports = dsn.recipients.map((fields) => fromDsnFields(fields));
    if (reports.length > 0) return reports;
  }
  return [fromPlainText(m)];
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

const STATUS_IN_TEXT = /\b([45]\.\d{1,3}\.\d{1,3})\b/;
const SMTP_REPLY_IN_TEXT = /(?:^|\s)([45]\d\d)[\s-][^\n]*/m;

function fromPlainText(m: BounceInput): BounceReport {
  // Only the report itself: stop at the returned copy of the message.
  const report = m.text.split(/^-{2,} ?(?:This is a copy|Below this line|Original message|Undelivered message)/im)[0];
  const line = report.split(/\r?\n/).find((l) => STATUS_IN_TEXT.test(l) || SMTP_REPLY_IN_TEXT.test(l)) ?? null;
  const status = line ? STATUS_IN_TEXT.exec(line)?.[1] ?? null : null;
  const failedHeader = m.headers.get('x-failed-recipients')?.[0] ?? null;
  const recipient = address(failedHeader) ?? address(/<([^<>\s@]+@[^<>\s]+)>/.exec(report)?.[1] ?? null);
  if (!line) {
    // No status anywhere: an auto-reply, a challenge, a human. Nothing to count.
    return { recipient, action: null, status: null, diagnostic: null, kind: 'unknown', category: 'not_a_bounce', failed: false };
  }
  // The lines around the code usually carry the reason (qmail puts the code after it).
  const lines = report.split(/\r?\n/);
  const at = lines.indexOf(line);
  const diagnostic = lines.slice(Math.max(0, at - 1), at + 2).join(' ').replace(/\s+/g, ' ').trim();
  const { kind, category } = classifyText(status, diagnostic);
  const temporary = /\b(?:will be retried|warning only|delayed|still being retried)\b/i.test(report) && kind === 'soft';
  return { recipient, action: temporary ? 'delayed' : 'failed', status, diagnostic, kind: temporary ? 'unknown' : kind, category: temporary ? 'delayed' : category, failed: !temporary };
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
    if (!fields.has(name)) fields.set(name, line.slice(colon + 1).trim());
  }
  return fields;
}

/** "smtp; 550 ..." → "550 ..."; "rfc822; a@b" → "a@b". */
function stripType(value: string | null): string | null {
  if (!value) return null;
  const semi = value.indexOf(';');
  return (semi >= 0 && semi < 12 ? value.slice(semi + 1) : value).trim() || null;
}

function address(value: string | null): string | null {
  if (!value) return null;
  const m = /<?([^<>\s;,]+@[^<>\s;,]+)>?/.exec(value);
  return m ? m[1].toLowerCase() : null;
}
