/**
 * `npm run chaos`: the long fault-injection run, outside the test suite.
 *
 *   npm run chaos                 # crash loop (20 iterations, every fault), relay-fault sweep, SMTP fuzz (2,000 inputs)
 *   npm run chaos -- crash        # only the crash loop; `-- relay`, `-- fuzz`: only that part
 *
 * Environment: CHAOS_ITERATIONS (20), CHAOS_SEED (random; printed), CHAOS_LEASE_SECONDS (unset:
 * serve's default), CHAOS_BATCH_SIZE (20), CHAOS_FAULTS (relay-outage,backend-termination, and
 * db-restart on the embedded database; "none" for kills only), FUZZ_INPUTS (2000), FUZZ_SEED
 * (random; printed), CHAOS_LOG_DIR (serve's logs; a temporary folder otherwise), CHAOS_KEEP_DB=1
 * (keep the database of a failed run).
 * It runs on a fresh database on DATABASE_URL's server, or on an embedded PostgreSQL of its own in
 * .test-data/chaos/ (the harness owns it, so it can restart it, and a killed serve leaves nothing
 * running). Exits 1 when a check failed.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { openEmbedded, type EmbeddedDatabase } from '../src/db/embedded.ts';
import { createList } from '../src/db/lists.ts';
import { migrate } from '../src/db/migrate.ts';
import { createPool } from '../src/db/pool.ts';
import { log } from '../src/log.ts';
import { formatReport, runCrashLoop, type Fault } from './chaos-loop.ts';
import { runRelaySweep } from './chaos-relay.ts';
import { startIngest } from './helpers/smtp.ts';
import { formatFuzzReport, runFuzz } from './helpers/smtp-fuzz.ts';
import { startWeb } from './helpers/web.ts';

// Set in the environment too: the in-process listeners of the fuzz read their level from their
// configuration, and printed 2,000 lines of info logs into the report.
process.env.LOG_LEVEL ??= 'silent';
log.level = process.env.LOG_LEVEL;
const parts = process.argv.slice(2).length ? process.argv.slice(2) : ['crash', 'relay', 'fuzz'];
const int = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const randomSeed = () => crypto.randomBytes(4).readUInt32BE() % 1_000_000;

let embedded: EmbeddedDatabase | undefined;
const adminUrl = process.env.DATABASE_URL ?? (embedded = await openEmbedded(path.resolve('.test-data/chaos'))).url;
const clusterDir = embedded ? path.resolve('.test-data/chaos/postgres') : undefined;
let failed = false;

async function admin(sql: string) {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A fresh database on the server, migrated; dropped afterwards (kept after a failure with CHAOS_KEEP_DB=1). */
async function scratch(prefix: string): Promise<{ url: string; drop(failed: boolean): Promise<void> }> {
  const name = `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
  await admin(`create database ${name}`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: u.toString(), max: 1 });
  await migrate(pool).finally(() => pool.end());
  return {
    url: u.toString(),
    async drop(failed) {
      if (failed && process.env.CHAOS_KEEP_DB === '1') console.log(`  (database ${name} kept for inspection)`);
      else await admin(`drop database if exists ${name} with (force)`);
    },
  };
}

try {
  if (parts.includes('crash')) {
    const seed = int('CHAOS_SEED', randomSeed());
    const faults = (process.env.CHAOS_FAULTS ?? ['relay-outage', 'backend-termination', ...(embedded ? ['db-restart'] : [])].join(','))
      .split(',').map((f) => f.trim()).filter((f) => f && f !== 'none') as Fault[];
    const logDir = process.env.CHAOS_LOG_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lk-chaos-'));
    fs.mkdirSync(logDir, { recursive: true });
    const iterations = int('CHAOS_ITERATIONS', 20);
    const lease = process.env.CHAOS_LEASE_SECONDS ? Number(process.env.CHAOS_LEASE_SECONDS) : undefined;
    console.log(`== crash loop: ${iterations} iterations, seed ${seed}, faults ${faults.join(', ') || 'none'}, lease ${lease ?? 'default'}; serve's logs in ${logDir}`);
    const db = await scratch('lk_chaos');
    const report = await runCrashLoop({
      databaseUrl: db.url, adminUrl, iterations, seed, leaseSeconds: lease, batchSize: int('CHAOS_BATCH_SIZE', 20),
      faults, clusterDir, logDir, print: (line) => console.log(`  ${line}`),
    });
    console.log(formatReport(report));
    console.log(`  re-run: CHAOS_SEED=${seed} CHAOS_ITERATIONS=${iterations}${lease ? ` CHAOS_LEASE_SECONDS=${lease}` : ''} CHAOS_FAULTS=${faults.join(',') || 'none'} npm run chaos -- crash`);
    failed ||= report.failures.length > 0;
    await db.drop(report.failures.length > 0);
  }

  if (parts.includes('relay')) {
    console.log('== relay faults: one post to two members through a relay that misbehaves in one way per case');
    const db = await scratch('lk_relay');
    const results = await runRelaySweep({ databaseUrl: db.url, print: (line) => console.log(`  ${line}`) });
    const bad = results.filter((r) => r.problems.length);
    console.log(`relay faults: ${results.length} cases, ${bad.length} failed${bad.length ? `: ${bad.map((r) => r.name).join('; ')}` : ''}`);
    failed ||= bad.length > 0;
    await db.drop(bad.length > 0);
  }

  if (parts.includes('fuzz')) {
    const seed = int('FUZZ_SEED', randomSeed());
    const inputs = int('FUZZ_INPUTS', 2000);
    console.log(`== smtp fuzz: ${inputs} inputs, seed ${seed}`);
    const db = await scratch('lk_fuzz');
    const pool = createPool(db.url, 10, 'fuzz');
    const lists: [string, string] = ['fuzz@lists.example.org', 'fuzz-b@lists.example.org'];
    for (const address of lists) {
      await createList(pool, { address, name: address.split('@')[0], description: 'fuzz', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    }
    const smtp = await startIngest(pool, { databaseUrl: db.url });
    const web = await startWeb({ pool, readPool: pool, url: db.url, close: () => pool.end() });
    try {
      const report = await runFuzz({ port: smtp.port, pool, webUrl: web.url, inputs, seed, lists, print: (line) => console.log(`  ${line}`) });
      console.log(formatFuzzReport(report));
      console.log(`  re-run: FUZZ_SEED=${seed} FUZZ_INPUTS=${inputs} npm run chaos -- fuzz`);
      failed ||= report.failures.length > 0;
    } finally {
      await web.stop();
      await smtp.stop();
      await pool.end();
    }
    await db.drop(failed);
  }
} finally {
  await embedded?.release();
}
process.exit(failed ? 1 : 0);
