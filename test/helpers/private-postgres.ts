/*
 * Private PostgreSQL servers for tests that need a server of their own (TLS only, a primary and its
 * streaming standby), built with the machine's PostgreSQL binaries (/usr/lib/postgresql/N/bin) in
 * a temporary folder, on free loopback ports. Never the machine's shared server. When we are root
 * the server runs as the `postgres` user (initdb refuses root), so the folder is made traversable.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export const PG_BIN = fs.existsSync('/usr/lib/postgresql')
  ? fs.readdirSync('/usr/lib/postgresql').sort().reverse().map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(`${d}/initdb`))
  : undefined;

/** Runs a PostgreSQL program as the postgres user when we are root; throws with its output on failure. */
export function pgRun(program: string, args: string[]): string {
  if (!PG_BIN) throw new Error('these tests need the machine PostgreSQL binaries (/usr/lib/postgresql/*/bin)');
  const asRoot = process.getuid?.() === 0;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  const r = spawnSync(path.join(PG_BIN, program), args, { encoding: 'utf8', ...(asRoot ? { uid: id('-u'), gid: id('-g') } : {}), env: { ...process.env, LC_ALL: 'C' } });
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** A folder for clusters that the server's user can enter. */
export function clusterRoot(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o777);
  return dir;
}

export class PrivatePostgres {
  constructor(
    readonly dir: string,
    readonly port: number,
    /** extra `-c` options and listen addresses given at every start */
    private listen = '127.0.0.1',
  ) {}

  /** initdb with trust authentication over TCP (pg_hba.conf may be rewritten before start). */
  static async create(dir: string, opts: { conf?: string; hba?: string; listen?: string } = {}): Promise<PrivatePostgres> {
    pgRun('initdb', ['-D', dir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync']);
    fs.appendFileSync(path.join(dir, 'postgresql.conf'), `\nfsync = off\n${opts.conf ?? ''}\n`);
    fs.writeFileSync(path.join(dir, 'pg_hba.conf'), opts.hba ?? 'host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n');
    return new PrivatePostgres(dir, await freePort(), opts.listen);
  }

  /** A streaming standby of `primary` (pg_basebackup -R), not started. */
  static async standbyOf(primary: PrivatePostgres, dir: string): Promise<PrivatePostgres> {
    pgRun('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', dir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
    return new PrivatePostgres(dir, await freePort());
  }

  /** A file in the data folder, owned by the server's user (a key: mode 600). */
  writeFile(name: string, content: string, mode = 0o644) {
    const file = path.join(this.dir, name);
    fs.writeFileSync(file, content, { mode });
    const owner = fs.statSync(path.join(this.dir, 'PG_VERSION'));
    fs.chownSync(file, owner.uid, owner.gid);
  }

  start() {
    pgRun('pg_ctl', ['start', '-w', '-t', '60', '-D', this.dir, '-l', path.join(this.dir, 'server.log'), '-o', `-p ${this.port} -c listen_addresses=${this.listen} -c unix_socket_directories=''`]);
  }

  /** mode immediate: as if the machine went away (no shutdown checkpoint). */
  stop(mode: 'fast' | 'immediate' = 'fast') {
    if (fs.existsSync(path.join(this.dir, 'postmaster.pid'))) pgRun('pg_ctl', ['stop', '-m', mode, '-w', '-t', '60', '-D', this.dir]);
  }

  url(database: string, host = '127.0.0.1', params = ''): string {
    return `postgres://postgres@${host}:${this.port}/${database}${params ? `?${params}` : ''}`;
  }

  /** One statement on a connection of its own. */
  async query<T>(sql: string, database = 'lk'): Promise<T[]> {
    const c = new pg.Client({ connectionString: this.url(database) });
    await c.connect();
    try {
      return (await c.query(sql)).rows as T[];
    } finally {
      await c.end();
    }
  }
}

/**
 * A primary with database `lk` and its streaming standby (started), in a folder of their own;
 * `remove()` stops both as a machine failure would and deletes the folder.
 */
export async function primaryWithStandby(prefix: string): Promise<{ primary: PrivatePostgres; standby: PrivatePostgres; remove(): void }> {
  const dir = clusterRoot(prefix);
  const primary = await PrivatePostgres.create(path.join(dir, 'primary'));
  primary.start();
  await primary.query('create database lk', 'postgres');
  const standby = await PrivatePostgres.standbyOf(primary, path.join(dir, 'standby'));
  standby.start();
  return {
    primary,
    standby,
    remove() {
      for (const s of [standby, primary]) {
        try {
          s.stop('immediate');
        } catch {
          // already stopped (a test promoted or stopped it)
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
