/*
 * A throw-away database for one benchmark: on DATABASE_URL's server when set, else on an
 * embedded server kept in .bench-data/ (never the user's ./data).
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { openEmbedded } from '../src/db/embedded.ts';

export interface BenchDatabase {
  url: string;
  /** the embedded server's postmaster (the whole server is the benchmark's); unset on DATABASE_URL's */
  postmasterPid?: number;
  drop(): Promise<void>;
}

export async function benchDatabase(prefix: string): Promise<BenchDatabase> {
  const embedded = process.env.DATABASE_URL ? undefined : await openEmbedded(path.resolve('.bench-data'));
  const adminUrl = process.env.DATABASE_URL ?? embedded!.url;
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  await admin(adminUrl, `create database ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    postmasterPid: embedded ? Number(fs.readFileSync(path.resolve('.bench-data/postgres/postmaster.pid'), 'utf8').split('\n')[0]) : undefined,
    async drop() {
      await admin(adminUrl, `drop database if exists ${name} with (force)`);
      await embedded?.release();
    },
  };
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
