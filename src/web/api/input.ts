/*
 * Reading what an API client sent: the JSON body's fields, typed and bounded; the list a path
 * names; and pages of collections. Every problem is an InvalidInput (400) naming the field.
 */

import type { Request, Response } from 'express';
import { findList, type ListRow } from '../../db/lists.ts';
import { InvalidInput } from '../../errors.ts';
import type { WebContext } from '../context.ts';

export type Body = Record<string, unknown>;

/** The JSON body as an object ({} when there is none); an array or a scalar is refused. */
export function body(req: Request): Body {
  const b: unknown = req.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw new InvalidInput('The request body must be a JSON object.');
  return b as Body;
}

export function str(b: Body, name: string, opts: { required: true; max?: number }): string;
export function str(b: Body, name: string, opts?: { required?: false; max?: number }): string | undefined;
export function str(b: Body, name: string, opts: { required?: boolean; max?: number } = {}): string | undefined {
  const v = b[name];
  if (v === undefined || v === null) {
    if (opts.required) throw new InvalidInput(`"${name}" is required.`);
    return undefined;
  }
  if (typeof v !== 'string') throw new InvalidInput(`"${name}" must be a string.`);
  if (v.length > (opts.max ?? 10_000)) throw new InvalidInput(`"${name}" may have at most ${opts.max ?? 10_000} characters.`);
  return v;
}

export function choice<T extends string>(b: Body, name: string, allowed: readonly T[], fallback?: T): T {
  const v = fallback === undefined ? str(b, name, { required: true, max: 100 }) : (str(b, name, { max: 100 }) ?? fallback);
  if (!(allowed as readonly string[]).includes(v)) throw new InvalidInput(`"${name}" must be one of ${allowed.join(', ')} (got "${v}").`);
  return v as T;
}

/** The list named by :list (its address, or its local part when unique) for this request. */
export async function pathList(ctx: WebContext, req: Request): Promise<ListRow> {
  return findList(ctx.db.pool, String(req.params.list), { mailDomain: ctx.cfg.mailDomain });
}

// ---- pages of collections ----

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 500;

/** `?limit=` (1 to 500, default 100) and `?cursor=` (opaque: the key of the last item of the page before). */
export function pageParams(req: Request): { limit: number; cursor: string | null } {
  const q = req.query as Record<string, unknown>;
  let limit = DEFAULT_LIMIT;
  if (q.limit !== undefined) {
    limit = Number(q.limit);
    if (typeof q.limit !== 'string' || !/^\d{1,4}$/.test(q.limit) || limit < 1 || limit > MAX_LIMIT) throw new InvalidInput(`"limit" must be a whole number from 1 to ${MAX_LIMIT}.`);
  }
  let cursor: string | null = null;
  if (q.cursor !== undefined && q.cursor !== '') {
    try {
      if (typeof q.cursor !== 'string' || !/^[A-Za-z0-9_-]{1,2000}$/.test(q.cursor)) throw new Error('shape');
      const decoded: unknown = JSON.parse(Buffer.from(q.cursor, 'base64url').toString('utf8'));
      if (typeof decoded !== 'string') throw new Error('type');
      cursor = decoded;
    } catch {
      throw new InvalidInput('"cursor" is not one this API gave out: take it from the Link header of the page before.', 'invalid_cursor');
    }
  }
  return { limit, cursor };
}

/**
 * A page's cursor that is a row's id, in decimal as sendPage gave it out; null without a cursor.
 * Number() would also read "1e3", "-1", "0x10" and " ": those are refused.
 */
export function idCursor(page: { cursor: string | null }): number | null {
  if (page.cursor === null) return null;
  if (!/^\d{1,15}$/.test(page.cursor)) throw new InvalidInput('"cursor" is not one this API gave out.', 'invalid_cursor');
  return Number(page.cursor);
}

export function encodeCursor(key: string): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * Sends one page as the command line's --json would print it, an array. When there is more, the
 * next page is the same URL with its cursor, under PUBLIC_URL, in a Link header (RFC 8288): the body keeps the CLI's
 * shape, and a script that reads only the body still gets the first page in order.
 */
export function sendPage(req: Request, res: Response, items: unknown[], nextKey: string | null): void {
  if (nextKey !== null) {
    const url = new URL(req.originalUrl, 'http://x');
    url.searchParams.set('cursor', encodeCursor(nextKey));
    res.set('Link', `<${res.locals.publicUrl ?? ''}${url.pathname}${url.search}>; rel="next"`);
  }
  res.json(items);
}

/** One page of a small collection held in memory, in order of `key`. */
export function pageOf<T>(all: T[], key: (t: T) => string, page: { limit: number; cursor: string | null }): { rows: T[]; nextKey: string | null } {
  const sorted = [...all].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const after = page.cursor === null ? sorted : sorted.filter((t) => key(t) > page.cursor!);
  const rows = after.slice(0, page.limit);
  return { rows, nextKey: after.length > page.limit ? key(rows[rows.length - 1]) : null };
}
