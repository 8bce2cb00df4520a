import pg from 'pg';
import { log } from '../log.ts';

/** Anything that can run a query: a pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

// bigint (int8) and numeric come back as JS numbers: our ids and counts stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export function createPool(connectionString: string, max: number, role: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    // Visible in pg_stat_activity; the embedded server uses it to see which processes are attached.
    application_name: `listkeeper:${process.pid}:${role}`,
    idleTimeoutMillis: 30_000,
  });
  pool.on('error', (err) => log.error({ err }, 'idle database client failed'));
  return pool;
}

/** Runs `fn` in one transaction on one client: committed if it returns, rolled back if it throws. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, begin = 'begin'): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
