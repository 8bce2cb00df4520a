/*
 * /search?q=&list=&from=&after=&before=&sort=: full-text search over the archives this reader may
 * read. The box takes operators too (from:, subject:, list:, before:, after:; search-operators.ts),
 * combined with the form's fields. A query that is a Message-ID goes straight to that message.
 */

import type { Request, Response } from 'express';
import { messageCopies } from '../../db/archive-messages.ts';
import { authorFragmentSearchable, hasSearchTerms, isAuthorAddress, searchMessages, type SearchResult, type SearchSort } from '../../db/search.ts';
import type { ReaderList } from '../../db/archive.ts';
import type { Queryable } from '../../db/pool.ts';
import { InvalidInput, NotFound } from '../../errors.ts';
import { normalizeMessageId } from '../../mail/message-id.ts';
import type { WebContext } from '../context.ts';
import { viewerOf, type Viewer } from '../viewer.ts';
import { readableList, readerOf } from './access.ts';
import { pageParam, pager, sendPage } from './http.ts';
import { SITE_KEY } from './cache-keys.ts';
import { listUrl, messageUrl } from '../../mail/urls.ts';
import { authorName, excerptHtml, shownSubject } from './present.ts';
import { MAX_OPERATORS, parseSearchQuery, startsWithOperator, type Operator } from './search-operators.ts';

const PER_PAGE = 20;
const CAP = 100;
/**
 * How deep a search's pages go (10,000 matches; page 500 costs 20 ms). Each page past the ranked
 * set has the database step over every match before it: pages 15,000 and 100,000 of a word in
 * 300,000 messages took 0.4 and 0.25 s (over a second at a million), and each page is another
 * URL, past the page cache. Older matches are reached by narrowing the search, by date above all.
 */
export const MAX_SEARCH_PAGE = 500;
const SORTS: readonly SearchSort[] = ['relevance', 'date'];
const EXAMPLE: Record<Operator, string> = {
  from: 'from:jane@example.org or from:"Jane Doe"', subject: 'subject:vacuum or subject:"two words"', list: 'list:dev',
  before: 'before:2024-01-31', after: 'after:2024-01-31',
};
const MESSAGE_ID = /^<?[^\s<>@]+@[^\s<>@]+>?$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

// NFC: a word typed with a combining accent ("cafe\u0301") is the word the archive holds ("café").
function text(v: unknown, max = 500): string {
  return typeof v === 'string' ? v.normalize('NFC').trim().slice(0, max) : '';
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
  const form = {
    q: text(req.query.q), list: text(req.query.list, 300), from: text(req.query.from, 300),
    after: text(req.query.after, 10), before: text(req.query.before, 10), sort: text(req.query.sort, 20),
  };
  const errors: string[] = [];

  // A bare Message-ID (with or without <>) opens the message; from:x@y is an operator.
  if (form.q && MESSAGE_ID.test(form.q) && (form.q.startsWith('<') || !startsWithOperator(form.q))) {
    const id = normalizeMessageId(form.q);
    const copies = id ? await messageCopies(db, id, readerOf(viewer)) : [];
    if (copies.some((c) => c.readable && c.hidden_at === null)) return res.redirect(302, messageUrl(id!));
  }

  const parsed = parseSearchQuery(form.q);
  const { ops } = parsed;
  if (Object.values(ops).reduce((n, v) => n + v.length, parsed.empty.length) > MAX_OPERATORS) {
    errors.push(`This search has too many operators: at most ${MAX_OPERATORS}.`);
  }
  for (const name of new Set(parsed.empty)) errors.push(`"${name}:" needs a value, like ${EXAMPLE[name]}.`);
  // Dates from the form and the box narrow together: the latest "after", the earliest "before".
  const afters = [day(form.after, 'after', errors), ...ops.after.map((v) => day(v, 'after:', errors))].filter((d) => d !== null);
  const befores = [day(form.before, 'before', errors), ...ops.before.map((v) => day(v, 'before:', errors))].filter((d) => d !== null);
  const after = afters.length ? new Date(Math.max(...afters.map((d) => d.getTime()))) : null;
  // "before" names the last day wanted: everything earlier than the next midnight.
  const before = befores.length ? new Date(Math.min(...befores.map((d) => d.getTime())) + 24 * 3600 * 1000) : null;
  if (form.sort && !SORTS.includes(form.sort as SearchSort)) errors.push('"sort" must be "relevance" or "date".');

  // Each list named (the form's, list: operators) narrows the readable lists.
  const lists: ReaderList[] = [];
  for (const ref of [form.list, ...ops.list].filter(Boolean)) {
    const l = await listFilter(db, viewer, ref, errors);
    if (l) lists.push(l);
  }
  // (Two different lists leave nothing: a message is found once, in either.)
  // (null: every list the reader may read, worked out in the search's own statement.)
  const listIds = lists.length === 0 ? null : lists.every((l) => l.id === lists[0].id) ? [lists[0].id] : [];
  const from = [form.from, ...ops.from].filter(Boolean);
  for (const f of from) {
    if (!isAuthorAddress(f) && !authorFragmentSearchable(f)) errors.push(`"${f}" is too short to look for among authors: give three letters of a name in a row, or a whole address.`);
  }
  // A subject: value of several words is a phrase, as Gmail takes it. One of only very common
  // words (subject:the) would match nothing and empty the whole search: it is said instead.
  const subject = ops.subject.map((v) => (/\s/.test(v) && !v.includes('"') ? `"${v}"` : v)).join(' ') || null;
  if (subject && errors.length === 0 && !(await hasSearchTerms(db, subject))) {
    errors.push(`There is nothing to search for in "subject:${ops.subject.join(' subject:')}": it has only very common words.`);
  }
  const sort: SearchSort = form.sort === 'date' || (form.sort !== 'relevance' && !parsed.words && !subject) ? 'date' : 'relevance';
  const page = pageParam(req);
  if (page > MAX_SEARCH_PAGE) {
    errors.push(`Search results go ${MAX_SEARCH_PAGE} pages deep. To see older matches, narrow the search: before:, after:, a list or an author.`);
  }
  let result: SearchResult | null = null;
  let noTerms = false;
  let noSuchMessageId = false;
  if ((form.q || form.from) && errors.length === 0) {
    result = await searchMessages(ctx.db, {
      q: parsed.words || null, subject, listIds, reader: readerOf(viewer), from, domainsHidden: !viewer, after, before, sort,
      limit: PER_PAGE, offset: (page - 1) * PER_PAGE, cap: CAP,
    });
    // Nothing found: say so plainly when the query had no searchable word at all (a Message-ID
    // has none: addresses are not indexed as words), without telling whether a hidden or
    // unreadable message has that Message-ID.
    if (result.hits.length === 0 && parsed.words && !(await hasSearchTerms(db, parsed.words))) {
      if (MESSAGE_ID.test(parsed.words)) noSuchMessageId = true;
      else noTerms = true;
      result = null;
    }
  }
  const obfuscate = !viewer;
  sendPage(ctx, req, res, 'archive/search.njk', {
    title: form.q ? `Search: ${form.q}` : 'Search',
    form,
    sort,
    errors,
    noTerms,
    noSuchMessageId,
    searched: result !== null,
    capped: result?.capped ?? false,
    byDate: result ? !result.ranked : false,
    olderMatches: result ? !result.ranked && sort === 'relevance' && Boolean(parsed.words || subject) : false,
    cap: CAP,
    count: result ? countText(result.total, result.exact, result.atLeast) : '',
    hits: (result?.hits ?? []).map((h) => ({
      href: messageUrl(h.message_id),
      subject: shownSubject(h.subject, obfuscate),
      author: authorName(h.from_name, h.from_email, obfuscate),
      date: h.date,
      excerpt: excerptHtml(h.excerpt, obfuscate),
      inAttachment: h.inAttachment,
      listKey: h.list_key,
      listHref: listUrl(h.list_key),
    })),
    pager: result && result.exact
      ? pager(req, page, Math.min(result.total, MAX_SEARCH_PAGE * PER_PAGE), PER_PAGE)
      : pager(req, page, null, PER_PAGE, (result?.more ?? false) && page < MAX_SEARCH_PAGE),
    deepest: page === MAX_SEARCH_PAGE && Boolean(result?.more),
  }, { restricted: lists.length ? lists.some((l) => l.archive !== 'public') : Boolean(viewer), keys: [SITE_KEY] }, errors.length > 0 ? 400 : 200);
}

/** 1234567 as "1,234,567" (toLocaleString and Intl cost a hundredth of a search each). */
function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+$)/g, ',');
}

/** "1 message found", "42 messages found", an estimate to two figures ("about 1,200 messages match"), or "more than 100 messages match". */
export function countText(total: number, exact: boolean, atLeast = false): string {
  if (exact) return `${thousands(total)} message${total === 1 ? '' : 's'} found`;
  if (atLeast) return `More than ${thousands(total - 1)} messages match`;
  const figure = 10 ** Math.max(0, Math.floor(Math.log10(total)) - 1);
  return `About ${thousands(Math.round(total / figure) * figure)} messages match`;
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
