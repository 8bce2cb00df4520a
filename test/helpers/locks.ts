/*
 * Forcing an interleaving of transactions: a connection of the test's own holds a lock, the
 * requests under test queue behind it in the order the test starts them (waitersForALock tells
 * when they do), and its rollback lets them go.
 */

import pg from 'pg';

/** A connection of its own with a transaction open; the caller ends it (rollback, then end()). */
export async function sideTransaction(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('begin');
  return c;
}

/** Waits until `n` backends of the pool's database wait for a lock. */
export async function waitersForALock(pool: pg.Pool, n = 1): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
    if (rows[0].n >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`fewer than ${n} waited for a lock`);
}
