import { isUtf8 } from 'node:buffer';
import type { Request, Response } from 'express';
import { archivedMessage, messagePage as messagePageData, type ArchivedMessage, type MessageList, type Neighbour } from '../../db/archive-messages.ts';
import { Forbidden, NotFound } from '../../errors.ts';
import { attachmentHeaders } from '../../mail/attachment-type.ts';
import { decodeHeaderWords } from '../../mail/header-words.ts';
import { messageIdPath, normalizeMessageId } from '../../mail/message-id.ts';
import { obfuscateText } from '../../mail/obfuscate.ts';
import type { ParsedMessage } from '../../mail/parse.ts';
import { firstHeader, headerSection } from '../../mail/raw-headers.ts';
import { hasRemoteImages, renderText, sanitizeHtml } from '../../mail/render-body.ts';
import type { WebContext } from '../app.ts';
import { viewerOf, type Viewer } from '../viewer.ts';
import { readerOf } from './access.ts';
import { messageAtFault } from './parsed-messages.ts';
import { sendBody, sendPage, setCacheHeaders } from './http.ts';
import { authorFull, listHref, messageHref, messageLink, shownSubject } from './present.ts';

/**
 * /message-id/MSGID (the permalink), /message-id/raw/MSGID (the bytes as received) and
 * /message-id/attachment/MSGID/N/NAME. MSGID may come with or without its angle brackets.
 * A message is readable when one of its lists is; a hidden one answers 410 with the reason.
 */

interface Found {
  m: ArchivedMessage;
  lists: MessageList[];
  restricted: boolean;
}

async function findReadable(ctx: WebContext, viewer: Viewer | null, param: string, withRaw = true): Promise<Found> {
  const id = normalizeMessageId(param);
  return readable(id ? await archivedMessage(ctx.db.readPool, id, readerOf(viewer), withRaw) : null, viewer);
}

/** The message if one of its lists is readable by this viewer; otherwise 404, or 403 for a members list. */
function readable(m: ArchivedMessage | null, viewer: Viewer | null): Found {
  if (!m || m.lists.length === 0) throw new NotFound('There is no archived message with this Message-ID.', 'no_such_message');
  const lists = m.lists.filter((l) => l.readable);
  if (lists.length === 0) {
    if (m.lists.some((l) => l.archive === 'members')) {
      throw new Forbidden(`This message is in an archive open to list members only${viewer ? '' : ': log in to read it'}.`, 'archive_restricted');
    }
    throw new NotFound('There is no archived message with this Message-ID.', 'no_such_message');
  }
  return { m, lists, restricted: !lists.some((l) => l.archive === 'public') };
}

function sendHidden(ctx: WebContext, req: Request, res: Response, f: Found) {
  sendPage(ctx, req, res, 'archive/hidden.njk', {
    title: 'Message removed',
    messageId: f.m.message_id,
    reason: f.m.hidden_reason || 'no reason given',
    hiddenAt: f.m.hidden_at,
    lists: f.lists.map((l) => ({ ...l, href: listHref(l.key) })),
  }, { restricted: f.restricted, lastModified: f.m.hidden_at }, 410);
}

export async function messagePage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const obfuscate = !viewer;
  const id = normalizeMessageId(String(req.params.id));
  const preferred = typeof req.query.list === 'string' ? req.query.list : null;
  const data = id ? await messagePageData(ctx.db.readPool, id, readerOf(viewer), preferred) : null;
  const f = readable(data, viewer);
  if (f.m.hidden_at) return sendHidden(ctx, req, res, f);
  const m = f.m;
  const nb = data!;
  const list = f.lists.find((l) => l.id === nb.list_id) ?? f.lists[0];
  const parsed = await messageView(ctx, m, req.query.view === 'html');
  const base = listHref(list.key);
  const path = messageIdPath(m.message_id);
  const body = renderBody(m, parsed, req, obfuscate, path);
  const link = (n: Neighbour | null) => (n ? messageLink(n, obfuscate) : null);
  const header = (name: string) => {
    const v = parsed?.header(name);
    return v ? (obfuscate ? obfuscateText(decodeHeaderWords(v)) : decodeHeaderWords(v)) : null;
  };
  if (body.remote && req.query.images === 'remote') {
    res.set('Content-Security-Policy', "default-src 'self'; img-src 'self' data: https: http:; style-src 'self' 'unsafe-inline'; script-src 'self'; form-action 'self'; frame-ancestors 'none'");
  }
  sendPage(ctx, req, res, 'archive/message.njk', {
    title: shownSubject(m.subject, obfuscate),
    m,
    from: authorFull(m.from_name, m.from_email, obfuscate),
    to: header('to'),
    cc: header('cc'),
    inReplyTo: m.in_reply_to ? { id: m.in_reply_to, href: messageHref(m.in_reply_to) } : null,
    list,
    otherLists: f.lists.filter((l) => l.id !== list.id).map((l) => ({ ...l, href: `${messageHref(m.message_id)}?list=${encodeURIComponent(l.key)}` })),
    base,
    threadHref: `${base}thread/${m.thread_id}`,
    threadMbox: `${base}thread/${m.thread_id}.mbox`,
    rawHref: `/message-id/raw/${path}`,
    body,
    attachments: (parsed?.attachments ?? []).map((a, i) => ({
      name: a.filename || `attachment-${i + 1}`,
      type: a.contentType,
      size: a.size,
      href: `/message-id/attachment/${path}/${i + 1}/${encodeURIComponent(a.filename || `attachment-${i + 1}`)}`,
    })),
    parent: link(nb.parent),
    prevInThread: link(nb.prev_in_thread),
    nextInThread: link(nb.next_in_thread),
    prevByDate: link(nb.prev_by_date),
    nextByDate: link(nb.next_by_date),
    replies: nb.replies.map((r) => messageLink(r, obfuscate)),
    threadMessages: nb.thread_messages,
    threadPosition: nb.thread_position,
  }, { restricted: f.restricted, lastModified: nb.last_modified });
}

/** What the page shows of a message's content. */
interface MessageView {
  text: string;
  /** the HTML part, when the page may show it */
  html: string | null;
  /** whether the message has an HTML part (the page links to ?view=html) */
  hasHtml: boolean;
  attachments: ParsedMessage['attachments'];
  topType: string;
  header(name: string): string | null;
}

// A part header announcing HTML, in the body of a multipart message.
const HTML_PART = /^content-type:[ \t]*text\/html\b/im;

/**
 * Most list traffic is shown from the stored body (the text part) and the raw header section,
 * without a MIME parse: plain-text mail, and multipart/alternative mail (text and HTML) unless
 * the reader asked for its HTML. Anything with attachments, HTML-only mail and ?view=html are
 * parsed (once, for this one message): the MIME parser costs milliseconds.
 */
async function messageView(ctx: WebContext, m: ArchivedMessage, htmlAsked: boolean): Promise<MessageView | null> {
  // Large messages come without their bytes (the page query leaves them out): their parse is kept.
  if (!m.raw) return parsedView(ctx, m);
  const section = headerSection(m.raw);
  const topType = firstHeader(section, 'content-type') ?? 'text/plain';
  const plain = /^\s*text\/plain\b/i.test(topType);
  const alternative = !htmlAsked && /^\s*multipart\/alternative\b/i.test(topType);
  if (!m.has_attachments && (plain || alternative)) {
    const bytes = m.raw.subarray(0, section.length);
    const headers = isUtf8(bytes) ? bytes.toString('utf8') : section;
    const hasHtml = alternative && HTML_PART.test(m.raw.toString('latin1', section.length));
    return { text: m.body, html: null, hasHtml, attachments: [], topType, header: (name) => firstHeader(headers, name) };
  }
  return parsedView(ctx, m);
}

/** The view of a message from its parse, kept in memory (parsed-messages.ts). */
async function parsedView(ctx: WebContext, m: ArchivedMessage): Promise<MessageView | null> {
  // A message that cannot be parsed is shown from its stored text; a busy server says so (503).
  const parsed = await ctx.parsedMessages.content(ctx.db.readPool, m).catch((err) => {
    if (messageAtFault(err)) return null;
    throw err;
  });
  if (!parsed) return null;
  return {
    text: parsed.text, html: parsed.html, hasHtml: parsed.html !== null, attachments: parsed.attachments, topType: parsed.headers.get('content-type')?.[0] ?? '',
    header: (name) => parsed.headers.get(name)?.join(', ') ?? null,
  };
}

/** The text part by default; the sanitised HTML part for HTML-only mail or when asked (?view=html). */
function renderBody(m: ArchivedMessage, parsed: MessageView | null, req: Request, obfuscate: boolean, path: string) {
  const html = parsed?.html ?? null;
  const topType = parsed?.topType ?? '';
  const wantHtml = html !== null && (req.query.view === 'html' || (req.query.view !== 'text' && /^\s*text\/html/i.test(topType)));
  if (!wantHtml || html === null) {
    return { kind: 'text', html: renderText(parsed?.text ?? m.body, { obfuscate }), hasHtml: parsed?.hasHtml ?? false, remote: false };
  }
  const cids = new Map((parsed?.attachments ?? []).map((a, i) => [a.contentId?.replace(/^<|>$/g, '') ?? '', i + 1]));
  return {
    kind: 'html',
    html: sanitizeHtml(html, {
      obfuscate,
      remoteImages: req.query.images === 'remote',
      cidUrl: (cid) => (cids.has(cid) ? `/message-id/attachment/${path}/${cids.get(cid)}/inline` : null),
    }),
    hasHtml: true,
    remote: hasRemoteImages(html),
  };
}

export async function rawMessage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const f = await findReadable(ctx, viewer, String(req.params.id));
  setCacheHeaders(req, res, { restricted: f.restricted, lastModified: changedAt(f.m) });
  if (f.m.hidden_at) return sendRemoved(res, f.m);
  // setHeader, not res.set: Express would add "charset=utf-8" to bytes that are not UTF-8.
  res.setHeader('Content-Type', isUtf8(f.m.raw) ? 'text/plain; charset=utf-8' : 'text/plain');
  res.set('Content-Disposition', 'inline');
  sendBody(req, res, f.m.raw);
}

export async function attachment(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const f = await findReadable(ctx, viewer, String(req.params.id), false);
  if (f.m.hidden_at) {
    setCacheHeaders(req, res, { restricted: f.restricted, lastModified: changedAt(f.m) });
    return sendRemoved(res, f.m);
  }
  const n = Number(req.params.n);
  const parsed = await ctx.parsedMessages.content(ctx.db.readPool, f.m);
  const a = Number.isInteger(n) && n >= 1 ? parsed.attachments[n - 1] : undefined;
  if (!a) throw new NotFound('This message has no such attachment.', 'no_such_attachment');
  const served = attachmentHeaders(a.contentType, a.filename, `attachment-${n}`);
  setCacheHeaders(req, res, { restricted: f.restricted, lastModified: changedAt(f.m) });
  res.set('Content-Type', served.contentType);
  res.set('Content-Disposition', served.disposition);
  res.set('Content-Security-Policy', "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'");
  sendBody(req, res, a.content);
}

/** Last-Modified of a message's own URLs: its arrival, or its last hiding or showing again. */
function changedAt(m: ArchivedMessage): Date {
  return m.visibility_changed_at && m.visibility_changed_at > m.received_at ? m.visibility_changed_at : m.received_at;
}

/** 410 for the raw bytes or an attachment of a hidden message, with the reason. */
function sendRemoved(res: Response, m: ArchivedMessage) {
  res.status(410).type('text/plain').send(`This message was removed from the archive: ${m.hidden_reason || 'no reason given'}\n`);
}
