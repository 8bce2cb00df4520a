/*
 * Migrates a template database once; every test file clones it (create database … template …).
 * Uses DATABASE_URL when set (CI), else an embedded server in .test-data/.
 */

import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openEmbedded, type EmbeddedDatabase } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { log } from '../src/log.ts';
import { LOOPBACK_SPF, StubDns } from './helpers/stub-dns.ts';

let embedded: EmbeddedDatabase | undefined;
let dns: StubDns | undefined;
let adminUrl: string;
let template: string;

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    templateDatabase: string;
  }
}

export async function setup(project: TestProject) {
  log.level = process.env.LOG_LEVEL ?? 'silent';
  // Tests never touch the internet: every lookup, in the test processes (setup-log.ts) and in
  // the serve and CLI processes they start (which inherit the environment), goes to a stub that
  // knows no names unless a test gives it some, but for one thing: every domain lets loopback
  // send its mail (SPF, LOOPBACK_SPF), so test posts from 127.0.0.1 authenticate as a real
  // sender's would when the envelope sender's domain is From's. A test of forgery gives the
  // forged domain a record of its own (test/post-authentication.test.ts).
  if (!process.env.DNS_SERVERS) {
    dns = new StubDns({ defaultSpf: LOOPBACK_SPF });
    process.env.DNS_SERVERS = await dns.start();
  }
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
  } else {
    embedded = await openEmbedded(path.resolve('.test-data'));
    adminUrl = embedded.url;
  }
  template = `lk_template_${process.pid}`;
  await admin(`drop database if exists ${template}`);
  await admin(`create database ${template}`);
  const pool = new pg.Pool({ connectionString: withDatabase(adminUrl, template), max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  project.provide('adminDatabaseUrl', adminUrl);
  project.provide('templateDatabase', template);
}

export async function teardown() {
  await admin(`drop database if exists ${template} with (force)`).catch(() => undefined);
  await embedded?.release();
  await dns?.stop();
}

async function admin(sql: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}
