/* Browsing pages: the lists (/), one list, one month of it (a thread's page: thread-page.ts). */

import type { Request, Response } from 'express';
import { adjacentMonths, archiveIndex, listMonths, monthThreads, recentThreads, type ThreadSummary } from '../../db/archive.ts';
import { membershipsOn } from '../../db/members.ts';
import type { MemberStatus } from '../../list-policies.ts';
import type { WebContext } from '../context.ts';
import { viewerOf } from '../viewer.ts';
import { readableList, readerOf } from './access.ts';
import { pageParam, pager, routeMonth, sendPage } from './http.ts';
import { listUrl, messageUrl, monthMboxUrl, monthUrl, threadUrl } from '../../mail/urls.ts';
import { participants, shownSubject } from './present.ts';
import { latestKey, listKey, monthKey, SITE_KEY, threadKey } from './cache-keys.ts';

const LISTS_PER_PAGE = 100;
const THREADS_PER_PAGE = 100;
/** Subscriptions that make the subscribe form pointless (an unsubscribed address may come back). */
const SUBSCRIBED = new Set<MemberStatus>(['active', 'disabled', 'pending']);

export async function indexPage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const page = pageParam(req);
  const { lists, total, siteChanged } = await archiveIndex(ctx.db.readPool, readerOf(viewer), LISTS_PER_PAGE, (page - 1) * LISTS_PER_PAGE);
  // What this reader sees of each list changes with its messages and its settings shown here;
  // the page as a whole when a public list goes, or its archive stops or starts being public.
  const latest = lists.reduce<Date | null>((acc, l) => (l.readable && l.last_modified && (!acc || l.last_modified > acc) ? l.last_modified : acc), siteChanged);
  // Lists this reader cannot read show only their names, the same for every anonymous reader.
  const restricted = lists.some((l) => l.readable && l.archive !== 'public');
  sendPage(ctx, req, res, 'archive/index.njk', {
    title: 'Lists',
    lists: lists.map((l) => ({ ...l, href: listUrl(l.key) })),
    pager: pager(req, page, total, LISTS_PER_PAGE),
  }, { restricted, lastModified: latest, keys: [SITE_KEY] });
}

function threadRows(threads: ThreadSummary[], obfuscate: boolean, key: string) {
  return threads.map((t) => ({
    ...t,
    href: threadUrl(key, t.thread_id),
    rootHref: messageUrl(t.root_message_id),
    subject: shownSubject(t.subject, obfuscate),
    replies: Math.max(0, t.thread_messages - 1),
    participants: participants(t.participants, obfuscate),
    more: Math.max(0, t.authors - (t.participants?.length ?? 0)),
  }));
}

export async function listPage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const db = ctx.db.readPool;
  const list = await readableList(db, viewer, String(req.params.list));
  const [months, recent, member] = await Promise.all([
    listMonths(db, list.id), recentThreads(db, list.id, 20),
    viewer ? membershipsOn(db, list.id, viewer.emails).then((rows) => rows[0] ?? null) : null,
  ]);
  const { key, last_modified: lastModified } = list;
  const base = listUrl(key);
  // The recent threads' keys too: a thread that merges with another (its first message came late,
  // perhaps to another list) changes this page without a message of this list arriving.
  const keys = [listKey(list.id), latestKey(list.id), ...recent.map((t) => threadKey(t.thread_id))];
  // No CSRF token for an anonymous reader: the page is the same for all of them,
  // and a shared cache keeps it; its form's post is taken when the browser says it comes from
  // this site's page, else answered with a form that has one (subscribe-form.ts). A logged-in reader's page has the session's token, as every such page.
  sendPage(ctx, req, res, 'archive/list.njk', {
    title: list.name,
    list,
    key,
    base,
    messages: months.reduce((n, m) => n + m.messages, 0),
    months: months.map((m) => ({ ...m, href: monthUrl(key, m.month), mbox: monthMboxUrl(key, m.month) })),
    recent: threadRows(recent, !viewer, key),
    // A member is not offered the subscribe form again, but where to manage the subscription.
    subscription: member && SUBSCRIBED.has(member.status) ? member.status : null,
  }, { restricted: list.archive !== 'public', lastModified, keys });
}

export async function monthPage(ctx: WebContext, req: Request, res: Response) {
  const range = routeMonth(res);
  const viewer = viewerOf(req);
  const db = ctx.db.readPool;
  const list = await readableList(db, viewer, String(req.params.list));
  const page = pageParam(req);
  const [month, around] = await Promise.all([
    monthThreads(db, list.id, range.start, range.end, THREADS_PER_PAGE, (page - 1) * THREADS_PER_PAGE),
    adjacentMonths(db, list.id, range.start, range.end),
  ]);
  const { key, last_modified: lastModified } = list;
  const base = listUrl(key);
  sendPage(ctx, req, res, 'archive/month.njk', {
    title: `${list.name}: ${range.month}`,
    list,
    base,
    month: range.month,
    mbox: monthMboxUrl(key, range.month),
    prev: around.prev ? monthUrl(key, around.prev) : null,
    next: around.next ? monthUrl(key, around.next) : null,
    prevMonth: around.prev,
    nextMonth: around.next,
    threads: threadRows(month.threads, !viewer, key),
    threadCount: month.total,
    messageCount: month.messages,
    pager: pager(req, page, month.total, THREADS_PER_PAGE),
  }, { restricted: list.archive !== 'public', lastModified, keys: [listKey(list.id), monthKey(list.id, range.month)] });
}
