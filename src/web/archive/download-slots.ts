/*
 * How many heavy downloads one web process serves at once. A heavy download is an mbox (a month or a
 * thread) or a raw message or attachment of HEAVY_DOWNLOAD_BYTES or more, and each holds memory for
 * as long as its reader takes: an mbox its page of messages (db/archive-mbox.ts, up to
 * MBOX_PAGE_BYTES past its first message) and the entry the socket has not taken yet, a raw message
 * or attachment its whole body. A reader who stops reading holds that until the idle deadline
 * (http-server.ts, STALLED_MS), and a few hundred such readers of a large month ran a process out
 * of memory, for every reader of the site.
 *
 * WEB_MAX_DOWNLOADS (8 by default) run at once in a process, 2 per client address, so that one
 * client cannot take every slot. Past the process's limit a download is answered 503, past the
 * client's 429, both with Retry-After. A slot is held until the response closes, however it ends:
 * sent, the reader gone, an error, the idle deadline. A HEAD request or a 304 sends no body and
 * takes none, except a HEAD or a 304 of a large raw message: its bytes (its ETag's source) are read
 * only in a slot, so that a refusal costs a small query, never the read of the whole message.
 */

import type { Request, Response } from 'express';
import { clientKey } from '../../db/rate-limits.ts';
import { log } from '../../log.ts';
import { downloadsRefused, downloadsRunning } from '../web-metrics.ts';

/** Two at once from one address (an IPv4 address, an IPv6 /64): a reader may fetch two months side by side. */
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
  private byClient = new Map<string, number>();
  private refusedSinceLog = 0;
  private lastLog = -Infinity;

  /**
   * `perProcess` is WEB_MAX_DOWNLOADS, 8 by default: eight readers who stalled on a month of 2 MB
   * messages held 95–122 MB above a web process's 100 MB at rest (an 8 MB page and the entry the
   * socket has not taken, each), what a small machine can spare; sixty held 1.1–1.2 GB before
   * there was a limit (bench/downloads.ts). A reader who downloads as fast as the network goes keeps
   * a slot for seconds. Messages of SMTP_MAX_SIZE make each hold up to two such messages more.
   */
  constructor(readonly perProcess: number) {
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
  take(req: Request, res: Response): boolean {
    // Closed before it began: its 'close' has been and gone, and would never give the slot back.
    if (res.destroyed) return false;
    const client = clientKey(req.ip);
    const mine = this.byClient.get(client) ?? 0;
    if (mine >= this.perClient) {
      this.refuse(req, res, 'client', 429, `This address has ${mine} downloads running already. Try again when one of them has finished.\n`);
      return false;
    }
    if (this.running >= this.perProcess) {
      this.refuse(req, res, 'process', 503, 'Too many downloads are running on this server just now. Try again in a few seconds.\n');
      return false;
    }
    this.running++;
    this.byClient.set(client, mine + 1);
    downloadsRunning.inc();
    res.once('close', () => {
      this.running--;
      const left = (this.byClient.get(client) ?? 1) - 1;
      if (left > 0) this.byClient.set(client, left);
      else this.byClient.delete(client);
      downloadsRunning.dec();
    });
    return true;
  }

  private refuse(req: Request, res: Response, reason: 'process' | 'client', status: 429 | 503, text: string) {
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
