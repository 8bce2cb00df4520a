/*
 * `listkeeper doctor` (docs/operations.md): checks a deployment and says, for each finding, how to
 * fix it. One function per check here (database, settings, disk, queue), DNS records in
 * doctor-dns.ts and certificates in doctor-certificates.ts. Every network wait has a deadline,
 * so a stuck database or resolver is a finding, not a hang. Nothing is changed.
 */

import fs from 'node:fs/promises';
import type pg from 'pg';
import type { Config } from '../config.ts';
import { within } from '../deadline.ts';
import { advisoryLockCap } from '../db/group-commit.ts';
import { allLists, type ListRow } from '../db/lists.ts';
import { migrationState, newerSchema } from '../db/migrate.ts';
import { conversionProgress, type ConversionRow } from '../db/conversions.ts';
import { queueStats } from '../db/outbox.ts';
import { givenUpRefusals } from '../db/outbox-refusals.ts';
import { purgeQueueStats } from '../db/purges.ts';
import { OLDEST_SUPPORTED_MAJOR, serverSettings, versionRefusal, type ServerSettings } from '../db/server-settings.ts';
import { upgradeInProgress, upgradeMarkerFile } from '../db/upgrade-marker.ts';
import { redactSecrets } from '../log.ts';
import { MAX_REFERENCES } from '../mail/message-id.ts';
import { certificateFindings } from './doctor-certificates.ts';
import { dnsFindings } from './doctor-dns.ts';
import { embeddedBuffersFinding } from './doctor-buffers.ts';
import { fail, ok, QUERY_MS, warn, type Finding } from './doctor-findings.ts';

export { QUERY_MS, type Finding, type Status } from './doctor-findings.ts';
export { sharedBuffersFinding } from './doctor-buffers.ts';

/** The oldest PostgreSQL major listkeeper supports (README). */
const GIB = 1024 ** 3;
/** The queue's oldest waiting row is worth a look past this age. */
const QUEUE_WARN_HOURS = 1;
const SCHEMA_FIX = 'run "listkeeper migrate" if migrations are pending, else check the database connection';

/** Every check, in a fixed order: the database and its settings, DNS, certificates, disk, queue. */
export async function runDoctor(pool: pg.Pool, cfg: Config): Promise<Finding[]> {
  const [database, certificates, disk] = await Promise.all([databaseFindings(pool, cfg), certificateFindings(cfg), diskFinding(cfg.dataDir)]);
  return [...database, ...certificates, disk];
}

async function databaseFindings(pool: pg.Pool, cfg: Config): Promise<Finding[]> {
  let settings: ServerSettings;
  try {
    settings = await within(serverSettings(pool, QUERY_MS), QUERY_MS, 'the database');
  } catch (err) {
    return [
      fail('database', `cannot reach the database: ${(err as Error).message}`, cfg.databaseUrl
        ? 'check that PostgreSQL runs and that DATABASE_URL names it (host, port, user, password, database)'
        : `check the embedded PostgreSQL in ${cfg.dataDir}/postgres (its server.log says why it does not answer)`),
      await upgradeFinding(cfg.dataDir),
    ];
  }
  const [migrations, upgrade, lists, queue, refusals, purges, conversions, buffers] = await Promise.all([
    migrationsFinding(pool), upgradeFinding(cfg.dataDir), listFindings(pool, cfg), queueFinding(pool, cfg), refusalsFinding(pool, cfg), purgesFinding(pool, cfg), conversionsFindings(pool),
    cfg.databaseUrl ? undefined : embeddedBuffersFinding(pool, cfg.dataDir),
  ]);
  return [
    versionFinding(settings), migrations, upgrade, synchronousCommitFinding(settings), lockTableFinding(settings), ...(buffers ? [buffers] : []),
    ...lists, queue, refusals, ...purges, ...conversions,
  ];
}

/** The DNS records of the lists' domains and keys (a database not migrated yet has no lists to read). */
async function listFindings(pool: pg.Pool, cfg: Config): Promise<Finding[]> {
  let lists: ListRow[];
  try {
    lists = await within(allLists(pool), QUERY_MS, 'the lists query');
  } catch (err) {
    return [fail('dns', `cannot read the lists to check their DNS records: ${(err as Error).message}`, SCHEMA_FIX)];
  }
  return dnsFindings(lists, cfg);
}

function versionFinding(s: ServerSettings): Finding {
  const refusal = versionRefusal(s.versionNum, s.version);
  if (refusal) return fail('database', refusal, `upgrade the server to PostgreSQL ${OLDEST_SUPPORTED_MAJOR} or later`);
  return ok('database', `PostgreSQL ${s.version}`);
}

async function migrationsFinding(pool: pg.Pool): Promise<Finding> {
  try {
    const { pending, newer } = await within(migrationState(pool, QUERY_MS), QUERY_MS, 'the migrations query');
    if (pending.length === 0 && newer.length > 0) {
      return warn('migrations', newerSchema(newer), 'upgrade this instance to the release that migrated the database (it runs on the newer schema only during a rolling upgrade)');
    }
    if (pending.length === 0) return ok('migrations', 'every migration in sql/ is applied');
    return fail('migrations', `${pending.length} migration(s) not applied: ${pending.join(', ')}`, 'run "listkeeper migrate" (serve applies them at start-up too)');
  } catch (err) {
    return fail('migrations', `cannot read the applied migrations: ${(err as Error).message}`, 'check the database connection');
  }
}

async function upgradeFinding(dataDir: string): Promise<Finding> {
  const marker = await upgradeInProgress(dataDir).catch((err: Error) => `its marker cannot be read: ${err.message}`);
  if (marker === null) return ok('upgrade', 'no PostgreSQL upgrade in progress');
  return fail('upgrade', `a PostgreSQL upgrade is in progress or was interrupted: ${marker}`, `let it finish; if nothing is upgrading, read the upgrade log in ${dataDir}, then remove ${upgradeMarkerFile(dataDir)}`);
}

/**
 * 250 is said only once a post is committed (docs/guarantees.md): with synchronous_commit off a
 * server crash can lose commits already acknowledged. local and the remote_* levels all flush locally.
 */
function synchronousCommitFinding(s: ServerSettings): Finding {
  if (s.synchronousCommit !== 'off') return ok('synchronous_commit', `synchronous_commit is ${s.synchronousCommit}`);
  return fail(
    'synchronous_commit',
    'synchronous_commit is off: a crash of PostgreSQL can lose mail already acknowledged with 250',
    'turn it on: "ALTER SYSTEM SET synchronous_commit = on; SELECT pg_reload_conf();" (or "ALTER DATABASE … RESET synchronous_commit" where it was set)',
  );
}

/**
 * The shared lock table holds max_locks_per_transaction x (max_connections +
 * max_prepared_transactions) locks. The reference cap is what one ingest process's group commit
 * may hold at once (db/group-commit.ts, advisoryLockCap): below it, a burst of posts can meet
 * "out of shared memory"; below twice it, the rest of the server has little room left.
 */
function lockTableFinding(s: ServerSettings): Finding {
  const slots = s.maxConnections + s.maxPreparedTransactions;
  const capacity = s.maxLocksPerTransaction * slots;
  const cap = advisoryLockCap(2 + MAX_REFERENCES);
  const what = `max_locks_per_transaction ${s.maxLocksPerTransaction} x ${slots} connections = ${capacity} locks; listkeeper's group commit may hold ${cap}`;
  const fix = `set max_locks_per_transaction = ${Math.ceil((2 * cap) / slots)} or more in postgresql.conf and restart PostgreSQL`;
  if (capacity < cap) return fail('max_locks_per_transaction', what, fix);
  if (capacity < 2 * cap) return warn('max_locks_per_transaction', `${what}: less than twice that`, fix);
  return ok('max_locks_per_transaction', what);
}

/** The free space where the embedded PostgreSQL keeps its data (DATA_DIR). */
export async function diskFinding(dataDir: string): Promise<Finding> {
  let s: import('node:fs').StatsFs;
  try {
    s = await fs.statfs(dataDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return ok('disk', `DATA_DIR ${dataDir} does not exist (nothing is kept there with an external DATABASE_URL)`);
    return fail('disk', `cannot read the free space of DATA_DIR ${dataDir}: ${code ?? (err as Error).message}`, 'make DATA_DIR a readable directory');
  }
  const free = s.bavail * s.bsize;
  const share = s.blocks > 0 ? s.bavail / s.blocks : 0;
  const what = `DATA_DIR ${dataDir}: ${(free / GIB).toFixed(1)} GiB free (${(share * 100).toFixed(0)}%)`;
  const fix = 'free space there or move DATA_DIR to a larger disk: PostgreSQL stops accepting writes when its disk is full';
  if (free < GIB / 4 || share < 0.02) return fail('disk', what, fix);
  if (free < 2 * GIB || share < 0.1) return warn('disk', what, fix);
  return ok('disk', what);
}

/**
 * The oldest message still waiting for delivery. Older than DELIVERY_GIVE_UP_HOURS, a worker would
 * have given up on it: none is running, or it cannot reach the database.
 */
export async function queueFinding(pool: pg.Pool, cfg: Config): Promise<Finding> {
  let stats;
  try {
    stats = await within(queueStats(pool, cfg.delivery.leaseSeconds), QUERY_MS, 'the queue query');
  } catch (err) {
    return fail('queue', `cannot read the queue: ${(err as Error).message}`, SCHEMA_FIX);
  }
  const live = stats.workers.filter((w) => !w.stale).length;
  const workers = live === 0 ? 'no delivery worker running' : `${live} delivery worker(s) running`;
  if (!stats.oldest) return ok('queue', `nothing waiting; ${workers}`);
  // The age by the database's clock: doctor may run on a machine whose clock is off.
  const hours = stats.oldestSeconds / 3600;
  const what = `the oldest of ${stats.counts.queued + stats.counts.sending} waiting message(s) was queued ${formatAge(hours)} ago (#${stats.oldest.id} to ${stats.oldest.recipient}, ${stats.oldest.attempts} attempt(s)); ${workers}`;
  const start = live === 0 ? 'start a delivery worker ("listkeeper serve --worker"); then ' : '';
  const fix = `${start}run "listkeeper queue": the oldest row's last error says why it waits (a relay that refuses, a domain that does not answer)`;
  if (hours > cfg.delivery.giveUpHours) return fail('queue', `${what}: older than DELIVERY_GIVE_UP_HOURS (${cfg.delivery.giveUpHours})`, fix);
  if (hours > QUEUE_WARN_HOURS || live === 0) return warn('queue', what, fix);
  return ok('queue', what);
}

/**
 * Follow-ups of refused copies (a member's bounce, a probe's disable, a too-big notice) that failed
 * every try and were given up (core/refusals.ts): a warning while any of the last DELIVERY_KEEP_DAYS is kept.
 */
export async function refusalsFinding(pool: pg.Pool, cfg: Config): Promise<Finding> {
  let given;
  try {
    given = await within(givenUpRefusals(pool), QUERY_MS, 'the refusals query');
  } catch (err) {
    return fail('refusals', `cannot read the refusals given up: ${(err as Error).message}`, SCHEMA_FIX);
  }
  if (!given.last) return ok('refusals', 'every refused copy\'s bounce was recorded (none given up)');
  const l = given.last;
  return warn(
    'refusals',
    `${given.count} follow-up(s) of refused copies (a bounce, a probe's disable, a too-big notice) given up in the last ${cfg.delivery.keepDays} day(s) after failing every try; the last, outbox #${l.outbox_id} to ${l.recipient} (${l.follow_up}) at ${l.given_up_at.toISOString()}, after ${l.tries} tries: ${redactSecrets(l.error)}`,
    'the rows are in the table refusals_given_up with their errors; the copies\' results are unchanged, but those bounces did not count: fix what the errors name (docs/delivery.md, "Bounces", says how to have one tried again), then delete the rows',
  );
}

/** Purges waiting longer than this mean the cache in front may be serving pages that old. */
const PURGE_WARN_MINUTES = 10;
/** A conversion no worker has advanced for this long is reported (a batch takes seconds). */
const CONVERSION_STALL_MINUTES = 10;

/** With PURGE_URL: the oldest purge waiting for the cache in front (none without PURGE_URL: nothing to check). */
export async function purgesFinding(pool: pg.Pool, cfg: Config): Promise<Finding[]> {
  if (!cfg.purge.url) return [];
  let stats;
  try {
    stats = await within(purgeQueueStats(pool), QUERY_MS, 'the purge queue query');
  } catch (err) {
    return [fail('purges', `cannot read the purge queue: ${(err as Error).message}`, SCHEMA_FIX)];
  }
  if (!stats.oldest) return [ok('purges', 'nothing waiting for the cache in front')];
  const hours = stats.oldestSeconds / 3600;
  const what = `${stats.keys} key(s) waiting for the cache in front, the oldest (${stats.oldest.key}) for ${formatAge(hours)}, ${stats.oldest.attempts} attempt(s)${stats.oldest.last_error ? `: ${stats.oldest.last_error}` : ''}`;
  if (hours * 60 <= PURGE_WARN_MINUTES) return [ok('purges', what)];
  return [warn('purges', `${what}; the cache may serve pages this old`, 'check that PURGE_URL answers PURGE requests (docs/operations.md, "Behind Varnish") and that a worker runs ("listkeeper serve --worker")')];
}

/**
 * The background conversions (src/core/conversions.ts): one that failed its last batch, or that
 * no worker has advanced for CONVERSION_STALL_MINUTES, is a warning; reads are correct meanwhile.
 */
export async function conversionsFindings(pool: pg.Pool): Promise<Finding[]> {
  let jobs: ConversionRow[];
  try {
    jobs = await within(conversionProgress(pool), QUERY_MS, 'the conversions query');
  } catch (err) {
    return [fail('conversions', `cannot read the background conversions: ${(err as Error).message}`, SCHEMA_FIX)];
  }
  const skipped = jobs.filter((j) => j.last_skipped).map((j) => {
    const last = j.last_skipped!;
    return warn(
      'conversions',
      `conversion ${j.name}${j.done_at ? ' (done)' : ''}: ${j.rows_skipped.toLocaleString('en-US')} row(s) skipped, each having failed alone, not transiently; the last, row ${last.key} at ${last.skipped_at.toISOString()}: ${redactSecrets(last.error)}`,
      'the rows are in the table conversion_skips with their errors and are left as the job found them: fix what the errors name, then have them done again (docs/operations.md, "Conversions in the background")',
    );
  });
  const open = jobs.filter((j) => !j.done_at);
  if (open.length === 0) return skipped.length ? skipped : [ok('conversions', `background conversions: ${jobs.length ? 'all done' : 'none'}`)];
  return [...skipped, ...open.map((j) => {
    const progress = `conversion ${j.name}: ${j.rows_done.toLocaleString('en-US')} row(s) done${j.total_estimate ? ` of about ${j.total_estimate.toLocaleString('en-US')}` : ''}`;
    if (j.error) {
      return warn('conversions', `${progress}; its last batch failed${j.error_at ? ` at ${j.error_at.toISOString()}` : ''}: ${j.error}`, 'the workers try it again every few seconds: fix what the error names ("listkeeper queue" shows the progress)');
    }
    const idleMinutes = j.idle_seconds === null ? null : j.idle_seconds / 60;
    if (idleMinutes === null || idleMinutes > CONVERSION_STALL_MINUTES) {
      return warn('conversions', `${progress}; ${idleMinutes === null ? 'not started' : `no batch for ${formatAge(idleMinutes / 60)}`}`, 'start a delivery worker ("listkeeper serve --worker"): the workers run the conversions');
    }
    return ok('conversions', `${progress}, running (last batch by ${j.locked_by ?? 'a worker'})`);
  })];
}

function formatAge(hours: number): string {
  if (hours < 1) return `${Math.round(hours * 60)} min`;
  if (hours < 48) return `${hours.toFixed(1)} h`;
  return `${(hours / 24).toFixed(1)} days`;
}
