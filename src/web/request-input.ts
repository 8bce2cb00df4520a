/*
 * Where the web checks what a visitor typed, before any route sees it: a request whose path or
 * query string is not well-formed percent-encoded UTF-8, or carries a NUL (which PostgreSQL text
 * cannot hold), is refused with 400; so is a body field with a NUL, or a body nested deeper than
 * any of ours. Handlers can then pass strings to queries, and walk bodies, without checking again.
 *
 * Behind it, refusedByDatabase() is the net for what gets through anyway: PostgreSQL's data
 * exceptions (SQLSTATE class 22: a value out of range, a bad date) and program limits (class 54:
 * a word too long for a tsquery) are caused by the value a visitor sent, so they are a 400 with
 * a plain message, never a 500. Every refusal is logged and counted.
 */

import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { InvalidInput, isAppError, TooLarge } from '../errors.ts';
import { log } from '../log.ts';
import { webRefusals } from './web-metrics.ts';

const NUL = '\u0000';

/** Whether a piece of a URL decodes to UTF-8 without NUL ('+' is a space in query strings). */
function cleanComponent(part: string): boolean {
  if (!part.includes('%')) return true;
  if (/%00/.test(part)) return false;
  try {
    decodeURIComponent(part);
    return true;
  } catch {
    return false;
  }
}

/** The path and each query name and value, split as Express splits them. */
function urlProblem(url: string): string | null {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (!cleanComponent(path)) return 'path';
  if (q < 0) return null;
  for (const pair of url.slice(q + 1).split('&')) {
    for (const piece of pair.split('=')) if (!cleanComponent(piece.replace(/\+/g, ' '))) return 'query';
  }
  return null;
}

/** How deep a body may nest: ours nest two or three levels; deeper is only ever an attack. */
export const BODY_MAX_DEPTH = 32;

/**
 * What is wrong with a parsed body, walked whole: a string or name holding a NUL, or nesting
 * deeper than BODY_MAX_DEPTH (code that walks a value, JSON.stringify among it, would overflow
 * the stack on 5,000 levels). Stopping at the limit keeps this walk itself shallow.
 */
export function bodyProblem(body: unknown, depth = 0): 'nul' | 'deep' | null {
  if (typeof body === 'string') return body.includes(NUL) ? 'nul' : null;
  if (body === null || typeof body !== 'object' || Buffer.isBuffer(body)) return null;
  if (depth >= BODY_MAX_DEPTH) return 'deep';
  // By index and for…in, not Object.entries: a pair and a string key for every element of a
  // 1 MB array took 0.3–0.9 s of the web process, ten times JSON.parse of the same body.
  if (Array.isArray(body)) {
    for (let i = 0; i < body.length; i++) {
      const problem = bodyProblem(body[i], depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  const o = body as Record<string, unknown>;
  for (const k in o) {
    if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
    const problem = k.includes(NUL) ? 'nul' : bodyProblem(o[k], depth + 1);
    if (problem) return problem;
  }
  return null;
}

function refuse(req: Request, reason: string, detail: string, code = 'bad_request'): InvalidInput {
  webRefusals.inc({ reason });
  log.warn({ url: req.originalUrl.slice(0, 300), method: req.method, ip: req.ip, reason }, 'web request refused');
  return new InvalidInput(detail, code);
}

/** Refuses a path or query string that is not clean UTF-8, or that carries a NUL. */
export function checkUrl(req: Request, _res: Response, next: NextFunction) {
  const problem = urlProblem(req.originalUrl);
  if (!problem) return next();
  next(refuse(req, `bad_${problem}`, `This address is not valid: its ${problem === 'path' ? 'path' : 'query string'} must be UTF-8 without NUL characters (%00).`));
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body parsers' `verify`: a form or JSON body whose bytes, or whose form fields' %-escapes,
 * are not UTF-8 is refused with 400. The parsers would otherwise make each bad byte a U+FFFD and
 * hand on a value the visitor never typed (an address "��@example.org" was stored).
 */
export function verifyUtf8Body(req: Request, _res: Response, buf: Buffer) {
  let text: string;
  try {
    text = UTF8.decode(buf);
  } catch {
    throw refuse(req, 'bad_form', 'This form is not UTF-8 text.');
  }
  if (req.is('application/x-www-form-urlencoded') && text.includes('%')) {
    for (const pair of text.split('&')) {
      for (const piece of pair.split('=')) {
        if (!cleanComponent(piece.replace(/\+/g, ' '))) throw refuse(req, 'bad_form', 'This form holds a %-escape that is not UTF-8, or a NUL (%00).');
      }
    }
  }
}

/** What a visitor who is not logged in sends in a form (logging in, subscribing, confirming, a one-click unsubscribe): a few hundred bytes. */
export const ANONYMOUS_FORM_BYTES = 64 * 1024;
/** What a logged-in form may hold: a settings page with its footers and DKIM key, a pasted roster. */
export const FORM_BYTES = 5 * 1024 * 1024;

/**
 * The parser of form bodies (application/x-www-form-urlencoded), after the session: the body is
 * read into memory whole, so a stranger's is held to ANONYMOUS_FORM_BYTES; at 5 MB each, a few
 * hundred requests from anyone would have taken gigabytes. Over the limit: 413, nothing read on.
 */
export function formBody(): RequestHandler {
  const small = express.urlencoded({ extended: false, limit: ANONYMOUS_FORM_BYTES, verify: verifyUtf8Body });
  const large = express.urlencoded({ extended: false, limit: FORM_BYTES, verify: verifyUtf8Body });
  return (req, res, next) => {
    const limit = req.viewer ? FORM_BYTES : ANONYMOUS_FORM_BYTES;
    (req.viewer ? large : small)(req, res, (err?: unknown) => {
      if ((err as { type?: unknown } | undefined)?.type !== 'entity.too.large') return next(err);
      webRefusals.inc({ reason: 'too_large' });
      log.warn({ url: req.originalUrl.slice(0, 300), method: req.method, ip: req.ip, reason: 'too_large' }, 'web request refused');
      const who = req.viewer ? '' : ' from a visitor who is not logged in';
      next(new TooLarge(`This form is larger than the ${limit / 1024 >= 1024 ? `${limit / 1024 / 1024} MB` : `${limit / 1024} KB`} this site takes${who}.`));
    });
  };
}

/** Refuses a form or JSON body with a NUL in a field, or nested too deep; runs after the body parsers. */
export function checkBody(req: Request, _res: Response, next: NextFunction) {
  const problem = bodyProblem(req.body);
  if (!problem) return next();
  if (problem === 'deep') return next(refuse(req, 'too_deep', `This request body nests more than ${BODY_MAX_DEPTH} levels deep.`, 'too_deep'));
  next(refuse(req, 'bad_form', 'This form holds a NUL character (%00), which no field may contain.'));
}

// SQLSTATE classes that come from the value of an input: data exception, program limit exceeded.
const INPUT_CLASSES = new Set(['22', '54']);

/**
 * An error from PostgreSQL that the request's own input caused, as a 400 to send instead of a
 * 500; null for anything else (those stay 500s: they are ours to fix).
 */
export function refusedByDatabase(req: Request, err: unknown): InvalidInput | null {
  if (isAppError(err) || !(err instanceof Error)) return null;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || code.length !== 5 || !INPUT_CLASSES.has(code.slice(0, 2))) return null;
  webRefusals.inc({ reason: `sqlstate_${code}` });
  log.warn({ url: req.originalUrl.slice(0, 300), method: req.method, code, message: err.message }, 'web request refused by the database');
  return new InvalidInput('A value in this request is out of the range this site can take (a number too large, a date out of range, or a word too long).', 'bad_request');
}
