/*
 * /search?q=&list=&from=&after=&before=: full-text search over the archives this reader may
 * read. A query that is a Message-ID goes straight to that message.
 */

import type { Request, Response } from 'express';
import { messageCopies } from '../../db/archive-messages.ts';
import { hasSearchTerms, searchMessages, type SearchResult } from '../../db/search.ts';
import type { ReaderList } from '../../db/archive.ts';
import type { Queryable } from '../../db/pool.ts';
import { InvalidInput, NotFound } from '../../errors.ts';
import { normalizeMessageId } from '../../mail/message-id.ts';
import type { WebContext } from '../context.ts';
import { viewerOf, type Viewer } from '../viewer.ts';
import { readableList, readableLists, readerOf } from './access.ts';
import { pageParam, pager, sendPage } from './http.ts';
import { listUrl, messageUrl } from '../../mail/urls.ts';
import { authorName, excerptHtml, shownSubject } from './present.ts';

const PER_PAGE = 20;
const CAP = 300;
const MESSAGE_ID = /^<?[^\s<>@]+@[^\s<>@]+>?$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

function text(v: unknown, max = 500): string {
  return typeof v === 'string' ? v.trim().slice(0, max) : '';
}

function day(v: string, name: string, errors: string[]): Date | null {
  if (!v) return null;
  const d = new Date(`${v}T00:00:00Z`);
  // A day that exists (not 2024-02-30), in years PostgreSQL and the day after it can hold.
  if (!DAY.test(v) || Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== v || d.getUTCFullYear() < 1000 || d.getUTCFullYear() > 9998) {
    errors.push(`"${name}" must be a date like 2024-01-31.`);
    return null;
  }
  return d;
}

export async function searchPage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const db = ctx.db.readPool;
  const form = { q: text(req.query.q), list: text(req.query.list, 300), from: text(req.query.from, 300), after: text(req.query.after, 10), before: text(req.query.before, 10) };
  const errors: string[] = [];
  const after = day(form.after, 'after', errors);
  const beforeDay = day(form.before, 'before', errors);
  // "before" names the last day wanted: everything earlier than the next midnight.
  const before = beforeDay ? new Date(beforeDay.getTime() + 24 * 3600 * 1000) : null;

  if (form.q && MESSAGE_ID.test(form.q)) {
    const id = normalizeMessageId(form.q);
    const copies = id ? await messageCopies(db, id, readerOf(viewer)) : [];
    if (copies.some((c) => c.readable && c.hidden_at === null)) return res.redirect(302, messageUrl(id!));
  }

  const list = form.list ? await listFilter(db, viewer, form.list, errors) : null;
  const listIds = list ? [list.id] : await readableLists(db, viewer);
  const page = pageParam(req);
  let result: SearchResult | null = null;
  let noTerms = false;
  let noSuchMessageId = false;
  if ((form.q || form.from) && errors.length === 0) {
    result = await searchMessages(db, {
      q: form.q || null, listIds, from: form.from || null, after, before,
      limit: PER_PAGE, offset: (page - 1) * PER_PAGE, cap: CAP,
    });
    // Nothing found: say so plainly when the query had no searchable word at all (a Message-ID
    // has none: addresses are not indexed as words), without telling whether a hidden or
    // unreadable message has that Message-ID.
    if (result.hits.length === 0 && form.q && !(await hasSearchTerms(db, form.q))) {
      if (MESSAGE_ID.test(form.q)) noSuchMessageId = true;
      else noTerms = true;
      result = null;
    }
  }
  const obfuscate = !viewer;
  const total = result ? Math.min(result.candidates, CAP) : 0;
  const more = (result?.hits.length ?? 0) === PER_PAGE && (result?.capped || !result?.ranked);
  sendPage(ctx, req, res, 'archive/search.njk', {
    title: form.q ? `Search: ${form.q}` : 'Search',
    form,
    errors,
    noTerms,
    noSuchMessageId,
    searched: result !== null,
    list,
    capped: result?.capped ?? false,
    byDate: result ? !result.ranked : false,
    cap: CAP,
    total,
    hits: (result?.hits ?? []).map((h) => ({
      href: messageUrl(h.message_id),
      subject: shownSubject(h.subject, obfuscate),
      author: authorName(h.from_name, h.from_email, obfuscate),
      date: h.date,
      excerpt: excerptHtml(h.excerpt, obfuscate),
      listKey: h.list_key,
      listHref: listUrl(h.list_key),
    })),
    pager: result && (result.capped || !result.ranked) ? pager(req, page, null, PER_PAGE, more) : pager(req, page, total, PER_PAGE),
  }, { restricted: list ? list.archive !== 'public' : Boolean(viewer) }, errors.length > 0 ? 400 : 200);
}

/**
 * The list filter: a list this reader may read. One that does not exist (or is private to this
 * reader, which must look the same) is a mistake in the form; a members-only archive still
 * answers 403, as its own pages do.
 */
async function listFilter(db: Queryable, viewer: Viewer | null, ref: string, errors: string[]): Promise<ReaderList | null> {
  try {
    return await readableList(db, viewer, ref);
  } catch (err) {
    if (!(err instanceof NotFound) && !(err instanceof InvalidInput)) throw err;
    errors.push(err instanceof NotFound ? `There is no list "${ref}" to search.` : err.message);
    return null;
  }
}
