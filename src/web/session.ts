import type { RequestHandler } from 'express';
import type { WebContext } from './app.ts';

/** Sets req.viewer from the session cookie. Accounts and sessions arrive with the web-panel issue. */
export function sessionMiddleware(_ctx: WebContext): RequestHandler {
  return (req, _res, next) => {
    req.viewer = null;
    next();
  };
}
