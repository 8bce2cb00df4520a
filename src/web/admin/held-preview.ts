/*
 * What a moderator sees of a held message: the headers that matter and the body as plain text.
 * Never the message's HTML: an HTML-only message is reduced to its text, and everything is
 * escaped by the view. Remote images, scripts and tracking pixels therefore never load.
 */

import sanitizeHtml from 'sanitize-html';
import { showableHtml } from '../../mail/render-body.ts';
import { parse } from '../../mail/parse.ts';
import type { PostChecks, SpamChecks } from '../../mail/post-checks.ts';

/** How the post authenticated as it arrived, for people: one line per method, and the verdict. */
export interface AuthView {
  methods: { name: string; result: string; ok: boolean }[];
  fromDomain: string | null;
  aligned: boolean;
  /** DMARC policy of From's domain, when it has one */
  dmarcPolicy: string | null;
  /** the Authentication-Results value, unfolded */
  header: string;
}

export interface HeldPreview {
  headers: { name: string; value: string }[];
  text: string;
  truncated: boolean;
  fromHtml: boolean;
  attachments: { filename: string; contentType: string; size: number }[];
  problem: string | null;
  /** the spam scanner's verdict as the post arrived (score, rspamd's action, symbols highest first) */
  spam: SpamChecks | null;
  /** why the post was not scanned, when the scanner did not answer */
  spamUnchecked: string | null;
  /** null for posts held before listkeeper checked posts */
  auth: AuthView | null;
}

const MAX_CHARS = 20_000;
const SHOWN = ['from', 'reply-to', 'to', 'cc', 'subject', 'date', 'message-id', 'in-reply-to', 'list-id', 'content-type'];

export async function heldPreview(raw: Buffer, checks?: PostChecks | null): Promise<HeldPreview> {
  const spam = { spam: checks?.spam ?? null, spamUnchecked: checks?.spamUnchecked ?? null };
  const auth = authView(checks);
  try {
    const m = await parse(raw);
    const headers = SHOWN.flatMap((name) => (m.headers.get(name) ?? []).map((value) => ({ name: displayName(name), value: value.slice(0, 500) })));
    let text = m.text;
    let fromHtml = false;
    // HTML that costs too much to read (render-body.ts) leaves the preview without text.
    if (!text.trim() && m.html && showableHtml(m.html)) {
      text = htmlToText(m.html);
      fromHtml = true;
    }
    return {
      headers,
      text: text.slice(0, MAX_CHARS),
      truncated: text.length > MAX_CHARS,
      fromHtml,
      attachments: m.attachments.map((a) => ({ filename: a.filename ?? '(no name)', contentType: a.contentType, size: a.size })),
      problem: null,
      ...spam,
      auth,
    };
  } catch (err) {
    // Unparseable: show the start of the raw bytes as text, which is still safe once escaped.
    const text = raw.subarray(0, MAX_CHARS).toString('latin1');
    return { headers: [], text, truncated: raw.length > MAX_CHARS, fromHtml: false, attachments: [], problem: (err as Error).message, ...spam, auth };
  }
}

export function authView(checks: PostChecks | null | undefined): AuthView | null {
  const a = checks?.auth;
  if (!a) return null;
  const method = (name: string, result: string) => ({ name, result, ok: result === 'pass' });
  return {
    methods: [method('SPF', a.spf), method('DKIM', a.dkim), method('DMARC', a.dmarc), method('ARC', a.arc)],
    fromDomain: a.fromDomain,
    aligned: a.aligned,
    dmarcPolicy: a.dmarcPolicy ?? null,
    header: a.header.replace(/\r?\n[ \t]*/g, ' '),
  };
}

function displayName(name: string): string {
  return name === 'message-id' ? 'Message-ID' : name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

export function htmlToText(html: string): string {
  const withBreaks = html.replace(/<(br|\/p|\/div|\/li|\/h\d|\/tr)\b[^>]*>/gi, '\n$&');
  const stripped = sanitizeHtml(withBreaks, { allowedTags: [], allowedAttributes: {}, nonTextTags: ['style', 'script', 'textarea', 'option', 'noscript', 'title', 'head'] });
  return decodeEntities(stripped).replace(/[ \t]+\n/g, '\n').replace(/\n{3,}/g, '\n\n').trim();
}

function decodeEntities(s: string): string {
  const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (all, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code < 0x110000 ? String.fromCodePoint(code) : all;
    }
    return named[e.toLowerCase()] ?? all;
  });
}
