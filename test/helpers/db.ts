import crypto from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { createPool } from '../../src/db/pool.ts';
import { withDatabase } from '../global-setup.ts';

export interface TestDatabase extends Database {
  name: string;
  /** drops the database (after closing the pools) */
  drop(): Promise<void>;
}

/** A fresh database cloned from the migrated template: one per test file (call in beforeAll). */
export async function testDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const template = inject('templateDatabase');
  const name = `lk_test_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `create database ${name} template ${template}`);
  const url = withDatabase(adminUrl, name);
  const pool = createPool(url, 10, 'test');
  // As database.ts opens it: searches' fixed statements keep generic plans.
  const searchPool = createPool(url, 2, 'test-search', { settings: { plan_cache_mode: 'force_generic_plan' } });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await searchPool.end();
    await pool.end();
  };
  return {
    name,
    url,
    pool,
    readPool: pool,
    searchPool,
    close,
    async drop() {
      await close();
      await adminQuery(adminUrl, `drop database if exists ${name} with (force)`);
    },
  };
}

/** One statement on the server's administrative database (create or drop a database). */
export async function adminQuery(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Cloning a template fails while anyone else clones it; retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(sql);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== '55006' || attempt > 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    await client.end();
  }
}
