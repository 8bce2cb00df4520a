import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { queueStats, type ClaimedRow } from '../src/db/outbox.ts';
import { DatabaseClock } from '../src/db/database-clock.ts';
import { CopyCache } from '../src/delivery/copies.ts';
import { log } from '../src/log.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { loggedIn } from './helpers/browser.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { postTo, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb } from './helpers/web.ts';
import { spawnWorker, until, type WorkerProcess } from './helpers/worker-process.ts';

/**
 * Worker liveness that PostgreSQL knows at once: each worker holds a
 * session advisory lock for its life; rows of a worker whose lock is gone are sent again at once,
 * not after its lease; the lock survives the loss of its connection; `queue` and the dashboard
 * show dead workers as stale.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let relay: CaptureRelay;
let worker: DeliveryWorker | undefined;
const procs: WorkerProcess[] = [];

async function listWith(local: string, members: number): Promise<ListRow> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await db.pool.query(
    `insert into members (list_id, email, mode) select $1, 'm' || g || '@' || $3 || (g % 4) || '.example', 'each' from generate_series(1, $2::int) g`,
    [list.id, members, local],
  );
  return list;
}

const post = (local: string, id: string) => postTo(smtp.port, local, id);

async function states(id: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ state: string; n: number }>(
    `select o.state, count(*)::int as n from outbox o join messages m on m.id = o.message_id where m.message_id = $1 group by o.state`, [id]);
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

const env = () => ({ DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' });

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  relay = await startCaptureRelay();
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  for (const p of procs.splice(0)) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  relay.setDelay(0);
});

afterAll(async () => {
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('after kill -9', () => {
  it("resends the dead worker's copies at once on restart, long before its lease, and shows it stale meanwhile", async () => {
    const MEMBERS = 200;
    const BATCH = 40;
    await listWith('crash', MEMBERS);
    relay.setDelay(20);
    // A lease of ten minutes: only the lock can explain a resend within the test's seconds.
    const workerEnv = { ...env(), RELAY_URL: relay.url, DELIVERY_LEASE_SECONDS: '600', DELIVERY_BATCH_SIZE: String(BATCH), DELIVERY_CONNECTIONS: '4' };
    const first = await spawnWorker(workerEnv);
    procs.push(first);
    await post('crash', 'crash-1@example.org');
    await relay.waitFor(BATCH, 30_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const inFlight = (await states('crash-1@example.org')).sending ?? 0;
    expect(inFlight).toBeGreaterThan(0);
    const delivered = relay.messages.length;
    expect(delivered).toBeLessThan(MEMBERS);

    // Its heartbeat is seconds old (judged by its own lease of 600 s, whatever the CLI's config
    // says), but PostgreSQL already knows it is gone.
    const q = await cli(['queue', '--json'], env());
    expect(q.code, q.stderr).toBe(0);
    const dead = JSON.parse(q.stdout).workers.find((w: { pid: number }) => w.pid === first.child.pid);
    expect(dead).toMatchObject({ stale: true });
    const text = await cli(['queue'], env());
    expect(text.stdout).toMatch(new RegExp(`:${first.child.pid}:\\w+ \\(stale: last heartbeat `));

    relay.setDelay(0);
    const second = await spawnWorker(workerEnv);
    procs.push(second);
    await until(async () => (await states('crash-1@example.org')).sent === MEMBERS && true, 'every copy after the restart', 30_000);

    const counts = new Map<string, number>();
    for (const m of relay.messages) counts.set(m.to, (counts.get(m.to) ?? 0) + 1);
    expect(counts.size).toBe(MEMBERS);
    expect([...counts.values()].every((n) => n <= 2)).toBe(true);
    expect([...counts.values()].filter((n) => n === 2).length).toBeLessThanOrEqual(BATCH);
    // Everything went out while the dead worker's heartbeat was still within its lease.
    const { rows } = await db.pool.query<{ within: boolean }>(
      `select heartbeat_at > now() - interval '600 seconds' as within from delivery_workers where pid = $1`, [first.child.pid]);
    expect(rows).toEqual([{ within: true }]);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    // Two workers and two CLI runs start here: on a loaded machine each start alone takes seconds.
  }, 90_000);
});

describe('the lock connection', () => {
  const lockBackend = async (w: DeliveryWorker) => {
    const { rows } = await db.pool.query<{ pid: number }>(
      `select l.pid from pg_locks l where l.locktype = 'advisory' and l.classid = 7284 and l.objid = $1::int::oid and l.objsubid = 2 and l.granted
          and l.database = (select oid from pg_database where datname = current_database())`, [w.lockKey]);
    return rows[0]?.pid;
  };

  it('survives the termination of its backend: the worker takes its lock again and goes on delivering', async () => {
    await listWith('term', 3);
    worker = await startWorker(db, workerConfig(relay));
    const before = await lockBackend(worker);
    expect(before).toBeGreaterThan(0);
    await db.pool.query('select pg_terminate_backend($1)', [before]);
    await until(async () => { const pid = await lockBackend(worker!); return pid !== undefined && pid !== before && worker!.holdsLock; }, 'the lock taken again on a new connection');
    await post('term', 'term-1@example.org');
    await until(async () => (await states('term-1@example.org')).sent === 3, 'the copies after the reconnection');
    const stats = await queueStats(db.pool, 2);
    expect(stats.workers.find((w) => w.name === worker!.name)).toMatchObject({ stale: false });
  });

  it('gives back the rows it claimed when reading their posts fails, and sends them on the next round', async () => {
    await listWith('prepfault', 3);
    const original = db.pool.query.bind(db.pool);
    let failures = 0;
    // The statement that reads the posts' bytes just after the claim loses its connection, once.
    (db.pool as { query: unknown }).query = (...args: Parameters<typeof original>) => {
      if (failures === 0 && typeof args[0] === 'string' && args[0].includes('from messages where id = any')) {
        failures++;
        return Promise.reject(new Error('Connection terminated unexpectedly'));
      }
      return original(...args);
    };
    try {
      worker = await startWorker(db, workerConfig(relay));
      await post('prepfault', 'prepfault-1@example.org');
      // Live, with its lock and a fresh heartbeat: no reclaim hands them back, the worker must.
      await until(async () => (await states('prepfault-1@example.org')).sent === 3, 'the copies after the failed round', 10_000);
    } finally {
      (db.pool as { query: unknown }).query = original;
    }
    expect(failures).toBe(1);
  });

  it('defers, never fails for good, a copy whose post another lane dropped from the cache before it was read', async () => {
    // Another batch's prepare() evicts a failed read before this row reads it: no entry is not
    // "the post is gone" (which fails the copy for good), it is a read to do again.
    const cache = new CopyCache('http://lists.example.org', log, new DatabaseClock());
    (cache as unknown as { prepare: () => Promise<void> }).prepare = async () => undefined;
    const row: ClaimedRow = { id: 1, kind: 'post', list_id: 1, message_id: 1, mail_id: null, member_id: null, member_token: null, recipient: 'a@x.example', domain: 'x.example', envelope_from: 'b@lists.example.org', attempts: 1, created_at: new Date() };
    await expect(cache.copy(db.pool, row)).rejects.toThrow(/not read for its copy/);
  });

  it('defers the copies of a post whose copy cannot be built, and builds it again for their retry', async () => {
    const list = await listWith('buildfault', 3);
    await db.pool.query(`update lists set dmarc_mitigation = 'munge_from' where id = $1`, [list.id]);
    const original = db.pool.query.bind(db.pool);
    let failures = 0;
    // The post's own preparation (its DMARC decision) fails, once: its rows wait, nobody else's.
    (db.pool as { query: unknown }).query = (...args: Parameters<typeof original>) => {
      if (failures === 0 && typeof args[0] === 'string' && args[0].includes('from dmarc_policies')) {
        failures++;
        return Promise.reject(new Error('Connection terminated unexpectedly'));
      }
      return original(...args);
    };
    try {
      worker = await startWorker(db, workerConfig(relay));
      await post('buildfault', 'buildfault-1@example.org');
      await until(async () => (await states('buildfault-1@example.org')).sent === 3, 'the copies after their deferral', 15_000);
    } finally {
      (db.pool as { query: unknown }).query = original;
    }
    expect(failures).toBe(1);
    const { rows } = await db.pool.query<{ attempts: number }>(
      `select o.attempts from outbox o join messages m on m.id = o.message_id where m.message_id = 'buildfault-1@example.org'`);
    // One deferral each, then the send: the rows went through the retry, not back with the batch.
    expect(rows.map((r) => r.attempts)).toEqual([2, 2, 2]);
  });

  it('claims nothing while another session holds its lock, and delivers once it has it back', async () => {
    await listWith('nolock', 2);
    worker = await startWorker(db, workerConfig(relay));
    const backend = await lockBackend(worker);
    // The test's own session takes the key as the worker's backend goes, before the worker reconnects.
    const thief = new pg.Client({ connectionString: db.url });
    await thief.connect();
    try {
      await thief.query('select pg_terminate_backend($1), pg_advisory_lock(7284, $2)', [backend, worker.lockKey]);
      await until(() => !worker!.holdsLock, 'the worker to notice');
      await post('nolock', 'nolock-1@example.org');
      // Ten polling rounds of the worker, and a reconnection attempt or two.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(await states('nolock-1@example.org')).toEqual({ queued: 2 });
    } finally {
      await thief.end();
    }
    await until(() => worker!.holdsLock, 'the worker to take its lock back', 30_000);
    await until(async () => (await states('nolock-1@example.org')).sent === 2, 'the copies once the lock is back');
  });
});

describe('the dashboard', () => {
  it('shows a worker whose lock is gone as stale, and a running one as live', async () => {
    worker = await startWorker(db, workerConfig(relay));
    await db.pool.query(`insert into delivery_workers (name, host, pid, lock_key) values ('ghost:1:abc', 'ghost', 1, 2000000000)`);
    const web = await startWeb(db);
    try {
      const admin = await loggedIn(db, web.url, 'admin@example.org', { siteAdmin: true });
      const page = (await admin.get('/admin/dashboard')).text;
      expect(page).toMatch(/<td data-label="Worker">ghost:1:abc<\/td><td data-label="State"><strong>stale<\/strong><\/td>/);
      expect(page).toContain(`<td data-label="Worker">${worker.name}</td><td data-label="State">live</td>`);
    } finally {
      await web.stop();
      await db.pool.query(`delete from delivery_workers where name = 'ghost:1:abc'`);
    }
  });
});
