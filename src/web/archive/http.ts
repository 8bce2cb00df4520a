/*
 * HTTP for archive pages: cache headers suited to a cache in front (as pgarchives behind Varnish)
 * and validators. Public archives seen by anonymous readers are `public, max-age=60`; anything
 * seen by a logged-in reader is `private, no-cache` (it may show addresses in full); restricted
 * archives are `private, no-store`. Every page carries Last-Modified and an ETag (a hash of the
 * body, or of the data for downloads), and a conditional request that still matches gets 304.
 * Conditionals are evaluated as RFC 9110 §13 says, whatever Cache-Control the request carries:
 * `no-cache` tells caches to revalidate, which is exactly what a conditional request does.
 */

import crypto from 'node:crypto';
import type { Request, Response } from 'express';
import type { MonthRange } from '../../mail/months.ts';
import type { WebContext } from '../context.ts';
import { csrfToken } from '../csrf.ts';
import { viewerOf } from '../viewer.ts';
import { notModified } from './conditional.ts';
import { HEAVY_DOWNLOAD_BYTES, type DownloadSlots } from './download-slots.ts';
import { offerToPageCache } from './page-cache.ts';

export const PUBLIC_MAX_AGE = 60;

export interface CachePolicy {
  /** the list's archive is not public */
  restricted: boolean;
  lastModified?: Date | null;
  /** the page holds a per-visitor token (a form): never shared */
  personal?: boolean;
  /** what the page shows, for a cache in front to purge it by (cache-keys.ts) */
  keys?: string[];
}

// The headers of every archive page are set through Node's setHeader(): Express's res.set(),
// res.vary() and res.type() convert, parse and look up values that are fixed here, and cost
// 25 µs a search page between them.
const PUBLIC_CACHE_CONTROL = `public, max-age=${PUBLIC_MAX_AGE}`;

export function setCacheHeaders(req: Request, res: Response, p: CachePolicy) {
  const viewer = viewerOf(req);
  // privateDownload: raw mail given without a login under ARCHIVE_RAW_ACCESS (raw-access.ts).
  res.setHeader('Cache-Control', p.restricted ? 'private, no-store' : viewer || p.personal || res.locals.privateDownload === true ? 'private, no-cache' : PUBLIC_CACHE_CONTROL);
  if (res.hasHeader('Vary')) res.vary('Cookie');
  else res.setHeader('Vary', 'Cookie');
  if (p.lastModified) res.setHeader('Last-Modified', p.lastModified.toUTCString());
  // Both names: Fastly and others read Surrogate-Key, Varnish's vmod-xkey reads xkey.
  if (p.keys?.length) {
    const keys = p.keys.join(' ');
    res.setHeader('Surrogate-Key', keys);
    res.setHeader('xkey', keys);
  }
}

/**
 * Renders a view without touching cookies unless the page needs them: an anonymous page without
 * a form sets no cookie, so a cache in front can keep it. Logged-in pages get the CSRF token for
 * the layout's logout form. An anonymous page has none: the list page's subscribe form goes
 * without, and its post is checked otherwise (subscribe-form.ts).
 */
export function sendPage(ctx: WebContext, req: Request, res: Response, template: string, vars: Record<string, unknown>, cache: CachePolicy, status = 200) {
  const viewer = viewerOf(req);
  const csrf = viewer ? csrfToken(req, res) : '';
  setCacheHeaders(req, res, cache);
  const html = ctx.views.render(template, Object.assign({}, res.locals, { viewer, csrf }, vars));
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  sendBody(req, res, html);
}

/**
 * Sends a body with a strong ETag of its bytes, or 304 when the client has it already. The
 * one-shot crypto.hash(): createHash() looks the digest up in OpenSSL 3 on every call, and took
 * 20 µs a search page in a running server against 6.5. The caller has set the Content-Type; the
 * conditionals are answered here, so Express's res.send() would only check them again (Node
 * sends no body to a HEAD request). With `downloads` (a raw message, an attachment), a body of
 * HEAVY_DOWNLOAD_BYTES or more is sent only in a free download slot: the response holds all of it
 * until the reader has taken it.
 */
export function sendBody(req: Request, res: Response, body: string | Buffer, downloads?: DownloadSlots): void | Promise<void> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  res.setHeader('ETag', `"${crypto.hash('sha1', bytes, 'base64url')}"`);
  offerToPageCache(res, bytes);
  if (res.statusCode === 200 && notModified(req, res)) return;
  const send = () => {
    res.setHeader('Content-Length', bytes.length);
    res.end(bytes);
  };
  // A heavy body waits for its slot (a lease of the site's: download-slots.ts); a page is sent at once.
  if (downloads && req.method === 'GET' && bytes.length >= HEAVY_DOWNLOAD_BYTES) {
    return downloads.take(req, res).then((ok) => {
      if (ok) send();
    });
  }
  send();
}

/** Page number from ?page=, 1 and up. */
export function pageParam(req: Request): number {
  const n = Number(req.query.page ?? 1);
  return Number.isInteger(n) && n >= 1 && n <= 100000 ? n : 1;
}

export interface Pager {
  page: number;
  /** null when the number of pages is not known (there is a next one) */
  pages: number | null;
  prev: string | null;
  next: string | null;
}

/**
 * The query parameters an archive page reads, declared by its route (routes.ts): the page cache
 * keys pages by these alone, and links to other pages of it carry these alone.
 */
/** The month of a route's :month, checked and read by its param handler (routes.ts). */
export function routeMonth(res: Response): MonthRange {
  return res.locals.month as MonthRange;
}

/** The Message-ID of a route's :msgid, without brackets, checked and read by its param handler (routes.ts). */
export function routeMessageId(res: Response): string {
  return res.locals.messageId as string;
}

export function declareQuery(params: readonly string[]) {
  return (_req: Request, res: Response, next: () => void) => {
    res.locals.queryParams = params;
    next();
  };
}

/**
 * Links to the neighbouring pages, keeping the page's other declared query parameters (never
 * one a visitor added: a kept page is shown to everyone). `total` null means unknown: `more`
 * then says whether a next page exists.
 */
export function pager(req: Request, page: number, total: number | null, perPage: number, more = false): Pager {
  const pages = total === null ? null : Math.max(1, Math.ceil(total / perPage));
  const hasNext = pages === null ? more : page < pages;
  return { page, pages, prev: page > 1 ? pageLink(req, page - 1) : null, next: hasNext ? pageLink(req, page + 1) : null };
}

/** The link to page `p` of this page, with its other declared query parameters. */
export function pageLink(req: Request, p: number): string {
  const declared = (req.res?.locals.queryParams ?? []) as readonly string[];
  const q = new URLSearchParams();
  for (const k of declared) {
    const v = req.query[k];
    if (k !== 'page' && typeof v === 'string') q.set(k, v);
  }
  if (p > 1) q.set('page', String(p));
  const s = q.toString();
  return `${req.path}${s ? `?${s}` : ''}`;
}
