/*
 * Conditional requests (RFC 9110 §13): whether the client already has the version about to be
 * sent. Pages (http.ts), downloads and the page cache all answer 304 through this one function.
 */
import type { Request, Response } from 'express';

/**
 * Whether the client already has this version, by the ETag and Last-Modified already set on the
 * response; if so, answers 304 and returns true.
 */
export function notModified(req: Request, res: Response): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  // A page whose form got a new CSRF token in this response (csrf.ts: the client sent no token
  // cookie, or its cookie had expired) is not the one the client holds, whatever the date says:
  // answered 304, the browser kept its old form with the old token beside the new cookie, and
  // every subscription from it failed the check (403), reload after reload.
  if (res.locals.csrfCookieSet === true) return false;
  const etag = res.get('ETag');
  const inm = req.get('if-none-match');
  let fresh: boolean;
  if (inm) {
    const strip = (t: string) => t.trim().replace(/^W\//, '');
    fresh = etag !== undefined && (inm.trim() === '*' || inm.split(',').some((t) => strip(t) === strip(etag)));
  } else {
    const ims = Date.parse(req.get('if-modified-since') ?? '');
    const lm = Date.parse(res.get('Last-Modified') ?? '');
    fresh = !Number.isNaN(ims) && !Number.isNaN(lm) && lm <= ims;
  }
  if (!fresh) return false;
  res.status(304);
  res.removeHeader('Content-Type');
  res.removeHeader('Content-Length');
  res.end();
  return true;
}
