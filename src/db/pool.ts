import pg from 'pg';
import { log } from '../log.ts';
import { unnamedStatements } from './pooler.ts';
import './pg-row-template.ts';

/** Anything that can run a query: a pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

// bigint (int8) and numeric come back as JS numbers: our ids and counts stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

/**
 * Deadlines on every connection. Connecting (and waiting for a free pooled client) gives up after
 * CONNECT_TIMEOUT_MS, so a dead or unreachable server is an error, not a wait. TCP keepalive
 * starts probing a socket idle for KEEPALIVE_IDLE_MS, so a peer that vanished without closing (a
 * network cut, a powered-off host) is noticed in minutes rather than hours (the kernel's probe
 * interval and count apply), on LISTEN connections and idle clients too.
 */
const CONNECT_TIMEOUT_MS = 10_000;
const KEEPALIVE_IDLE_MS = 10_000;
/**
 * PostgreSQL ends a session left idle inside a transaction this long, so a process that stalls
 * (frozen, cut off) while holding row or thread locks blocks the other instances for a minute,
 * not for ever. Our transactions never wait on anything but the database inside (an import's
 * batches run statement after statement), so this cannot cut short real work. Set with SET
 * rather than as a startup parameter, which a pooler such as PgBouncer refuses.
 */
const IDLE_IN_TRANSACTION_MS = 60_000;
/**
 * How long a statement of `serve` (ingest, web, delivery) waits for a lock before it fails with
 * 55P03, a transient failure: ingest answers 451, the web 503, the worker defers the copy or
 * tries its round again. Without it, an operator's LOCK TABLE, VACUUM FULL, ALTER TABLE or REINDEX
 * held every SMTP session, page and worker round that touched the table for as long as it ran,
 * each on a pooled connection, until the pool was empty and everything else waited too (the
 * worker's other queries gave up after CONNECT_TIMEOUT_MS). Our own transactions hold their locks
 * for milliseconds; 10 s is well inside the worker's lease (60 s) and an SMTP client's patience.
 * Not for the CLI: an import or a migration may wait as long as it takes (a migration sets its
 * own, db/migrate.ts).
 */
export const LOCK_TIMEOUT_MS = 10_000;
/**
 * A pooled connection idle this long is closed, so that a system left quiet holds few PostgreSQL
 * backends (each several MB). Not sooner: a new backend is dear before it is useful. Connecting
 * took 17-29 ms and its first search 27-34 ms (its catalog caches filled, the statement planned),
 * against 0.5 ms on a connection in use; closing after 10 s idle made every burst after a pause
 * open them again, and a search's p99 under 8 connections read 143 ms (max 176) instead of 4-10.
 */
const IDLE_CLOSE_MS = 5 * 60_000;

/** Connection settings that every listkeeper connection shares, pooled or dedicated. */
export function connectionConfig(connectionString: string, role: string): pg.ClientConfig {
  return {
    connectionString,
    // Visible in pg_stat_activity; the embedded server uses it to see which processes are attached.
    application_name: `listkeeper:${process.pid}:${role}`,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
  };
}

export interface PoolOptions<P extends pg.Pool> {
  /** session settings for every connection (names and values from our code, not input) */
  settings?: Record<string, string>;
  /**
   * the server is a pooler in transaction mode (DATABASE_POOL_MODE): no session settings, and
   * statements are sent unnamed (db/pooler.ts)
   */
  transactionPooling?: boolean;
  PoolClass?: new (config: pg.PoolConfig) => P;
}

export function createPool<P extends pg.Pool = pg.Pool>(connectionString: string, max: number, role: string, opts: PoolOptions<P> = {}): P {
  const set = Object.entries({ idle_in_transaction_session_timeout: String(IDLE_IN_TRANSACTION_MS), ...opts.settings })
    .map(([k, v]) => `set ${k} = ${v}`)
    .join('; ');
  const PoolClass = opts.PoolClass ?? (pg.Pool as unknown as new (config: pg.PoolConfig) => P);
  const pool = new PoolClass({
    ...connectionConfig(connectionString, role),
    max,
    idleTimeoutMillis: IDLE_CLOSE_MS,
    onConnect: async (client) => {
      // Through a transaction pooler a SET would stay on whichever server connection ran it, for
      // other clients to inherit: the server's own settings apply (docs/operations.md).
      if (opts.transactionPooling) unnamedStatements(client);
      else await client.query(set);
    },
  });
  // pg-pool listens for errors only on idle clients. One that loses its backend while checked
  // out emits 'error' too, and with nobody listening that would end the process: this listener
  // covers every checkout, whoever made it. The holder learns of the loss from its next query,
  // and the client, no longer queryable, is closed rather than pooled when released.
  pool.on('acquire', (client) => client.on('error', lostWhileCheckedOut));
  // A terminated backend sends a FATAL error and closes the socket a moment later; until then
  // the client still looks usable. Released in that moment (by a holder that saw only its query
  // fail), it would be handed to the next caller to fail again: it is closed instead.
  const ended = new WeakSet<pg.PoolClient>();
  pool.on('connect', (client) => {
    client.connection.on('errorMessage', (msg: { severity?: string; code?: string }) => {
      if (msg.severity === 'FATAL' || msg.severity === 'PANIC' || isConnectionLoss(msg)) ended.add(client);
    });
  });
  pool.on('release', (_err, client) => {
    client.removeListener('error', lostWhileCheckedOut);
    // pg-pool decides after this event, and does not pool a client that is ending.
    if (ended.has(client)) client.end().catch(() => undefined);
  });
  pool.on('error', (err) => log.warn({ error: briefError(err), role }, 'idle database connection lost'));
  return pool;
}

function lostWhileCheckedOut(err: Error) {
  log.debug({ error: briefError(err) }, 'database connection lost while in use');
}

/**
 * A dedicated connection (LISTEN, or a one-off outside any pool) that reports the loss of its
 * backend to `onError` instead of throwing it: it has its error listener before it connects.
 */
export function dedicatedClient(connectionString: string, role: string, onError: (err: Error) => void = lostWhileCheckedOut): pg.Client {
  const client = new pg.Client(connectionConfig(connectionString, role));
  client.on('error', onError);
  return client;
}

/**
 * Whether an error means the connection is gone (the backend was terminated, the server shut
 * down or cannot be reached) rather than that the statement was refused. Work that failed so
 * may succeed on another connection; the client it failed on must not be used again.
 */
export function isConnectionLoss(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    // 08: connection exception; 57P01-05: terminated, crash, cannot connect now, database
    // dropped, idle session timeout; 25P03: idle-in-transaction timeout (the session is ended).
    if (code.startsWith('08') || /^57P0[1-5]$/.test(code) || code === '25P03') return true;
    if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'].includes(code)) return true;
  }
  // node-postgres's own errors for a dead socket carry no code.
  return typeof message === 'string' && /Connection terminated|not queryable|timeout exceeded when trying to connect/.test(message);
}

/**
 * Whether a replica cancelled the statement because replaying the primary's changes needed what it
 * read (SQLSTATE 40001, "conflict with recovery"): the same read on the primary would succeed.
 */
export function isRecoveryConflict(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return code === '40001' && typeof message === 'string' && /conflict with recovery/.test(message);
}

/**
 * The part of a database error worth logging. pg-pool attaches the whole client to the errors of
 * idle clients: logged as is, that is a kilobyte of connection internals per line.
 */
export function briefError(err: unknown): { message: string; code?: string } {
  const e = err as { message?: unknown; code?: unknown };
  return { message: String(e?.message ?? err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) };
}

/**
 * Runs `fn` in one transaction on one client: committed if it returns, rolled back if it throws.
 * A client that cannot even roll back has lost its connection: it is closed, not pooled again.
 */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, begin = 'begin'): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    return await inTransaction(client, fn, begin, (rollbackErr) => {
      broken = rollbackErr;
    });
  } finally {
    client.release(broken);
  }
}

/**
 * Runs `fn` in one transaction on a client the caller holds (an import keeps one for its session's
 * temporary tables): committed if it returns, rolled back if it throws, the first error thrown.
 * A rollback that fails is given to `onRollbackError`: the connection is likely lost.
 */
export async function inTransaction<C extends pg.ClientBase, T>(client: C, fn: (client: C) => Promise<T>, begin = 'begin', onRollbackError?: (err: Error) => void): Promise<T> {
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch((rollbackErr: Error) => onRollbackError?.(rollbackErr));
    throw err;
  }
}

/** Whether the database answers at all: the web's /healthz. Throws what the connection threw. */
export async function ping(db: Queryable, timeoutMs?: number): Promise<void> {
  await db.query(withTimeout('select 1', timeoutMs));
}

/**
 * A statement that gives up after `timeoutMs` (pg's query_timeout) rather than wait on a stuck
 * server. Through pool.query the client is then released with the error, and pg-pool closes it
 * instead of pooling a connection still waiting for its answer. (The wait for a free client is
 * not covered: callers that must not hang put a deadline around the whole call, src/deadline.ts.)
 */
export function withTimeout(text: string, timeoutMs?: number, values?: unknown[]): pg.QueryConfig {
  // query_timeout is honoured per query by pg's Client.query; @types/pg only lists it for clients.
  return { text, values, ...(timeoutMs ? { query_timeout: timeoutMs } : {}) } as pg.QueryConfig;
}

/**
 * TCP keepalives for this session (a long-lived dedicated connection): the server notices a peer
 * that vanished after about idle + 3 x interval seconds instead of the system's two hours.
 */
export async function setKeepalives(db: Queryable, idleSeconds: number, intervalSeconds: number): Promise<void> {
  await db.query(
    `select set_config('tcp_keepalives_idle', $1, false), set_config('tcp_keepalives_interval', $2, false),
            set_config('tcp_keepalives_count', '3', false)`,
    [String(idleSeconds), String(intervalSeconds)],
  );
}
