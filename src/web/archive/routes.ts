/*
 * The readers' archive, whose URLs are stable (docs/urls.md): one route per URL shape (mail/urls.ts
 * builds the links), each with the query parameters its page reads.
 *
 *   /                                        indexPage    ?page
 *   /search                                  searchPage   ?q ?list ?from ?after ?before ?page
 *   /lists/LIST  (and /lists/LIST/)          listPage
 *   /lists/LIST/feed.atom                    feed
 *   /lists/LIST/members                      rosterPage (roster-page.ts)
 *   /lists/LIST/YYYY-MM.mbox                 monthMbox
 *   /lists/LIST/YYYY-MM                      monthPage    ?page
 *   /lists/LIST/thread/ID.mbox               threadMbox
 *   /lists/LIST/thread/ID                    threadPage   ?page
 *   /message-id/raw/MSGID                    rawMessage   ?list
 *   /message-id/attachment/MSGID/N[/NAME]    attachment   ?list
 *   /message-id/MSGID                        messagePage  ?list ?view ?images
 *   POST /message-id/reply/MSGID             postReply (reply.ts): a member's reply from the web
 *
 * LIST is a list's local part when unique, else its address; MSGID a Message-ID without
 * brackets, percent-encoded where needed (with brackets works too); YYYY-MM a month (months.ts);
 * ID a thread number. :month and :thread are checked before any handler runs: a path whose part
 * is not one is not this route, and ends as 404 unless a later one takes it (/lists/LIST/subscribe);
 * a :msgid that is no Message-ID is 404 at once. Handlers read them with routeMonth, routeMessageId.
 */

import { Router, type NextFunction, type Request, type Response } from 'express';
import { NotFound } from '../../errors.ts';
import { normalizeMessageId } from '../../mail/message-id.ts';
import { monthRange } from '../../mail/months.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { feed, monthMbox, threadMbox } from './downloads.ts';
import { declareQuery } from './http.ts';
import { indexPage, listPage, monthPage } from './list-pages.ts';
import { attachment, messagePage, rawMessage } from './message-pages.ts';
import { rawAccess } from './raw-access.ts';
import { postReply } from './reply.ts';
import { rosterPage } from './roster-page.ts';
import { searchPage } from './search-page.ts';
import { threadPage } from './thread-page.ts';

export function archiveRouter(ctx: WebContext): Router {
  const r = Router();
  type Handler = (ctx: WebContext, req: Request, res: Response) => Promise<unknown>;
  const h = (fn: Handler) => (req: Request, res: Response) => fn(ctx, req, res);
  // Each route names the query parameters its pages read (the page cache's key, the pager's links);
  // after the session middleware, so that only anonymous readers are served from the cache.
  const reads = (...params: string[]) => [declareQuery(params), ...(ctx.pageCache ? [ctx.pageCache.middleware(params)] : [])];

  r.param('month', (_req: Request, res: Response, next: NextFunction, value: string) => {
    const range = monthRange(value);
    if (!range) return next('route');
    res.locals.month = range;
    next();
  });
  r.param('msgid', (_req: Request, res: Response, next: NextFunction, value: string) => {
    const id = normalizeMessageId(value);
    if (!id) return next(new NotFound('There is no archived message with this Message-ID.', 'no_such_message'));
    res.locals.messageId = id;
    next();
  });
  r.param('thread', (_req: Request, _res: Response, next: NextFunction, value: string) => next(/^\d{1,15}$/.test(value) ? undefined : 'route'));

  r.use(unreservedInLastPart);
  r.get('/', reads('page'), h(indexPage));
  r.get('/search', reads('q', 'list', 'from', 'after', 'before', 'sort', 'page'), h(searchPage));
  r.get('/lists/:list', reads(), h(listPage));
  r.get('/lists/:list/feed.atom', reads(), h(feed));
  // Never from the page cache: who sees it depends on who asks.
  r.get('/lists/:list/members', declareQuery([]), h(rosterPage));
  const raw = rawAccess(ctx.cfg.web.rawAccess);
  r.get('/lists/:list/:month.mbox', raw, reads(), h(monthMbox));
  r.get('/lists/:list/:month', reads('page'), h(monthPage));
  r.get('/lists/:list/thread/:thread.mbox', raw, reads(), h(threadMbox));
  r.get('/lists/:list/thread/:thread', reads('page'), h(threadPage));
  // ?list= picks one of several messages that share a Message-ID: part of what the page is.
  r.get('/message-id/raw/:msgid', raw, reads('list'), h(rawMessage));
  r.get('/message-id/attachment/:msgid/:n{/:name}', reads('list'), h(attachment));
  r.get('/message-id/:msgid', reads('list', 'view', 'images'), h(messagePage));
  r.post('/message-id/reply/:msgid', requireCsrf, h(postReply));
  return r;
}

// The last part of /lists/LIST/PART and /lists/LIST/thread/PART, where percent-escapes of
// unreserved characters are decoded before routing. RFC 3986 §6.2.2.2 makes `feed%2Eatom` the
// same URL as `feed.atom`, and before these shapes were routes of their own it was served so
// (the part was a parameter, decoded before it was compared): literal text in a route is not.
const LAST_PART = /^(\/lists\/[^/?]+\/(?:thread\/)?)([^/?]*%[^/?]*)(.*)$/s;
const UNRESERVED_ESCAPE = /%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aA]|5[fF]|6[1-9a-fA-F]|7[0-9aA]|7[eE])/g;

function unreservedInLastPart(req: Request, _res: Response, next: NextFunction) {
  const m = LAST_PART.exec(req.url);
  if (m) req.url = `${m[1]}${m[2].replace(UNRESERVED_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))}${m[3]}`;
  next();
}
