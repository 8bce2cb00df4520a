import { Router, type NextFunction, type Request, type Response } from 'express';
import type { WebContext } from '../context.ts';
import { feed, monthMbox, threadMbox } from './downloads.ts';
import { declareQuery } from './http.ts';
import { indexPage, listPage, monthPage, threadPage } from './list-pages.ts';
import { attachment, messagePage, rawMessage } from './message-pages.ts';
import { searchPage } from './search-page.ts';

/**
 * The readers' archive, whose URLs are stable (docs/urls.md). LIST is a list's local part when unique, else its address;
 * MSGID a Message-ID without brackets, percent-encoded where needed (with brackets works too).
 */
export function archiveRouter(ctx: WebContext): Router {
  const r = Router();
  type Handler = (ctx: WebContext, req: Request, res: Response, next: NextFunction) => Promise<unknown>;
  const h = (fn: Handler) => (req: Request, res: Response, next: NextFunction) => fn(ctx, req, res, next);
  // Each route names the query parameters its pages read (the page cache's key, the pager's links);
  // after the session middleware, so that only anonymous readers are served from the cache.
  const reads = (...params: string[]) => [declareQuery(params), ...(ctx.pageCache ? [ctx.pageCache.middleware(params)] : [])];

  r.get('/', reads('page'), h(indexPage));
  r.get('/search', reads('q', 'list', 'from', 'after', 'before', 'page'), h(searchPage));
  r.get('/lists/:list', reads(), h(listPage));
  r.get('/lists/:list/thread/:id', reads('page'), h(threadMbox), h(threadPage));
  r.get('/lists/:list/:part', reads('page'), h(monthMbox), h(feed), h(monthPage));
  r.get('/message-id/raw/:id', reads(), h(rawMessage));
  r.get('/message-id/attachment/:id/:n{/:name}', reads(), h(attachment));
  r.get('/message-id/:id', reads('list', 'view', 'images'), h(messagePage));
  return r;
}
