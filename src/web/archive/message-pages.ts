/*
 * /message-id/MSGID (the permalink), /message-id/raw/MSGID (the bytes as received) and
 * /message-id/attachment/MSGID/N/NAME. MSGID may come with or without its angle brackets; ?list=
 * picks the list to show it in, and which message when the Message-ID names several (permalink.ts
 * decides what this reader sees). A message hidden in every readable list answers 410 with why.
 */

import { isUtf8 } from 'node:buffer';
import crypto from 'node:crypto';
import type { Request, Response } from 'express';
import { findPermalink, messageWithNeighbours, type ArchivedMessage, type MessageCopy, type Neighbour } from '../../db/archive-messages.ts';
import { messageDigest } from '../../db/message-digests.ts';
import { messageRaw } from '../../db/message-raw.ts';
import { NotFound } from '../../errors.ts';
import { attachmentHeaders } from '../../mail/attachment-type.ts';
import { decodeHeaderWords } from '../../mail/header-words.ts';
import { obfuscateText } from '../../mail/obfuscate.ts';
import type { ParsedMessage } from '../../mail/parse.ts';
import { firstHeader, headerSection } from '../../mail/raw-headers.ts';
import { hasRemoteImages, renderText, sanitizeHtml, showableHtml, shownText } from '../../mail/render-body.ts';
import { attachmentUrl, listUrl, loginUrl, messageUrl, rawMessageUrl, threadMboxUrl, threadUrl } from '../../mail/urls.ts';
import type { WebContext } from '../context.ts';
import { viewerOf } from '../viewer.ts';
import { readerOf } from './access.ts';
import { HEAVY_DOWNLOAD_BYTES } from './download-slots.ts';
import { routeMessageId, sendBody, sendPage, setCacheHeaders } from './http.ts';
import { authorFull, authorName, messageLink, shownSubject } from './present.ts';
import { messageAtFault } from './parsed-messages.ts';
import { resolvePermalink, type Resolution } from './permalink.ts';
import { replyOffer } from './reply.ts';
import { copyKeys, threadKey } from './cache-keys.ts';

/** ?list=: the list key or address the reader asked for. */
function preferredList(req: Request): string | null {
  return typeof req.query.list === 'string' ? req.query.list.trim().toLowerCase() : null;
}

/** The readable lists of a resolution, with the restriction that sets the cache policy. */
function restrictedOf(lists: MessageCopy[]): boolean {
  return !lists.some((l) => l.archive === 'public');
}

function sendHidden(ctx: WebContext, req: Request, res: Response, messageId: string, r: Extract<Resolution, { kind: 'hidden' }>) {
  sendPage(ctx, req, res, 'archive/hidden.njk', {
    title: 'Message removed',
    messageId,
    reason: r.copy.hidden_reason || 'no reason given',
    hiddenAt: r.copy.hidden_at,
    lists: uniqueLists(r.lists).map((l) => ({ ...l, href: listUrl(l.key) })),
  }, { restricted: restrictedOf(r.lists), lastModified: changedAt(r.lists), keys: copyKeys(r.lists) }, 410);
}

/** 300: the Message-ID names several messages this reader may read; each is offered with its list. */
function sendChoice(ctx: WebContext, req: Request, res: Response, messageId: string, r: Extract<Resolution, { kind: 'choice' }>, target: (key: string) => string) {
  const obfuscate = !viewerOf(req);
  const lists = r.choices.flatMap((c) => c.lists);
  sendPage(ctx, req, res, 'archive/choice.njk', {
    title: `Several messages have the Message-ID <${messageId}>`,
    messageId,
    choices: r.choices.map((c) => ({
      href: target(c.lists[0].key),
      subject: shownSubject(c.subject, obfuscate),
      author: authorName(c.from_name, c.from_email, obfuscate),
      date: c.date,
      lists: c.lists.map((l) => ({ name: l.name, address: l.address, href: listUrl(l.key) })),
    })),
  }, { restricted: restrictedOf(lists), lastModified: changedAt(lists), keys: copyKeys(lists) }, 300);
}

function uniqueLists(copies: MessageCopy[]): MessageCopy[] {
  return copies.filter((c, i) => copies.findIndex((o) => o.list_id === c.list_id) === i);
}

export async function messagePage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const obfuscate = !viewer;
  const id = routeMessageId(res);
  const data = await messageWithNeighbours(ctx.db.readPool, id, readerOf(viewer), preferredList(req));
  const r = resolvePermalink(data.copies, preferredList(req), viewer);
  if (r.kind === 'hidden') return sendHidden(ctx, req, res, id, r);
  if (r.kind === 'choice') return sendChoice(ctx, req, res, id, r, (key) => messageUrl(id, key));
  const m = data.message!;
  const nb = data.neighbours!;
  const list = r.lists.find((l) => l.list_id === data.list_id) ?? r.lists[0];
  const [parsed, reply] = await Promise.all([messageView(ctx, m, req.query.view === 'html'), replyOffer(ctx.db.readPool, viewer, list, m)]);
  const base = listUrl(list.key);
  // When the Message-ID names more than one message, the page's own links say which.
  const which = r.shared ? list.key : null;
  const body = renderBody(m, parsed, req, obfuscate, which);
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
    inReplyTo: m.in_reply_to ? { id: m.in_reply_to, href: messageUrl(m.in_reply_to) } : null,
    list: Object.assign({}, list, { id: list.list_id }),
    otherLists: r.lists.filter((l) => l.list_id !== list.list_id).map((l) => ({ ...l, href: messageUrl(m.message_id, l.key) })),
    base,
    threadHref: threadUrl(list.key, m.thread_id),
    threadMbox: threadMboxUrl(list.key, m.thread_id),
    rawHref: rawMessageUrl(m.message_id, which),
    body,
    attachments: (parsed?.attachments ?? []).map((a, i) => {
      // A file name is the sender's text like any other ("alice@example.org.vcf"); NAME in the URL is only for the reader.
      const name = a.filename ? (obfuscate ? obfuscateText(a.filename) : a.filename) : `attachment-${i + 1}`;
      return { name, type: a.contentType, size: a.size, href: attachmentUrl(m.message_id, i + 1, name, which) };
    }),
    parent: link(nb.parent),
    prevInThread: link(nb.prev_in_thread),
    nextInThread: link(nb.next_in_thread),
    prevByDate: link(nb.prev_by_date),
    nextByDate: link(nb.next_by_date),
    replies: nb.replies.map((x) => messageLink(x, obfuscate)),
    threadMessages: nb.thread_messages,
    threadPosition: nb.thread_position,
    reply,
    // Built from the page's own URL: the page cache serves it for every query it ignores.
    loginHref: loginUrl(messageUrl(m.message_id, which)),
  }, { restricted: restrictedOf(r.lists), lastModified: nb.last_modified, keys: [...copyKeys(r.lists), threadKey(m.thread_id)] });
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
function renderBody(m: ArchivedMessage, parsed: MessageView | null, req: Request, obfuscate: boolean, which: string | null) {
  const html = parsed?.html ?? null;
  const topType = parsed?.topType ?? '';
  const wantHtml = html !== null && (req.query.view === 'html' || (req.query.view !== 'text' && /^\s*text\/html/i.test(topType)));
  // An HTML part too large or too deeply nested to sanitise at every view: its text instead.
  const withheld = wantHtml && !showableHtml(html);
  if (!wantHtml || html === null || withheld) {
    const shown = shownText(parsed?.text ?? m.body);
    return { kind: 'text', html: renderText(shown.text, { obfuscate }), hasHtml: (parsed?.hasHtml ?? false) && !withheld, remote: false, cut: shown.cut, withheld };
  }
  const cids = new Map((parsed?.attachments ?? []).map((a, i) => [a.contentId?.replace(/^<|>$/g, '') ?? '', i + 1]));
  return {
    kind: 'html',
    html: sanitizeHtml(html, {
      obfuscate,
      remoteImages: req.query.images === 'remote',
      cidUrl: (cid) => (cids.has(cid) ? attachmentUrl(m.message_id, cids.get(cid)!, 'inline', which) : null),
    }),
    hasHtml: true,
    remote: hasRemoteImages(html),
  };
}

/**
 * The message behind a raw or attachment URL for this reader: the one permalink.ts shows, or an
 * answer already sent (410 for a hidden message, a choice when the Message-ID names several).
 */
async function permalinkTarget(ctx: WebContext, req: Request, res: Response, target: (key: string) => string, withRaw = true, rawBelow: number | null = null): Promise<{ m: ArchivedMessage; lists: MessageCopy[] } | null> {
  const viewer = viewerOf(req);
  const id = routeMessageId(res);
  const found = await findPermalink(ctx.db.readPool, id, readerOf(viewer), preferredList(req), withRaw, rawBelow);
  const r = resolvePermalink(found.copies, preferredList(req), viewer);
  if (r.kind === 'hidden') {
    setCacheHeaders(req, res, { restricted: restrictedOf(r.lists), lastModified: changedAt(r.lists), keys: copyKeys(r.lists) });
    res.status(410).type('text/plain').send(`This message was removed from the archive: ${r.copy.hidden_reason || 'no reason given'}\n`);
    return null;
  }
  if (r.kind === 'choice') {
    sendChoice(ctx, req, res, id, r, target);
    return null;
  }
  return { m: found.message!, lists: r.lists };
}

export async function rawMessage(ctx: WebContext, req: Request, res: Response) {
  // A large message's bytes are read only once it has a download slot: read first and refused
  // after, each 503 while the slots were taken cost a read of the whole message, and a flood of
  // them held the read pool and hundreds of MB while pages waited seconds.
  // A HEAD too: it sends no body, but its ETag and length are the bytes', read as a GET reads them.
  const heavyGet = req.method === 'GET' || req.method === 'HEAD' ? HEAVY_DOWNLOAD_BYTES : null;
  const f = await permalinkTarget(ctx, req, res, (key) => rawMessageUrl(routeMessageId(res), key), true, heavyGet);
  if (!f) return;
  setCacheHeaders(req, res, { restricted: restrictedOf(f.lists), lastModified: changedAt(f.lists), keys: copyKeys(f.lists) });
  const heavy = heavyGet !== null && f.m.size >= heavyGet;
  if (heavy && !(await ctx.downloads.take(req, res))) return;
  // setHeader, not res.set: Express would add "charset=utf-8" to bytes that are not UTF-8.
  const raw = heavy ? await messageRaw(ctx.db.readPool, f.m.id) : f.m.raw;
  if (!raw) throw new NotFound('There is no archived message with this Message-ID.', 'no_such_message');
  res.setHeader('Content-Type', isUtf8(raw) ? 'text/plain; charset=utf-8' : 'text/plain');
  res.set('Content-Disposition', 'inline');
  // The stored digest (sql/0056); computed from the bytes while the conversion has not reached it.
  const sha256 = (await messageDigest(ctx.db.readPool, f.m.id)) ?? crypto.createHash('sha256').update(raw).digest();
  res.set('Repr-Digest', `sha-256=:${sha256.toString('base64')}:`);
  await sendBody(req, res, raw, heavy ? undefined : ctx.downloads);
}

export async function attachment(ctx: WebContext, req: Request, res: Response) {
  const f = await permalinkTarget(ctx, req, res, (key) => attachmentUrl(routeMessageId(res), String(req.params.n), req.params.name ? String(req.params.name) : null, key), false);
  if (!f) return;
  const n = Number(req.params.n);
  const parsed = await ctx.parsedMessages.content(ctx.db.readPool, f.m);
  const a = Number.isInteger(n) && n >= 1 ? parsed.attachments[n - 1] : undefined;
  if (!a) throw new NotFound('This message has no such attachment.', 'no_such_attachment');
  const served = attachmentHeaders(a.contentType, a.filename, `attachment-${n}`);
  setCacheHeaders(req, res, { restricted: restrictedOf(f.lists), lastModified: changedAt(f.lists), keys: copyKeys(f.lists) });
  res.set('Content-Type', served.contentType);
  res.set('Content-Disposition', served.disposition);
  res.set('Content-Security-Policy', "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'");
  await sendBody(req, res, a.content, ctx.downloads);
}

/**
 * Last-Modified of a message's own URLs: its arrival, or the latest hiding or showing again of it
 * in one of the lists it is read through, whichever is later (only ever moves forwards).
 */
function changedAt(lists: MessageCopy[]): Date {
  const times = lists.flatMap((l) => [l.received_at, l.visibility_changed_at]).filter((t): t is string => t !== null).map((t) => new Date(t).getTime());
  return new Date(Math.max(...times));
}
