import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultPoolSize, parseConfig, webPoolSize } from '../src/config.ts';
import { embeddedConnections } from '../src/db/database.ts';
import { clusterDataBytes, sharedBuffersMb } from '../src/db/embedded-settings.ts';
import { sharedBuffersFinding } from '../src/core/doctor.ts';
import { isAlive } from '../src/db/embedded.ts';
import { withFileLock } from '../src/db/file-lock.ts';
import { BIN, cli, ROOT } from './helpers/cli.ts';

/**
 * The embedded default database (DATABASE_URL unset): started on demand in DATA_DIR, shared by
 * `serve` and the CLI, and recovered after the process that started it was killed with -9.
 */
const dataDir = path.join(ROOT, '.test-data', `embedded-${crypto.randomBytes(4).toString('hex')}`);
const env = { DATABASE_URL: undefined, DATABASE_READ_URL: undefined, DATA_DIR: dataDir, MAIL_DOMAIN: 'lists.example.org' };

function postmasterPid(): number | null {
  try {
    return Number(fs.readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return null;
  }
}

const alive = (pid: number | null) => isAlive(pid ?? undefined);

/** Runs fn on a connection to the running embedded server, over its port with its password (DATA_DIR/postgres.secret). */
async function withServer<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const port = fs.readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[3];
  const password = fs.readFileSync(path.join(dataDir, 'postgres.secret'), 'utf8').trim();
  const client = new pg.Client({ connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/listkeeper` });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Settings of the running embedded server. */
async function serverSettings(names: string[]): Promise<Record<string, string>> {
  return withServer(async (client) => {
    const { rows } = await client.query<{ name: string; setting: string }>('select name, current_setting(name) as setting from unnest($1::text[]) as name', [names]);
    return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
  });
}

function startServe(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--smtp'], {
    cwd: ROOT,
    env: { ...process.env, ...env, DATABASE_URL: '', SMTP_PORT: '0', LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => d.toString().includes('listkeeper is running') && resolve(child));
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
}

afterAll(async () => {
  const pid = postmasterPid();
  if (alive(pid)) process.kill(pid!, 'SIGINT');
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('the lock between processes sharing DATA_DIR', () => {
  it('is taken in turns by callers in one process too: the file names the process, not the caller', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-file-lock-'));
    try {
      const order: string[] = [];
      await Promise.all([1, 2, 3].map((i) => withFileLock(path.join(dir, 'postgres.lock'), { waiting: 'waiting' }, async () => {
        order.push(`in ${i}`);
        await new Promise((r) => setTimeout(r, 30));
        order.push(`out ${i}`);
      })));
      expect(order).toEqual(['in 1', 'out 1', 'in 2', 'out 2', 'in 3', 'out 3']);
      expect(fs.existsSync(path.join(dir, 'postgres.lock'))).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is held by one process at a time among processes that take it in a tight loop, and one killed while holding it does not stop the others', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-file-lock-'));
    // Each round inside the lock makes a file only one may have; finding it made is a second holder.
    // The lock file made empty and then written let a waiting process take it for stale: CI saw two
    // commands start and stop the embedded server at once.
    const contender = (rounds: number, dieInside: boolean) => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      import fs from 'node:fs';
      import { withFileLock } from ${JSON.stringify(path.join(ROOT, 'src/db/file-lock.ts'))};
      const dir = ${JSON.stringify(dir)};
      let clashes = 0;
      for (let i = 0; i < ${rounds}; i++) {
        await withFileLock(dir + '/postgres.lock', { waiting: 'waiting', pollMs: 1 }, async () => {
          try { fs.writeFileSync(dir + '/inside', '', { flag: 'wx' }); } catch { clashes++; return; }
          await new Promise((r) => setTimeout(r, Math.random() * 2));
          fs.rmSync(dir + '/inside');
          if (${dieInside}) process.kill(process.pid, 'SIGKILL');
        });
      }
      process.stdout.write(String(clashes));
    `], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const finished = (child: ReturnType<typeof spawn>) => new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.once('close', (code, signal) => resolve({ code, signal, out }));
    });
    try {
      const runs = await Promise.all([
        ...[1, 2, 3, 4].map(() => finished(contender(150, false))),
        finished(contender(1, true)),
      ]);
      expect(runs.map((r) => [r.code, r.signal, r.out])).toEqual([...[1, 2, 3, 4].map(() => [0, null, '0']), [null, 'SIGKILL', '']]);
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('sizes for a small machine', () => {
  it('sizes pools by the cores unless DB_POOL_SIZE says, and the embedded server for the pools', () => {
    expect([1, 2, 4, 8].map(defaultPoolSize)).toEqual([5, 5, 9, 17]);
    expect(parseConfig({}).dbPoolSize).toBe(defaultPoolSize(os.availableParallelism()));
    expect(parseConfig({ DB_POOL_SIZE: '20' }).dbPoolSize).toBe(20);
    // A web-only process (serve --web, each of WEB_PROCESSES) has no group commit: cores + 1.
    expect([1, 2, 4, 8].map(webPoolSize)).toEqual([2, 3, 5, 9]);
    expect(parseConfig({}).webDbPoolSize).toBe(webPoolSize(os.availableParallelism()));
    expect(parseConfig({ DB_POOL_SIZE: '20' }).webDbPoolSize).toBe(20);
    expect(() => parseConfig({ DB_POOL_SIZE: '0' })).toThrow(/DB_POOL_SIZE/);
    // Every process's pool and its dedicated connections fit: serve, its web processes and a CLI command.
    const big = parseConfig({ DB_POOL_SIZE: '40', WEB_PROCESSES: '8' });
    expect(embeddedConnections(big)).toBeGreaterThanOrEqual((8 + 2) * 40);
    expect(embeddedConnections(parseConfig({}))).toBeGreaterThanOrEqual(100);
  });

  it('gives the embedded server shared_buffers by the size of its data: a quarter, from 16 MB up to an eighth of the memory', () => {
    const MB = 1048576;
    const GB = 1024 * MB;
    const on = (memory: number) => (data: number) => sharedBuffersMb(data, memory);
    expect([0, 90 * MB, 129 * MB, 300 * MB, 511 * MB, 5000 * MB, 50 * GB].map(on(24 * GB))).toEqual([16, 24, 40, 80, 128, 1256, 3072]);
    // A small machine keeps most of its memory for listkeeper and the kernel's cache.
    expect([300 * MB, 5000 * MB].map(on(1 * GB))).toEqual([80, 128]);
    expect([300 * MB, 5000 * MB].map(on(64 * MB))).toEqual([16, 16]);
    // The data is what base/ holds (every database, sparse files counted by their size), read before a start.
    const cluster = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-cluster-'));
    try {
      expect(clusterDataBytes(cluster)).toBe(0);
      fs.mkdirSync(path.join(cluster, 'base', '16384'), { recursive: true });
      fs.mkdirSync(path.join(cluster, 'base', '5'));
      fs.writeFileSync(path.join(cluster, 'global.file'), Buffer.alloc(4096)); // outside base/: not counted
      fs.truncateSync((fs.writeFileSync(path.join(cluster, 'base', '16384', '2619'), ''), path.join(cluster, 'base', '16384', '2619')), 300 * MB);
      fs.writeFileSync(path.join(cluster, 'base', '5', '1259'), Buffer.alloc(8192));
      expect(clusterDataBytes(cluster)).toBe(300 * MB + 8192);
      expect(sharedBuffersMb(clusterDataBytes(cluster))).toBe(80);
      // A server started small whose data has grown is told to restart, with the size it would get.
      expect(sharedBuffersFinding(16, 'command line', 300 * MB)).toMatchObject({
        status: 'warn', what: 'shared_buffers 16 MB, chosen for the data when the embedded server started; it holds 300 MB of data now, for which it would choose 80 MB',
        fix: expect.stringMatching(/^restart listkeeper/),
      });
      expect(sharedBuffersFinding(sharedBuffersMb(5000 * MB), 'command line', 5000 * MB).status).toBe('ok');
      expect(sharedBuffersFinding(64, 'command line', 5000 * MB).status).toBe(sharedBuffersMb(5000 * MB) > 64 ? 'warn' : 'ok');
    } finally {
      fs.rmSync(cluster, { recursive: true, force: true });
    }
  });
});

describe('embedded PostgreSQL', () => {
  it.runIf(process.getuid?.() === 0)('as root, says in one sentence when the postgres user cannot reach DATA_DIR', async () => {
    const privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-private-'));
    fs.chmodSync(privateDir, 0o700);
    try {
      const r = await cli(['list', 'ls'], { ...env, DATA_DIR: path.join(privateDir, 'data') });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/runs as the 'postgres' user, which cannot reach .*lk-private-.*chmod o\+x/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      fs.rmSync(privateDir, { recursive: true, force: true });
    }
  });

  it('creates the database on first use and stops it again when the command ends', async () => {
    const r = await cli(['list', 'create', 'dev'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
    expect(alive(postmasterPid())).toBe(false);
  }, 120_000);

  it('lets the CLI work on the same data while serve is running', async () => {
    const serve = await startServe();
    try {
      const pid = postmasterPid();
      expect(alive(pid)).toBe(true);
      const r = await cli(['subscribe', 'dev', 'a@example.com'], env);
      expect(r.code).toBe(0);
      const ls = JSON.parse((await cli(['list', 'ls', '--json'], env)).stdout);
      expect(ls[0]).toMatchObject({ address: 'dev@lists.example.org', members: 1 });
      // The CLI attached to serve's server: it is still the same one, still running.
      expect(postmasterPid()).toBe(pid);
      expect(alive(pid)).toBe(true);
      // It runs with the settings of a small appliance (src/db/embedded.ts), not PostgreSQL's
      // defaults: shared_buffers for a few megabytes of data is the smallest step.
      expect(await serverSettings(['shared_buffers', 'max_connections', 'autovacuum_max_workers'])).toEqual({
        shared_buffers: '16MB', max_connections: String(embeddedConnections(parseConfig(env))), autovacuum_max_workers: '2',
      });
      // doctor says what it chose and for how much data (and would ask for a restart past it).
      const doctor = JSON.parse((await cli(['doctor', '--json'], env)).stdout);
      expect(doctor.findings.filter((f: { check: string }) => f.check === 'shared_buffers')).toEqual([
        { status: 'ok', check: 'shared_buffers', what: expect.stringMatching(/^shared_buffers 16 MB, chosen for the data when the embedded server started; it holds \d+ MB of data now$/), fix: null },
      ]);
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
    expect(alive(postmasterPid())).toBe(false);
  }, 120_000);

  it('says after an import when the data has outgrown the shared_buffers the server started with', async () => {
    const serve = await startServe();
    let ballast: string | undefined;
    const mbox = path.join(dataDir, 'one.mbox');
    try {
      // 300 MB more data in the database's directory, as a start measures it (a sparse file),
      // since the server chose 16 MB for a few megabytes at its start.
      const oid = await withServer(async (client) => (await client.query<{ oid: string }>('select oid::text from pg_database where datname = current_database()')).rows[0].oid);
      ballast = path.join(dataDir, 'postgres', 'base', oid, 'test-ballast');
      fs.writeFileSync(ballast, '');
      fs.truncateSync(ballast, 300 * 1048576);
      fs.writeFileSync(mbox, 'From a@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\nSubject: one\nMessage-ID: <one@example.com>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody\n');
      const r = await cli(['import', 'dev', mbox], env);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/1 messages added/);
      expect(r.stderr).toMatch(/^note: shared_buffers 16 MB, chosen for the data when the embedded server started; it holds 3\d\d MB of data now, for which it would choose [89]\d MB: restart listkeeper/m);
    } finally {
      if (ballast) fs.rmSync(ballast, { force: true });
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
  }, 120_000);

  it('keeps a shared_buffers the operator set with ALTER SYSTEM at the next start', async () => {
    let serve = await startServe();
    try {
      await withServer((client) => client.query(`alter system set shared_buffers = '24MB'`));
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
      serve = await startServe();
      // The rest of its settings are still listkeeper's.
      expect(await serverSettings(['shared_buffers', 'work_mem', 'autovacuum_max_workers'])).toEqual({ shared_buffers: '24MB', work_mem: '4MB', autovacuum_max_workers: '2' });
      const doctor = JSON.parse((await cli(['doctor', '--json'], env)).stdout);
      expect(doctor.findings.find((f: { check: string }) => f.check === 'shared_buffers')).toMatchObject({
        status: 'ok', what: expect.stringMatching(/^shared_buffers 24 MB, set in the server's configuration \(configuration file\); \d+ MB of data$/),
      });
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
  }, 120_000);

  it('says in one line why the server did not start, from its log, and starts once that is mended', async () => {
    const cluster = path.join(dataDir, 'postgres');
    fs.chmodSync(cluster, 0o755);
    try {
      const r = await cli(['list', 'ls'], env);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `listkeeper: error: embedded PostgreSQL failed to start: data directory "${cluster}" has invalid permissions: ` +
          `Permissions should be u=rwx (0700) or u=rwx,g=rx (0750). (see ${path.join(cluster, 'server.log')})\n`,
      );
    } finally {
      fs.chmodSync(cluster, 0o700);
    }
    const r = await cli(['list', 'ls', '--json'], env);
    expect([r.code, r.stderr]).toEqual([0, '']);
  }, 120_000);

  it('says in one line that postgres.secret is missing or wrong, makes no new one, and leaves no server running', async () => {
    const secret = path.join(dataDir, 'postgres.secret');
    const kept = fs.readFileSync(secret);
    try {
      fs.rmSync(secret);
      const missing = await cli(['list', 'ls'], env);
      expect([missing.code, missing.stderr]).toEqual([1, `listkeeper: error: ${secret} is missing, and it holds the password of the cluster in ${path.join(dataDir, 'postgres')}: put it back (from a backup of that folder); nothing was changed\n`]);
      expect(fs.existsSync(secret)).toBe(false);
      fs.writeFileSync(secret, 'not-the-password', { mode: 0o600 });
      const wrong = await cli(['list', 'ls'], env);
      expect([wrong.code, wrong.stderr]).toEqual([1, `listkeeper: error: the password in ${secret} is not the one of the cluster in ${path.join(dataDir, 'postgres')} (was the file replaced?): put back the one made with the cluster\n`]);
      expect(alive(postmasterPid())).toBe(false);
    } finally {
      fs.writeFileSync(secret, kept, { mode: 0o600 });
    }
    expect((await cli(['list', 'ls', '--json'], env)).code).toBe(0);
  }, 120_000);

  it('stops a stale postmaster left by a kill -9 of serve before starting afresh', async () => {
    const serve = await startServe();
    const stale = postmasterPid();
    serve.kill('SIGKILL');
    await new Promise((r) => serve.once('exit', r));
    expect(alive(stale)).toBe(true);
    const r = await cli(['members', 'dev', '--json'], env);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)[0].email).toBe('a@example.com');
    expect(alive(stale)).toBe(false);
    expect(alive(postmasterPid())).toBe(false);
  }, 120_000);

  it('makes the cluster again at the next start when initdb was killed half-way', async () => {
    const fresh = `${dataDir}-initdb`;
    const pgVersion = () => ['postgres', 'postgres.initdb'].some((d) => fs.existsSync(path.join(fresh, d, 'PG_VERSION')));
    // initdb's pid: the process whose command line names this folder.
    const initdb = () => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).find((pid) => {
      try {
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmdline.includes('initdb') && cmdline.includes(`--pgdata=${fresh}`);
      } catch {
        return false;
      }
    });
    try {
      const first = cli(['list', 'ls'], { ...env, DATA_DIR: fresh });
      let pid: number | undefined;
      for (let i = 0; i < 3000 && !(pgVersion() && (pid = initdb())); i++) await new Promise((r) => setTimeout(r, 5));
      expect(pid).toBeDefined();
      process.kill(pid!, 'SIGKILL');
      const r = await first;
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^listkeeper: error: initdb \(PostgreSQL \d+\) failed: ended by SIGKILL\n$/);
      const again = await cli(['list', 'ls', '--json'], { ...env, DATA_DIR: fresh });
      expect([again.code, again.stderr, again.stdout.trim()]).toEqual([0, '', '[]']);
    } finally {
      fs.rmSync(fresh, { recursive: true, force: true });
    }
  }, 120_000);

  it('runs commands started together, on a new DATA_DIR and then on its server, each to the end, and stops the server after the last', async () => {
    const together = `${dataDir}-together`;
    const postmaster = () => {
      try {
        return Number(fs.readFileSync(path.join(together, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
      } catch {
        return undefined;
      }
    };
    try {
      for (const round of ['new', 'made']) {
        const runs = await Promise.all([1, 2, 3, 4].map(() => cli(['list', 'ls', '--json'], { ...env, DATA_DIR: together })));
        expect(runs.map((r) => [round, r.code, r.stderr, r.stdout.trim()])).toEqual(runs.map(() => [round, 0, '', '[]']));
        expect(isAlive(postmaster())).toBe(false);
      }
    } finally {
      const pid = postmaster();
      if (isAlive(pid)) process.kill(pid!, 'SIGKILL');
      fs.rmSync(together, { recursive: true, force: true });
    }
  }, 120_000);

  it('leaves the server running under a serve that attached to it when the process that started it dies, and that serve stops it on exit', async () => {
    const first = await startServe();
    const second = await startServe();
    try {
      const pid = postmasterPid();
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const r = await cli(['members', 'dev', '--json'], env);
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)[0].email).toBe('a@example.com');
      // Still the server the second serve is connected to, and it is using it.
      expect(postmasterPid()).toBe(pid);
      expect(alive(pid)).toBe(true);
      expect(await withServer(async (c) => (await c.query(`select count(*)::int as n from pg_stat_activity where application_name like $1`, [`listkeeper:${second.pid}:%`])).rows[0].n)).toBeGreaterThan(0);
      expect(fs.readFileSync(path.join(dataDir, 'postgres.owner'), 'utf8')).toBe(String(second.pid));
    } finally {
      second.kill('SIGTERM');
      await new Promise((r) => second.once('exit', r));
    }
    // It inherited the server, and stopped it as the last one using it.
    expect(alive(postmasterPid())).toBe(false);
  }, 120_000);

  it.runIf(process.getuid?.() === 0 && fs.existsSync('/usr/bin/setpriv'))('attaches to serve\'s server from a root that cannot read the postgres user\'s /proc/PID/cwd (no CAP_SYS_PTRACE, as in a container)', async () => {
    const serve = await startServe();
    try {
      const pid = postmasterPid();
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn('/usr/bin/setpriv', ['--inh-caps=-sys_ptrace', '--bounding-set=-sys_ptrace', '--', process.execPath, BIN, 'members', 'dev', '--json'], {
          cwd: ROOT,
          env: { ...process.env, ...env, DATABASE_URL: '', LOG_LEVEL: 'warn' },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(JSON.parse(r.stdout)[0].email).toBe('a@example.com');
      // The same server, its postmaster.pid where it was.
      expect(postmasterPid()).toBe(pid);
      expect(alive(pid)).toBe(true);
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
    expect(alive(postmasterPid())).toBe(false);
  }, 120_000);

  it('takes a postmaster.pid whose pid another process now has (after a crash or a reboot) for stale: that process is left alone', async () => {
    const serve = await startServe();
    const cluster = path.join(dataDir, 'postgres');
    const postmaster = postmasterPid()!;
    serve.kill('SIGKILL');
    process.kill(postmaster, 'SIGKILL');
    await new Promise((r) => serve.once('exit', r));
    // Its backends notice and go; the file stays, as after a power cut.
    const inCluster = () => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).some((p) => {
      try {
        return fs.readlinkSync(`/proc/${p}/cwd`) === fs.realpathSync(cluster);
      } catch {
        return false;
      }
    });
    for (let i = 0; i < 100 && inCluster(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(inCluster()).toBe(false);
    // A process of the server's user (postgres under root) that SIGINT would end now has that pid.
    const owner = fs.statSync(cluster);
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { uid: owner.uid, gid: owner.gid, stdio: 'ignore' });
    try {
      const file = path.join(cluster, 'postmaster.pid');
      const lines = fs.readFileSync(file, 'utf8').split('\n');
      lines[0] = String(other.pid);
      fs.writeFileSync(file, lines.join('\n'));
      const started = Date.now();
      const r = await cli(['members', 'dev', '--json'], env);
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)[0].email).toBe('a@example.com');
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(alive(other.pid!)).toBe(true);
      expect(alive(postmasterPid())).toBe(false);
    } finally {
      other.kill('SIGKILL');
    }
  }, 120_000);
});
