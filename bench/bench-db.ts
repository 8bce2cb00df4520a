/*
 * A throw-away database for one benchmark: on DATABASE_URL's server when set, else on an
 * embedded server kept in .bench-data/ (never the user's ./data).
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { clusterDataBytes } from '../src/db/embedded-settings.ts';
import { openEmbedded } from '../src/db/embedded.ts';

export interface BenchDatabase {
  url: string;
  /** the embedded server's postmaster (the whole server is the benchmark's); unset on DATABASE_URL's */
  postmasterPid?: number;
  /**
   * Restarts the embedded server (close connections to it first), so that it sizes itself for the
   * data now in it as any later start would (shared_buffers, src/db/embedded-settings.ts); url and
   * postmasterPid follow. Says what it chose. The embedded server only: DATABASE_URL's is not ours.
   */
  restart(): Promise<string>;
  drop(): Promise<void>;
}

const BENCH_DATA = path.resolve('.bench-data');

export async function benchDatabase(prefix: string): Promise<BenchDatabase> {
  let embedded = process.env.DATABASE_URL ? undefined : await openEmbedded(BENCH_DATA);
  let adminUrl = process.env.DATABASE_URL ?? embedded!.url;
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  await admin(adminUrl, `create database ${name}`);
  const dbUrl = () => {
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    return u.toString();
  };
  const postmaster = () => (embedded ? Number(fs.readFileSync(path.join(BENCH_DATA, 'postgres/postmaster.pid'), 'utf8').split('\n')[0]) : undefined);
  const bdb: BenchDatabase = {
    url: dbUrl(),
    postmasterPid: postmaster(),
    async restart() {
      if (!embedded) throw new Error(`DATABASE_URL's server is not the benchmark's to restart`);
      await embedded.release();
      embedded = await openEmbedded(BENCH_DATA);
      adminUrl = embedded.url;
      bdb.url = dbUrl();
      bdb.postmasterPid = postmaster();
      const dataMb = clusterDataBytes(path.join(BENCH_DATA, 'postgres')) / 1048576;
      return `embedded server restarted on ${dataMb.toFixed(0)} MB of data: shared_buffers ${await setting(bdb.url, 'shared_buffers')}`;
    },
    async drop() {
      await admin(adminUrl, `drop database if exists ${name} with (force)`);
      await embedded?.release();
    },
  };
  return bdb;
}

async function setting(url: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ v: string }>('select current_setting($1) as v', [name])).rows[0].v;
  } finally {
    await client.end();
  }
}

async function admin(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
