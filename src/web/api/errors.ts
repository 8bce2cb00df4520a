/*
 * Every refusal of the REST API is JSON: `{error, detail}`, `error` a stable code for scripts and
 * `detail` a sentence for people, with the HTTP status that says what went wrong. The core's
 * errors carry both already (errors.ts); the body parser's, any other 4xx marked safe to show
 * (zlib's), PostgreSQL's input errors and the database's own faults (a 503, database-faults.ts) are
 * translated here; anything else is a 500 that is logged and says nothing of its cause.
 */

import type { NextFunction, Request, Response } from 'express';
import { AppError, isAppError } from '../../errors.ts';
import { log } from '../../log.ts';
import { RETRY_AFTER_SECONDS, unavailableDatabase } from '../database-faults.ts';
import { refusedByDatabase } from '../request-input.ts';

/** An HTTP refusal of the API itself (authentication, scope, rate limit, media type). */
export class ApiRefusal extends AppError {
  constructor(status: number, code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message, code, status, 550);
  }
}

export function sendError(res: Response, status: number, error: string, detail: string, headers: Record<string, string> = {}): void {
  res.status(status).set({ 'Cache-Control': 'no-store', ...headers }).json({ error, detail });
}

// The body parser's errors (express.json) by their `type`.
const BODY_ERRORS: Record<string, [number, string, string]> = {
  'entity.parse.failed': [400, 'invalid_json', 'The request body is not valid JSON.'],
  'entity.too.large': [413, 'too_large', 'The request body is larger than the API takes (1 MB).'],
  'encoding.unsupported': [415, 'unsupported_encoding', 'The request body\'s Content-Encoding is not supported: send it as gzip, deflate, br or uncompressed.'],
  'charset.unsupported': [415, 'unsupported_encoding', 'The request body\'s charset is not supported: send UTF-8.'],
};

/** An error from Node or a body parser (not ours) marked as the client's fault and safe to show. */
function clientError(err: unknown): err is { status: number } {
  const e = err as { status?: unknown; expose?: unknown } | null;
  return !isAppError(err) && typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true;
}

export function apiErrorHandler(err: unknown, req: Request, res: Response, _next: NextFunction): void {
  const body = BODY_ERRORS[(err as { type?: string })?.type ?? ''];
  if (body) return sendError(res, ...body);
  // Any other error that says it may be shown and is the client's (zlib's on a body that does not
  // decompress, a body cut short): its status, with our sentence rather than its terse message.
  if (clientError(err)) return sendError(res, err.status, 'bad_request', 'The request body could not be read: it was cut short, or does not decompress as its Content-Encoding says.');
  err = refusedByDatabase(req, err) ?? unavailableDatabase(req, err) ?? err;
  if (err instanceof ApiRefusal) return sendError(res, err.status, err.code, err.message, err.headers);
  if (isAppError(err)) {
    // 422 (a message the SMTP side could not take) and 503 keep their status; the rest are the usual four.
    return sendError(res, err.status, err.code, err.message, err.status === 503 ? { 'Retry-After': String(RETRY_AFTER_SECONDS) } : {});
  }
  log.error({ err, url: req.originalUrl, method: req.method }, 'api request failed');
  sendError(res, 500, 'internal_error', 'Something failed on the server; it is logged. Try again later.');
}
