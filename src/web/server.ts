import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import { readUrls, type Database } from '../db/database.ts';
import { DownloadLeases } from '../db/download-leases.ts';
import { log } from '../log.ts';
import { settleAfterResponse } from './after-response.ts';
import { createApp } from './app.ts';
import { expressServer } from './http-server.ts';
import { PageCache } from './archive/page-cache.ts';
import { ParsedMessages } from './archive/parsed-messages.ts';

/** The web listener with start() and an idempotent stop() that lets requests in flight finish. */
export class WebServer {
  private server?: http.Server;
  private pageCache?: PageCache;
  private parsedMessages?: ParsedMessages;
  private downloadLeases?: DownloadLeases;

  /** `stalledMs`: the idle deadline (http-server.ts STALLED_MS), shorter in tests. */
  constructor(private db: Database, private cfg: Config, private opts: { host: string; port: number; stalledMs?: number } = cfg.web) {}

  async start(): Promise<AddressInfo> {
    if (this.cfg.web.pageCacheMb > 0) {
      this.pageCache = new PageCache(this.db.pool, this.cfg.web.pageCacheMb * 1024 * 1024);
      await this.pageCache.start();
    }
    this.parsedMessages = new ParsedMessages(this.cfg.web.messageCacheMb * 1024 * 1024, readUrls(this.cfg, this.db.directUrl ?? this.db.url));
    // On the primary (advisory locks are the primary's), as a whole session: its locks are the leases.
    this.downloadLeases = new DownloadLeases(this.db.directUrl ?? this.db.url);
    const server = expressServer(createApp(this.db, this.cfg, { pageCache: this.pageCache, parsedMessages: this.parsedMessages, downloadLeases: this.downloadLeases }), { stalledMs: this.opts.stalledMs });
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.server = server;
    const addr = server.address() as AddressInfo;
    log.info({ port: addr.port }, 'web listening');
    return addr;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    // Mail that answered requests promised (login links) is queued before the pools close.
    await settleAfterResponse();
    await this.pageCache?.stop();
    await this.parsedMessages?.stop();
    await this.downloadLeases?.stop();
  }
}
