/*
 * Rendered archive pages for anonymous readers of public lists, kept in memory and served again
 * without rendering: the pages that a cache in front (Varnish at postgresql.org) would share
 * anyway, since they go out as `Cache-Control: public`. Unlike such a cache this one never serves
 * a page older than the archive: every entry is tagged with the archive's change counter
 * (sql/0011, bumped by triggers on list_messages, messages and lists, whichever process writes;
 * on lists only by a change to what pages show or to who may read them, sql/0102),
 * and a kept page is served only after a read of that counter begun after the request arrived
 * finds it unchanged. A read made while a change is in flight (counted but not yet committed) is
 * not settled: the cache then neither serves nor keeps pages. Concurrent hits share one read
 * (ArchiveVersion), so a busy cache costs about one tiny query per round trip, not one per
 * request.
 *
 * Entries also expire after MAX_AGE_MS: with a read replica (DATABASE_READ_URL) pages are
 * rendered from the replica while the counter is read on the primary, so a page rendered before
 * the replica replayed a change would otherwise stay stale until the next change.
 *
 * A page is kept under its path and the query parameters it reads (declared by its route, in a
 * fixed order): anything else in the query string (?utm_source=…, a cache buster) neither makes
 * a new entry nor bypasses the cache.
 */

import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type pg from 'pg';
import { archiveVersion, type ArchiveVersion as Version } from '../../db/archive.ts';
import { log } from '../../log.ts';
import { pageCacheRequests } from '../../metrics.ts';
import { viewerOf } from '../viewer.ts';
import { notModified } from './conditional.ts';

const MAX_AGE_MS = 10_000;
/** Bigger bodies (an mbox download, a large raw message) are not worth the memory. */
const MAX_ENTRY_BYTES = 512 * 1024;
/** Response headers that are the same for everyone who gets this page. */
const KEPT_HEADERS = ['content-type', 'cache-control', 'vary', 'last-modified', 'etag', 'content-security-policy', 'content-disposition', 'repr-digest', 'surrogate-key', 'xkey'];

interface Entry {
  body: Buffer;
  headers: [string, string][];
  at: number;
  version: number;
  /** what the entry holds, counted against maxBytes (entrySize) */
  size: number;
}

/**
 * What an entry costs: its body, and its key and headers too. The key is the visitor's URL (up to
 * Node's 16 KB of request head), so `/message-id/raw/ID?list=<8 KB>` keeps a 300-byte page under
 * 8 KB of key: counted by bodies alone, PAGE_CACHE_MB held twenty-odd times its size in keys, as
 * many as an attacker asked for. A string costs up to two bytes a character: counted so.
 */
function entrySize(key: string, body: Buffer, headers: [string, string][]): number {
  let n = body.length + 2 * key.length + 200;
  for (const [name, value] of headers) n += 2 * (name.length + value.length);
  return n;
}

/** What a request that may offer its page carries: the counter value its render is at least as new as. */
interface Mark {
  cache: PageCache;
  key: string;
  version: number;
}

export class PageCache {
  // Map order is insertion order: the first key is the least recently used.
  private entries = new Map<string, Entry>();
  private bytes = 0;
  private archive: ArchiveVersion;
  /** The newest counter value read; null until the first read succeeds. */
  private version: number | null = null;

  constructor(pool: pg.Pool, private maxBytes: number) {
    this.archive = new ArchiveVersion(pool);
  }

  async start(): Promise<void> {
    await this.current().catch((err) => log.warn({ err }, 'page cache: archive version unreadable'));
  }

  async stop(): Promise<void> {
    this.clear();
  }

  private clear() {
    this.entries.clear();
    this.bytes = 0;
  }

  /**
   * Reads the counter; a change empties the cache, as every kept page is then older. Null while a
   * change is in flight: nothing may be served, and nothing rendered now may be kept.
   */
  private async current(): Promise<number | null> {
    const { version, settled } = await this.archive.read();
    if (this.version === null || version > this.version) {
      this.clear();
      this.version = settled ? version : null;
    }
    return settled ? version : null;
  }

  /**
   * Serves a kept page, or marks the request so that sendBody() offers its page back. `params`
   * are the query parameters the page reads; the key keeps only those.
   */
  middleware(params: readonly string[]): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      if ((req.method !== 'GET' && req.method !== 'HEAD') || viewerOf(req)) return next();
      const key = pageKey(req, params);
      const hit = this.entries.get(key);
      if (!hit || performance.now() - hit.at >= MAX_AGE_MS) {
        // Without a counter value yet (the database was down at start) nothing can be kept: ask.
        if (this.version === null) this.current().catch(() => {});
        // A render begun now reads data at least as new as the last counter value read.
        return this.miss(res, key, this.version, next);
      }
      this.current().then(
        (version) => {
          if (version === null || hit.version !== version) return this.miss(res, key, version, next);
          pageCacheRequests.inc({ result: 'hit' });
          this.entries.delete(key);
          this.entries.set(key, hit);
          for (const [name, value] of hit.headers) res.setHeader(name, value);
          if (notModified(req, res)) return;
          // Node sends no body to a HEAD request; its Content-Length is the GET's.
          res.setHeader('Content-Length', hit.body.length);
          res.status(200).end(hit.body);
        },
        // The database will fail the render too, with the right error page.
        () => this.miss(res, key, null, next),
      );
    };
  }

  private miss(res: Response, key: string, version: number | null, next: NextFunction) {
    pageCacheRequests.inc({ result: 'miss' });
    if (version !== null) res.locals.pageCache = { cache: this, key, version } satisfies Mark;
    next();
  }

  /** Keeps a page that anyone could be given: 200, public, no cookie set, not too big. */
  offer(res: Response, body: Buffer) {
    const mark = res.locals.pageCache as Mark | undefined;
    // Rendered from data older than what the cache has seen since: it would only be dropped.
    if (!mark || mark.version !== this.version) return;
    if (res.statusCode !== 200 || body.length > MAX_ENTRY_BYTES || res.getHeader('set-cookie')) return;
    if (!String(res.getHeader('cache-control') ?? '').startsWith('public')) return;
    const headers = KEPT_HEADERS.flatMap((name): [string, string][] => {
      const v = res.getHeader(name);
      return v === undefined ? [] : [[name, String(v)]];
    });
    const old = this.entries.get(mark.key);
    if (old) this.bytes -= old.size;
    this.entries.delete(mark.key);
    const size = entrySize(mark.key, body, headers);
    this.entries.set(mark.key, { body, headers, at: performance.now(), version: mark.version, size });
    this.bytes += size;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.size;
    }
  }
}

/**
 * Reads of the archive change counter, shared: read() resolves with the result of a query begun
 * after the call, so it sees every change committed before it. Callers that arrive while a query
 * runs share the next one, so there are never more than two in flight.
 */
class ArchiveVersion {
  private running: Promise<Version> | null = null;
  private queued: Promise<Version> | null = null;

  constructor(private pool: pg.Pool) {}

  read(): Promise<Version> {
    if (!this.running) return this.start();
    this.queued ??= this.running.then(
      () => this.startQueued(),
      () => this.startQueued(),
    );
    return this.queued;
  }

  private startQueued(): Promise<Version> {
    this.queued = null;
    return this.start();
  }

  private start(): Promise<Version> {
    const query = archiveVersion(this.pool);
    this.running = query;
    const done = () => {
      if (this.running === query) this.running = null;
    };
    query.then(done, done);
    return query;
  }
}

/**
 * The cache key of a request: its path, then the parameters the page reads, sorted by name (the
 * values of a repeated one in their order), each as URLSearchParams writes it. The values are
 * taken from req.query, the very object the page reads, never from a second parse of the URL:
 * Express's parser (node:querystring) stops at 1,000 parameters, so `?j0=1&…&j999=1&q=x` renders
 * the page without `q`, and a key read from the whole URL kept that page as the page of `q=x`.
 */
export function pageKey(req: Request, params: readonly string[]): string {
  const url = req.originalUrl;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const query = req.query as Record<string, unknown>;
  const kept: [string, string][] = [];
  for (const name of [...params].sort()) {
    const v = query[name];
    for (const value of Array.isArray(v) ? v : [v]) if (typeof value === 'string') kept.push([name, value]);
  }
  if (kept.length === 0) return url.slice(0, q);
  return `${url.slice(0, q)}?${new URLSearchParams(kept).toString()}`;
}

/** Offers a sent page to the cache that marked the request, if any (see sendBody). */
export function offerToPageCache(res: Response, body: Buffer) {
  (res.locals.pageCache as Mark | undefined)?.cache.offer(res, body);
}
