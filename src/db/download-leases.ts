/*
 * The per-client download slots of the whole site (web/archive/download-slots.ts): a client address
 * may run DOWNLOADS_PER_CLIENT heavy downloads at once whichever web process (WEB_PROCESSES, or
 * another machine behind the load balancer) serves them. Each slot is a session advisory lock on
 * the primary, class 7290 + the slot's number and key hashtext(the client's key), held on one
 * dedicated connection per web process: a lock goes with its connection, so a process killed with
 * kill -9 (or whose machine vanishes, once TCP keepalives give up: about a minute) holds none, and
 * no slot leaks. Classes 7290-7299 are used for nothing else (7283 is the archive's, 7284 the
 * delivery workers').
 *
 * Advisory locks are re-entrant within a session, and all of a process's leases share one: the
 * slots this process holds for a client are not asked for again (take() is told which).
 *
 * When the connection cannot be had (the primary restarting, a network cut), take() says so and the
 * caller falls back to its own count: the per-process limits still hold. Leases held on a lost
 * connection are gone with it; their downloads go on uncounted by other processes until they end.
 */

import pg from 'pg';
import { log } from '../log.ts';
import { setKeepalives } from './pool.ts';

/** The first advisory lock class of download slots: slot i is class 7290 + i. */
const SLOT_CLASS = 7290;
/** At most this many slots per client: classes 7290-7299. */
export const MAX_CLIENT_SLOTS = 10;
/** After a failed connection, this long before the next try (takes meanwhile fall back at once). */
const RETRY_MS = 5_000;
/** Every wait on the connection has a deadline: a download is never held up by a stuck lease. */
const QUERY_TIMEOUT_MS = 5_000;

/** A slot held: released with release(). */
export interface DownloadLease {
  slot: number;
  client: string;
  /** the connection it was taken on: a lease of a connection since lost is gone already */
  connection: pg.Client;
}

export class DownloadLeases {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private failedAt = -Infinity;
  private stopped = false;
  /** The connection's statements, one after another: downloads start and end at once. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly url: string) {}

  /**
   * A free slot of `slots` for `client` (the client's key), skipping those in `held` (this
   * process's); null when every one is taken somewhere on the site; 'unavailable' when the
   * connection cannot be had now.
   */
  async take(client: string, slots: number, held: ReadonlySet<number>): Promise<DownloadLease | null | 'unavailable'> {
    const wanted = Array.from({ length: Math.min(slots, MAX_CLIENT_SLOTS) }, (_, i) => i).filter((i) => !held.has(i));
    if (wanted.length === 0) return null;
    let connection: pg.Client;
    try {
      connection = await this.connection();
    } catch {
      return 'unavailable';
    }
    try {
      // The slots in order, each tried until one is had: LIMIT 1 stops the scan at the first lock
      // taken, so no other is (no ORDER BY, which would test every row before sorting).
      const { rows } = await this.serially(() => connection.query<{ slot: number }>(
        `select s as slot from unnest($2::int[]) s where pg_try_advisory_lock(${SLOT_CLASS} + s, hashtext($1)) limit 1`,
        [client, wanted],
      ));
      return rows.length === 0 ? null : { slot: rows[0].slot, client, connection };
    } catch (err) {
      this.lost(connection, err as Error);
      return 'unavailable';
    }
  }

  /** Gives the slot back; nothing to do when its connection is gone (the lock went with it). */
  async release(lease: DownloadLease): Promise<void> {
    if (lease.connection !== this.client) return;
    try {
      await this.serially(() => lease.connection.query(`select pg_advisory_unlock(${SLOT_CLASS} + $2::int, hashtext($1))`, [lease.client, lease.slot]));
    } catch (err) {
      this.lost(lease.connection, err as Error);
    }
  }

  /**
   * Runs `statement` after the ones before it on the connection: node-postgres queues a query sent
   * while another runs, but that is deprecated (pg 9 refuses it).
   */
  private serially<T>(statement: () => Promise<T>): Promise<T> {
    const run = this.queue.then(statement, statement);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Ends the connection, and with it every lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    const client = this.client ?? (await this.connecting?.catch(() => null)) ?? null;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    if (this.stopped) throw new Error('download leases stopped');
    if (this.connecting) return this.connecting;
    if (performance.now() - this.failedAt < RETRY_MS) throw new Error('download leases unavailable');
    this.connecting = this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.url,
      application_name: `listkeeper:${process.pid}:download-leases`,
      keepAlive: true,
      connectionTimeoutMillis: QUERY_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    try {
      await client.connect();
      // A machine that vanished without closing its connection gives its leases back within
      // about a minute, not the system's two hours.
      await setKeepalives(client, 30, 10);
    } catch (err) {
      this.failedAt = performance.now();
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      log.warn({ err }, 'could not connect for download slots; counting this process\'s downloads alone meanwhile');
      throw err;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      throw new Error('download leases stopped');
    }
    this.client = client;
    return client;
  }

  private lost(client: pg.Client, err: Error | null) {
    if (this.client !== client) return;
    this.client = null;
    this.failedAt = performance.now();
    if (!this.stopped) log.warn({ err }, 'lost the connection of download slots; counting this process\'s downloads alone until it is back');
    client.end().catch(() => undefined);
  }
}
