/*
 * How many heavy downloads one web process serves at once. A heavy download is an mbox (a month or a
 * thread) or a raw message or attachment of HEAVY_DOWNLOAD_BYTES or more, and each holds memory for
 * as long as its reader takes: an mbox its page of messages (db/archive-mbox.ts, up to
 * MBOX_PAGE_BYTES past its first message) and the entry the socket has not taken yet, a raw message
 * or attachment its whole body. A reader who stops reading holds that until the idle deadline
 * (http-server.ts, STALLED_MS), and a few hundred such readers of a large month ran a process out
 * of memory, for every reader of the site.
 *
 * WEB_MAX_DOWNLOADS (8 by default) run at once in a process: the memory they hold is the process's.
 * One client address runs 2 at once on the whole site, whichever process serves it (WEB_PROCESSES,
 * other machines): a lease per slot in PostgreSQL (db/download-leases.ts), which dies with its
 * process, so that one client cannot take every process's slots. Past the process's limit a
 * download is answered 503, past the client's 429, both with Retry-After. A slot is held until the
 * response closes, however it ends: sent, the reader gone, an error, the idle deadline. A HEAD request or a 304 sends no body and
 * takes none, except a HEAD or a 304 of a large raw message: its bytes (its ETag's source) are read
 * only in a slot, so that a refusal costs a small query, never the read of the whole message.
 */

import type { Request, Response } from 'express';
import type { DownloadLease, DownloadLeases } from '../../db/download-leases.ts';
import { clientKey } from '../../db/rate-limits.ts';
import { log } from '../../log.ts';
import { downloadsRefused, downloadsRunning } from '../web-metrics.ts';

/** Two at once from one address (an IPv4 address, an IPv6 /64), on the whole site: a reader may fetch two months side by side. */
export const DOWNLOADS_PER_CLIENT = 2;
/** A raw message or attachment smaller than this is sent as a page is: it leaves memory as soon as the socket takes it. */
export const HEAVY_DOWNLOAD_BYTES = 1024 * 1024;
/** Seconds a refused reader is asked to wait: a download that ends frees its slot at once. */
export const DOWNLOAD_RETRY_AFTER = 5;
/** At most one warning a minute about refused downloads, with how many there were: a flood must not fill the log. */
const LOG_EVERY_MS = 60_000;

/** Headers of the download that was about to be sent: none of them describe the refusal. */
const DOWNLOAD_HEADERS = ['etag', 'last-modified', 'content-disposition', 'content-length', 'repr-digest', 'surrogate-key', 'xkey', 'content-security-policy'];

export class DownloadSlots {
  readonly perClient: number;
  private running = 0;
  /** this process's downloads per client, and the site's slots (leases) they hold */
  private byClient = new Map<string, { count: number; slots: Set<number> }>();
  private refusedSinceLog = 0;
  private lastLog = -Infinity;

  /**
   * `perProcess` is WEB_MAX_DOWNLOADS, 8 by default: eight readers who stalled on a month of 2 MB
   * messages held 95–122 MB above a web process's 100 MB at rest (an 8 MB page and the entry the
   * socket has not taken, each), what a small machine can spare; sixty held 1.1–1.2 GB before
   * there was a limit (bench/downloads.ts). A reader who downloads as fast as the network goes keeps
   * a slot for seconds. Messages of SMTP_MAX_SIZE make each hold up to two such messages more.
   * `leases` count a client's downloads on the whole site; without them (or while their
   * connection is down) this process's alone.
   */
  constructor(readonly perProcess: number, private readonly leases: DownloadLeases | null = null) {
    this.perClient = Math.min(DOWNLOADS_PER_CLIENT, perProcess);
  }

  /** Downloads holding a slot now. */
  get inUse(): number {
    return this.running;
  }

  /**
   * Takes a slot for this response until it closes. False when the caller must send nothing more:
   * the download was refused (answered here: 503 or 429) or its reader has gone already.
   */
  async take(req: Request, res: Response): Promise<boolean> {
    // Closed before it began: its 'close' has been and gone, and would never give the slot back.
    if (res.destroyed) return false;
    const client = clientKey(req.ip);
    const mine = this.byClient.get(client) ?? { count: 0, slots: new Set<number>() };
    if (mine.count >= this.perClient) {
      this.refuse(req, res, 'client', 429, mine.count);
      return false;
    }
    if (this.running >= this.perProcess) {
      this.refuse(req, res, 'process', 503, mine.count);
      return false;
    }
    // Counted here before the lease is asked for: downloads that start meanwhile see this one.
    this.running++;
    mine.count++;
    this.byClient.set(client, mine);
    downloadsRunning.inc();
    let lease: DownloadLease | null = null;
    let closed = false;
    const done = () => {
      if (closed) return;
      closed = true;
      this.running--;
      mine.count--;
      if (lease) {
        mine.slots.delete(lease.slot);
        void this.leases!.release(lease);
      }
      if (mine.count === 0 && this.byClient.get(client) === mine) this.byClient.delete(client);
      downloadsRunning.dec();
    };
    if (this.leases) {
      const got = await this.leases.take(client, this.perClient, mine.slots);
      if (got === null) {
        done();
        // Every one of the client's slots is held, by this process's downloads and others'.
        this.refuse(req, res, 'client', 429, this.perClient);
        return false;
      }
      if (got !== 'unavailable') {
        lease = got;
        mine.slots.add(got.slot);
      }
    }
    // The reader may have gone while the lease was asked for: then no 'close' is to come.
    if (res.destroyed) {
      done();
      return false;
    }
    res.once('close', done);
    return true;
  }

  private refuse(req: Request, res: Response, reason: 'process' | 'client', status: 429 | 503, running: number) {
    const text = reason === 'client'
      ? `This address has ${running} downloads running already. Try again when one of them has finished.\n`
      : 'Too many downloads are running on this server just now. Try again in a few seconds.\n';
    downloadsRefused.inc({ reason });
    this.refusedSinceLog++;
    const now = performance.now();
    if (now - this.lastLog >= LOG_EVERY_MS) {
      log.warn({ reason, ip: req.ip, url: req.originalUrl.slice(0, 300), refused: this.refusedSinceLog, running: this.running, limit: reason === 'client' ? this.perClient : this.perProcess }, 'downloads refused');
      this.lastLog = now;
      this.refusedSinceLog = 0;
    }
    for (const name of DOWNLOAD_HEADERS) res.removeHeader(name);
    res.statusCode = status;
    res.setHeader('Retry-After', String(DOWNLOAD_RETRY_AFTER));
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.end(text);
  }
}
