import type nunjucks from 'nunjucks';
import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';
import type { DownloadSlots } from './archive/download-slots.ts';
import type { PageCache } from './archive/page-cache.ts';
import type { ParsedMessages } from './archive/parsed-messages.ts';

/** What every route gets: the database, the configuration, the view environment. */
export interface WebContext {
  db: Database;
  cfg: Config;
  views: nunjucks.Environment;
  /** rendered public archive pages (PAGE_CACHE_MB > 0); archive routes consult it */
  pageCache?: PageCache;
  /** messages parsed once for their pages and attachments (MESSAGE_CACHE_MB) */
  parsedMessages: ParsedMessages;
  /** the heavy downloads this process serves at once (WEB_MAX_DOWNLOADS) */
  downloads: DownloadSlots;
}
