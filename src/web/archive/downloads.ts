/*
 * Downloads: a month (/lists/LIST/YYYY-MM.mbox) or a thread (/lists/LIST/thread/ID.mbox) as
 * mboxrd, streamed page by page with validators computed first (so a 304 costs one small query),
 * each holding one of the download slots while it runs (download-slots.ts); and the
 * list's Atom feed (/lists/LIST/feed.atom).
 */

import crypto from 'node:crypto';
import type { Request, Response } from 'express';
import { exportMbox } from '../../core/archive-export.ts';
import { latestMessages } from '../../db/archive-messages.ts';
import { mboxVersion, type MboxScope } from '../../db/archive-mbox.ts';
import type { ReaderList } from '../../db/archive.ts';
import { NotFound } from '../../errors.ts';
import { log } from '../../log.ts';
import { atomFeed } from '../../mail/atom.ts';
import { obfuscateText } from '../../mail/obfuscate.ts';
import type { WebContext } from '../context.ts';
import { viewerOf } from '../viewer.ts';
import { readableList } from './access.ts';
import { notModified } from './conditional.ts';
import { routeMonth, sendBody, setCacheHeaders } from './http.ts';
import { absoluteUrl, feedUrl, listUrl, messageUrl } from '../../mail/urls.ts';
import { authorName, shownSubject } from './present.ts';
import { latestKey, listKey, monthKey, threadKey } from './cache-keys.ts';

const FEED_ENTRIES = 30;

async function sendMbox(ctx: WebContext, req: Request, res: Response, list: ReaderList, scope: MboxScope, filename: string, keys: string[]) {
  const version = await mboxVersion(ctx.db.readPool, scope);
  if (version.messages === 0) throw new NotFound('There are no messages to download here.', 'empty');
  res.set('ETag', `"mbox-${crypto.createHash('sha1').update(`${scope.listId}:${version.digest}`).digest('hex').slice(0, 24)}"`);
  setCacheHeaders(req, res, { restricted: list.archive !== 'public', lastModified: version.last_modified, keys });
  if (notModified(req, res)) return;
  res.set('Content-Type', 'application/mbox');
  res.set('Content-Disposition', `attachment; filename="${filename}"`);
  if (req.method === 'HEAD') return res.end();
  if (!(await ctx.downloads.take(req, res))) return;
  try {
    await exportMbox(ctx.db.readPool, scope, res);
    res.end();
  } catch (err) {
    // Headers are gone: all we can do is cut the download short, so the reader sees it failed.
    log.error({ err, list: list.address }, 'mbox download failed');
    res.destroy();
  }
}

export async function monthMbox(ctx: WebContext, req: Request, res: Response) {
  const range = routeMonth(res);
  const list = await readableList(ctx.db.readPool, viewerOf(req), String(req.params.list));
  await sendMbox(ctx, req, res, list, { listId: list.id, after: range.start, before: range.end }, `${list.local_part}-${range.month}.mbox`, [listKey(list.id), monthKey(list.id, range.month)]);
}

export async function threadMbox(ctx: WebContext, req: Request, res: Response) {
  const thread = String(req.params.thread);
  const list = await readableList(ctx.db.readPool, viewerOf(req), String(req.params.list));
  await sendMbox(ctx, req, res, list, { listId: list.id, threadId: Number(thread) }, `${list.local_part}-thread-${thread}.mbox`, [listKey(list.id), threadKey(Number(thread))]);
}

export async function feed(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const obfuscate = !viewer;
  const db = ctx.db.readPool;
  const list = await readableList(db, viewer, String(req.params.list));
  const latest = await latestMessages(db, list.id, FEED_ENTRIES);
  const base = absoluteUrl(ctx.cfg.publicUrl, listUrl(list.key));
  // The list's Last-Modified, not the newest entry's: hiding a message changes the feed too.
  const updated = list.last_modified ?? list.created_at;
  const xml = atomFeed({
    id: base,
    title: list.name,
    subtitle: list.description || list.address,
    selfUrl: absoluteUrl(ctx.cfg.publicUrl, feedUrl(list.key)),
    htmlUrl: base,
    updated,
    entries: latest.map((e) => ({
      id: absoluteUrl(ctx.cfg.publicUrl, messageUrl(e.message_id)),
      url: absoluteUrl(ctx.cfg.publicUrl, messageUrl(e.message_id)),
      title: shownSubject(e.subject, obfuscate),
      author: authorName(e.from_name, e.from_email, obfuscate),
      updated: e.date,
      summary: obfuscate ? obfuscateText(e.body) : e.body,
    })),
  });
  setCacheHeaders(req, res, { restricted: list.archive !== 'public', lastModified: updated, keys: [listKey(list.id), latestKey(list.id)] });
  res.type('application/atom+xml; charset=utf-8');
  sendBody(req, res, xml);
}
