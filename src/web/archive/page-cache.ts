import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { Listener } from '../../db/listener.ts';
import { pageCacheRequests } from '../../metrics.ts';
import { viewerOf } from '../viewer.ts';
import { notModified } from './http.ts';

/**
 * Rendered archive pages for anonymous readers of public lists, kept in memory and served again
 * without a query: the pages that a cache in front (Varnish at postgresql.org) would share
 * anyway, since they go out as `Cache-Control: public`. Unlike such a cache this one is emptied at
 * once when the archive changes: triggers NOTIFY on every change to list_messages, messages
 * (hidden, re-threaded) and lists (sql/0006, sql/0009), from any process. While the LISTEN
 * connection is down nothing is served from it or stored in it.
 *
 * Entries also expire after MAX_AGE_MS: with a read replica (DATABASE_READ_URL) the notification
 * comes from the primary and may beat the replica's replay, so a page rendered in between would
 * otherwise stay stale until the next change.
 */
const MAX_AGE_MS = 10_000;
/** Bigger bodies (an mbox download, a large raw message) are not worth the memory. */
const MAX_ENTRY_BYTES = 512 * 1024;
/** Response headers that are the same for everyone who gets this page. */
const KEPT_HEADERS = ['content-type', 'cache-control', 'vary', 'last-modified', 'etag', 'content-security-policy', 'content-disposition'];

interface Entry {
  body: Buffer;
  headers: [string, string][];
  at: number;
}

export class PageCache {
  // Map order is insertion order: the first key is the least recently used.
  private entries = new Map<string, Entry>();
  private bytes = 0;
  /** bumped by every invalidation; a page rendered across one is not stored */
  private generation = 0;
  private listener: Listener;

  constructor(url: string, private maxBytes: number) {
    this.listener = new Listener(url, ['listkeeper_archive', 'listkeeper_lists'], () => this.clear(), () => this.clear());
  }

  start(): Promise<void> {
    return this.listener.start();
  }

  stop(): Promise<void> {
    this.clear();
    return this.listener.stop();
  }

  clear() {
    this.generation++;
    this.entries.clear();
    this.bytes = 0;
  }

  /** Serves a kept page, or marks the request so that sendBody() offers its page back. */
  middleware(): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      if ((req.method !== 'GET' && req.method !== 'HEAD') || viewerOf(req) || !this.listener.connected) return next();
      const key = req.originalUrl;
      const hit = this.entries.get(key);
      if (hit && Date.now() - hit.at < MAX_AGE_MS) {
        pageCacheRequests.inc({ result: 'hit' });
        this.entries.delete(key);
        this.entries.set(key, hit);
        for (const [name, value] of hit.headers) res.setHeader(name, value);
        if (notModified(req, res)) return;
        res.status(200).end(req.method === 'HEAD' ? undefined : hit.body);
        return;
      }
      pageCacheRequests.inc({ result: 'miss' });
      res.locals.pageCache = { cache: this, key, generation: this.generation };
      next();
    };
  }

  /** Keeps a page that anyone could be given: 200, public, no cookie set, not too big. */
  offer(res: Response, body: Buffer) {
    const mark = res.locals.pageCache as { key: string; generation: number } | undefined;
    if (!mark || mark.generation !== this.generation || !this.listener.connected) return;
    if (res.statusCode !== 200 || body.length > MAX_ENTRY_BYTES || res.getHeader('set-cookie')) return;
    if (!String(res.getHeader('cache-control') ?? '').startsWith('public')) return;
    const headers = KEPT_HEADERS.flatMap((name): [string, string][] => {
      const v = res.getHeader(name);
      return v === undefined ? [] : [[name, String(v)]];
    });
    const old = this.entries.get(mark.key);
    if (old) this.bytes -= old.body.length;
    this.entries.delete(mark.key);
    this.entries.set(mark.key, { body, headers, at: Date.now() });
    this.bytes += body.length;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.body.length;
    }
  }
}

/** Offers a sent page to the cache that marked the request, if any (see sendBody). */
export function offerToPageCache(res: Response, body: Buffer) {
  (res.locals.pageCache as { cache: PageCache } | undefined)?.cache.offer(res, body);
}
