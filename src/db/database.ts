import type pg from 'pg';
import type { Config } from '../config.ts';
import { openEmbedded } from './embedded.ts';
import { migrate } from './migrate.ts';
import { createPool } from './pool.ts';
import { ReplicaPool } from './read-pool.ts';

/** The process's connections: the primary, and the pool archive reads use (a replica or the primary). */
export interface Database {
  pool: pg.Pool;
  readPool: pg.Pool;
  /**
   * Searches' fixed statements (db/search-scan.ts), on the read server, over connections that
   * keep generic plans; absent, searches use readPool. Opened on first use: only web processes search.
   */
  searchPool?: pg.Pool;
  url: string;
  close(): Promise<void>;
}

/**
 * What the embedded server must allow: a pool per process (serve, its web processes, a CLI
 * command beside them), each with a few dedicated connections (LISTEN, a parse thread), and the
 * default 100 at least.
 */
export function embeddedConnections(cfg: Config): number {
  return Math.max(100, (cfg.web.processes + 2) * (cfg.dbPoolSize + searchPoolSize(cfg) + 4));
}

/** Where archive reads go, in order: the replica (DATABASE_READ_URL) and then the primary, or the primary alone. */
export function readUrls(cfg: Pick<Config, 'databaseReadUrl'>, primaryUrl: string): string[] {
  return cfg.databaseReadUrl ? [cfg.databaseReadUrl, primaryUrl] : [primaryUrl];
}

/** Searches hold a connection for a millisecond or two: a few serve a process. */
export function searchPoolSize(cfg: Config): number {
  return Math.max(2, Math.ceil(cfg.dbPoolSize / 3));
}

/**
 * Connects to DATABASE_URL, or to the embedded server in DATA_DIR when it is unset, and applies
 * pending migrations. close() ends the pools and, for the embedded server, lets it go.
 */
export async function openDatabase(cfg: Config, role: string, opts: { migrate?: boolean } = {}): Promise<Database> {
  const embedded = cfg.databaseUrl ? undefined : await openEmbedded(cfg.dataDir, { maxConnections: embeddedConnections(cfg) });
  const url = cfg.databaseUrl ?? embedded!.url;
  const pool = createPool(url, cfg.dbPoolSize, role);
  // On a replica, both fall back to the primary (read-pool.ts); the search pool's fallback is the
  // primary's ordinary pool, where its statements are planned as usual.
  const readPool = cfg.databaseReadUrl ? createPool(cfg.databaseReadUrl, cfg.dbPoolSize, `${role}-read`, {}, ReplicaPool).fallBackTo(pool, `${role}-read`) : pool;
  const generic = { plan_cache_mode: 'force_generic_plan' };
  const searchPool = cfg.databaseReadUrl
    ? createPool(cfg.databaseReadUrl, searchPoolSize(cfg), `${role}-search`, generic, ReplicaPool).fallBackTo(pool, `${role}-search`)
    : createPool(url, searchPoolSize(cfg), `${role}-search`, generic);
  try {
    if (opts.migrate !== false) await migrate(pool);
  } catch (err) {
    await searchPool.end();
    if (readPool !== pool) await readPool.end();
    await pool.end();
    await embedded?.release();
    throw err;
  }
  let closed = false;
  return {
    pool,
    readPool,
    searchPool,
    url,
    async close() {
      if (closed) return;
      closed = true;
      await searchPool.end();
      if (readPool !== pool) await readPool.end();
      await pool.end();
      await embedded?.release();
    },
  };
}
