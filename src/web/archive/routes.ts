import { Router, type NextFunction, type Request, type Response } from 'express';
import type { WebContext } from '../app.ts';
import { feed, monthMbox, threadMbox } from './downloads.ts';
import { indexPage, listPage, monthPage, threadPage } from './list-pages.ts';
import { attachment, messagePage, rawMessage } from './message-pages.ts';
import { searchPage } from './search-page.ts';

/**
 * The readers' archive (DESIGN §7). LIST is a list's local part when unique, else its address;
 * MSGID a Message-ID without brackets, percent-encoded where needed (with brackets works too).
 */
export function archiveRouter(ctx: WebContext): Router {
  const r = Router();
  type Handler = (ctx: WebContext, req: Request, res: Response, next: NextFunction) => Promise<unknown>;
  const h = (fn: Handler) => (req: Request, res: Response, next: NextFunction) => fn(ctx, req, res, next);

  r.get('/', h(indexPage));
  r.get('/search', h(searchPage));
  r.get('/lists/:list', h(listPage));
  r.get('/lists/:list/thread/:id', h(threadMbox), h(threadPage));
  r.get('/lists/:list/:part', h(monthMbox), h(feed), h(monthPage));
  r.get('/message-id/raw/:id', h(rawMessage));
  r.get('/message-id/attachment/:id/:n{/:name}', h(attachment));
  r.get('/message-id/:id', h(messagePage));
  return r;
}
