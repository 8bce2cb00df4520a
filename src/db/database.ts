import type pg from 'pg';
import type { Config } from '../config.ts';
import { openEmbedded } from './embedded.ts';
import { migrate } from './migrate.ts';
import { createPool } from './pool.ts';
import { ReplicaLag, ReplicaPool } from './read-pool.ts';

/** The process's connections: the primary, and the pool archive reads use (a replica or the primary). */
export interface Database {
  pool: pg.Pool;
  readPool: pg.Pool;
  /**
   * Searches' fixed statements (db/search-scan.ts), on the read server, over connections that
   * keep generic plans; absent, searches use readPool. Opened on first use: only web processes search.
   */
  searchPool?: pg.Pool;
  /** for what needs a whole session (migrations, imports, backups): = pool unless behind a transaction pooler */
  sessionPool?: pg.Pool;
  url: string;
  /** for dedicated session connections (LISTEN, the delivery lock, the parse thread): = url unless behind a transaction pooler */
  directUrl?: string;
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

/**
 * Where the parse thread's dedicated connection reads, in order: the replica (DATABASE_READ_URL)
 * and then the primary, or the primary alone. Behind a transaction pooler, only the primary's
 * direct URL, a whole session (the thread's statements are named).
 */
export function readUrls(cfg: Pick<Config, 'databaseReadUrl' | 'databasePoolMode'>, primaryUrl: string): string[] {
  return cfg.databaseReadUrl && cfg.databasePoolMode !== 'transaction' ? [cfg.databaseReadUrl, primaryUrl] : [primaryUrl];
}

/** Searches hold a connection for a millisecond or two: a few serve a process. */
export function searchPoolSize(cfg: Config): number {
  return Math.max(2, Math.ceil(cfg.dbPoolSize / 3));
}

/**
 * Connects to DATABASE_URL, or to the embedded server in DATA_DIR when it is unset, and applies
 * pending migrations. close() ends the pools and, for the embedded server, lets it go.
 */
export async function openDatabase(cfg: Config, role: string, opts: { migrate?: boolean; signal?: AbortSignal; lockTimeoutMs?: number } = {}): Promise<Database> {
  const embedded = cfg.databaseUrl ? undefined : await openEmbedded(cfg.dataDir, { maxConnections: embeddedConnections(cfg) });
  const url = cfg.databaseUrl ?? embedded!.url;
  const pooled = cfg.databasePoolMode === 'transaction';
  // serve's statements give up on a lock in time (LOCK_TIMEOUT_MS); the sessionPool's behind a
  // pooler (migrations, imports) wait as they need to.
  const settings: Record<string, string> = opts.lockTimeoutMs ? { lock_timeout: String(opts.lockTimeoutMs) } : {};
  const pool = createPool(url, cfg.dbPoolSize, role, { transactionPooling: pooled, settings });
  // What needs a whole session (migrations' advisory lock, imports' and backups' settings) goes
  // around a transaction pooler; without one, it is the same pool.
  const sessionPool = pooled ? createPool(cfg.databaseDirectUrl!, 2, `${role}-session`) : pool;
  // On a replica, both fall back to the primary (read-pool.ts); the search pool's fallback is the
  // primary's ordinary pool, where its statements are planned as usual.
  // One watch of the replica's lag for both of its pools (read-pool.ts).
  const lag = cfg.databaseReadUrl ? new ReplicaLag(pool, cfg.databaseReadMaxLagMs, `${role}-read`) : undefined;
  const readPool = cfg.databaseReadUrl
    ? createPool(cfg.databaseReadUrl, cfg.dbPoolSize, `${role}-read`, { PoolClass: ReplicaPool, transactionPooling: pooled, settings }).fallBackTo(pool, `${role}-read`, lag)
    : pool;
  // Generic plans kept per connection need whole sessions: through a transaction pooler, searches
  // use readPool, planned each time.
  const generic = { settings: { ...settings, plan_cache_mode: 'force_generic_plan' } };
  const searchPool = pooled
    ? undefined
    : cfg.databaseReadUrl
      ? createPool(cfg.databaseReadUrl, searchPoolSize(cfg), `${role}-search`, { ...generic, PoolClass: ReplicaPool }).fallBackTo(pool, `${role}-search`, lag)
      : createPool(url, searchPoolSize(cfg), `${role}-search`, generic);
  const end = async () => {
    await searchPool?.end();
    if (readPool !== pool) await readPool.end();
    if (sessionPool !== pool) await sessionPool.end();
    await pool.end();
    await embedded?.release();
  };
  try {
    if (opts.migrate !== false) await migrate(sessionPool, { signal: opts.signal });
  } catch (err) {
    await end();
    throw err;
  }
  let closed = false;
  return {
    pool,
    readPool,
    searchPool,
    sessionPool,
    url,
    directUrl: pooled ? cfg.databaseDirectUrl! : url,
    async close() {
      if (closed) return;
      closed = true;
      await end();
    },
  };
}
