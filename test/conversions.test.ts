/*
 * Conversion jobs (sql/0056, core/conversions.ts): the message-digests job over 100,000 messages
 * archived "before 0056" (inserted with its trigger off), done by real `serve --worker` processes
 * that are killed with SIGKILL mid-job several times, then finished by two workers at once. Every
 * message ends with the right digest, written exactly once; progress shows in `queue --json`,
 * /metrics and the dashboard; the raw download answers the same Repr-Digest before and after.
 * And the start-up migrations: a lock they cannot get is waited for a bounded time, then retried,
 * then refused with one clear error; a newer release's migration in the table is left alone.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATION_LOCK, migrate } from '../src/db/migrate.ts';
import type { ListRow } from '../src/db/lists.ts';
import { loggedIn } from './helpers/browser.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { spawnWorker, until, type WorkerProcess } from './helpers/worker-process.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

const BULK = 100_000;
let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
const workers: WorkerProcess[] = [];
const early = mail({ id: 'early@example.org', subject: 'Archived before the digests', date: 'Mon, 02 Nov 2026 10:00:00 +0000', body: 'An old message.\n' });
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest();

interface Progress {
  name: string;
  rows_done: number;
  rows_changed: number;
  total_estimate: number | null;
  started_at: string | null;
  done_at: string | null;
  locked_by: string | null;
}

async function progress(): Promise<Progress> {
  const r = await cli(['queue', '--json'], { DATABASE_URL: db.url });
  expect(r.code, r.stderr).toBe(0);
  const job = (JSON.parse(r.stdout) as { conversions: Progress[] }).conversions.find((c) => c.name === 'message-digests');
  expect(job).toBeDefined();
  return job!;
}

async function rowsDone(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`select rows_done::int as n from conversions where name = 'message-digests'`);
  return rows[0].n;
}

const startWorker = async () => {
  const w = await spawnWorker({ DATABASE_URL: db.url, CONVERSION_BATCH_ROWS: '500', CONVERSION_PAUSE_MS: '5' });
  workers.push(w);
  return w;
};

async function rawDigest(): Promise<string | null> {
  const res = await fetch(`${web.url}/message-id/raw/early@example.org`);
  expect(res.status).toBe(200);
  expect(Buffer.from(await res.arrayBuffer()).equals(early)).toBe(true);
  return res.headers.get('repr-digest');
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList(db.pool, 'dev@lists.example.org', 'public', { name: 'Developers' });
  // Archived as a release before sql/0056 archived them: without a digest.
  await db.pool.query('alter table messages disable trigger messages_digests');
  await archive(db.pool, dev, early);
  await db.pool.query(
    `insert into messages (message_id, raw, size, subject, from_email, date, body, thread_id)
     select 'bulk-' || g || '@example.org', r, length(r), 'bulk ' || g, 'bulk@example.org', now() - g * interval '1 minute', 'body ' || g, nextval('thread_ids')
       from generate_series(1, $1::int) g,
            lateral (select convert_to('Message-ID: <bulk-' || g || '@example.org>' || E'\\r\\nSubject: bulk ' || g || E'\\r\\n\\r\\nbody ' || repeat(md5(g::text), 20) || E'\\r\\n', 'UTF8') as r) x`,
    [BULK],
  );
  await db.pool.query('alter table messages enable trigger messages_digests');
  // Every digest the job writes is counted here: a batch done twice would show.
  await db.pool.query(`create table digest_writes (message_id bigint not null)`);
  await db.pool.query(`create function count_digest_writes() returns trigger language plpgsql as $$
    begin insert into digest_writes select message_id from new_rows; return null; end $$`);
  await db.pool.query(`create trigger count_digest_writes after insert on message_digests referencing new table as new_rows
    for each statement execute function count_digest_writes()`);
}, 120_000);

afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  await web?.stop();
  await db?.drop();
});

describe('a conversion job over every message', () => {
  it('waits for a worker, shown as not started, while the raw download computes the digest itself', async () => {
    const p = await progress();
    expect(p).toMatchObject({ rows_done: 0, started_at: null, done_at: null });
    const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from message_digests');
    expect(rows[0].n).toBe(0);
    expect(await rawDigest()).toBe(`sha-256=:${sha256(early).toString('base64')}:`);
  });

  it('survives workers killed with SIGKILL mid-job, then finishes with two workers sharing it', async () => {
    let last = 0;
    for (let round = 0; round < 3; round++) {
      const w = await startWorker();
      const target = last + 15_000;
      last = await until(async () => {
        const n = await rowsDone();
        return n >= target && n;
      }, `the job to pass ${target} rows`, 60_000);
      w.child.kill('SIGKILL');
      await w.exited;
      // Whatever the killed worker's batch had done is gone with it; the cursor is where it committed.
      const after = await rowsDone();
      expect(after).toBeGreaterThanOrEqual(last);
      expect(after).toBeLessThan(BULK);
      last = after;
      if (round === 0) {
        const p = await progress();
        expect(p.started_at).not.toBeNull();
        expect(p.done_at).toBeNull();
        expect(p.total_estimate).toBe(BULK + 1);
        expect(p.rows_done).toBe(after);
        expect(p.locked_by).toContain(String(w.child.pid));
        const metrics = await (await fetch(`${web.url}/metrics`)).text();
        expect(metrics).toContain(`listkeeper_conversion_rows{name="message-digests",kind="done"} ${after}`);
        expect(metrics).toContain(`listkeeper_conversion_rows{name="message-digests",kind="estimate"} ${BULK + 1}`);
        expect(metrics).toContain('listkeeper_conversion_finished{name="message-digests"} 0');
        const admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
        const dash = await admin.get('/admin/dashboard');
        expect(dash.status).toBe(200);
        expect(dash.text).toMatch(new RegExp(`message-digests[\\s\\S]*?Repr-Digest[\\s\\S]*?<progress max="100" value="${Math.floor((100 * after) / (BULK + 1))}"[\\s\\S]*?${after} of ~${BULK + 1}`));
      }
    }
    // Still correct halfway: an old message without its digest yet is served with the computed one.
    expect(await rawDigest()).toBe(`sha-256=:${sha256(early).toString('base64')}:`);

    await Promise.all([startWorker(), startWorker()]);
    await until(async () => (await progress()).done_at !== null, 'the job to finish', 60_000);
  }, 150_000);

  it('has given every message its digest exactly once, and reports itself done', async () => {
    const { rows: [c] } = await db.pool.query<{ messages: number; right: number; writes: number; written: number }>(
      `select (select count(*)::int from messages) as messages,
              (select count(*)::int from messages m join message_digests d on d.message_id = m.id where d.sha256 = sha256(m.raw)) as right,
              (select count(*)::int from digest_writes) as writes,
              (select count(distinct message_id)::int from digest_writes) as written`,
    );
    expect(c).toEqual({ messages: BULK + 1, right: BULK + 1, writes: BULK + 1, written: BULK + 1 });
    const p = await progress();
    expect(p.done_at).not.toBeNull();
    expect(p.rows_done).toBe(BULK + 1);
    expect(p.rows_changed).toBe(BULK + 1);
    const metrics = await (await fetch(`${web.url}/metrics`)).text();
    expect(metrics).toContain('listkeeper_conversion_finished{name="message-digests"} 1');
    const text = await cli(['queue'], { DATABASE_URL: db.url });
    expect(text.stdout).toMatch(/conversion message-digests: done .*, 100001 rows looked at, 100001 changed/);
    // The stored digest now, and the same header as before.
    const { rows } = await db.pool.query<{ sha256: Buffer }>(`select d.sha256 from message_digests d join messages m on m.id = d.message_id where m.message_id = 'early@example.org'`);
    expect(rows[0].sha256.equals(sha256(early))).toBe(true);
    expect(await rawDigest()).toBe(`sha-256=:${sha256(early).toString('base64')}:`);
    const page = await fetch(`${web.url}/lists/dev/`);
    expect(await page.text()).toContain('Archived before the digests');
  });

  it('gives a message archived after the migration its digest as it is inserted, with no job', async () => {
    const raw = mail({ id: 'fresh@example.org', subject: 'New one', date: 'Tue, 03 Nov 2026 10:00:00 +0000' });
    await archive(db.pool, dev, raw);
    const { rows } = await db.pool.query<{ sha256: Buffer }>(`select d.sha256 from message_digests d join messages m on m.id = d.message_id where m.message_id = 'fresh@example.org'`);
    expect(rows[0]?.sha256.equals(sha256(raw))).toBe(true);
  });
});

describe('start-up migrations', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-migrations-'));
  fs.writeFileSync(path.join(dir, '9001_probe.sql'), 'alter table lists add column probe integer;\n');

  async function holdLists(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query('begin');
    await c.query('lock table lists in access share mode');
    return c;
  }
  const applied = async () => (await db.pool.query(`select 1 from schema_migrations where name = '9001_probe.sql'`)).rowCount;

  it('waits a bounded time for a lock a long transaction holds, tries again, then fails naming why, with nothing applied', async () => {
    const holder = await holdLists();
    try {
      const t0 = Date.now();
      await expect(migrate(db.pool, { dir, lockTimeoutMs: 200, attempts: 3 })).rejects.toThrow(
        /migration 9001_probe\.sql failed: could not take its locks within 200 ms, 3 times .*a long transaction holds a table it changes/,
      );
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(await applied()).toBe(0);
    } finally {
      await holder.query('rollback');
      await holder.end();
    }
  });

  it('succeeds on a later attempt once the transaction ends', async () => {
    const holder = await holdLists();
    const release = setTimeout(() => void holder.query('rollback').then(() => holder.end()), 700);
    try {
      expect(await migrate(db.pool, { dir, lockTimeoutMs: 200, attempts: 10 })).toEqual(['9001_probe.sql']);
      expect(await applied()).toBe(1);
    } finally {
      clearTimeout(release);
    }
  });

  it('builds an index concurrently outside a transaction, and builds again an index an interrupted build left invalid', async () => {
    const indexDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-migrations-'));
    fs.writeFileSync(path.join(indexDir, '9002_probe_index.sql'), '-- listkeeper: no transaction\n-- a unique index over a large table, without blocking its writers\ncreate unique index concurrently if not exists probe_unique on probe (v);\n');
    await db.pool.query(`create table probe (id int primary key, v int)`);
    await db.pool.query(`insert into probe select g, g % 1000 from generate_series(1, 2000) g`);
    // The build fails on the duplicates, as a kill mid-build would: the index stays, invalid.
    await expect(migrate(db.pool, { dir: indexDir })).rejects.toThrow(/migration 9002_probe_index\.sql failed: could not create unique index "probe_unique"/);
    const valid = async () => (await db.pool.query<{ valid: boolean }>(`select i.indisvalid as valid from pg_index i where i.indexrelid = 'probe_unique'::regclass`)).rows[0]?.valid;
    expect(await valid()).toBe(false);
    await db.pool.query('delete from probe where id > 1000');
    const one = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      expect(await migrate(one, { dir: indexDir })).toEqual(['9002_probe_index.sql']);
      // The session the migration ran on goes back to the pool without its lock timeout.
      const { rows } = await one.query<{ t: string }>(`select current_setting('lock_timeout') as t`);
      expect(rows[0].t).toBe('0');
    } finally {
      await one.end();
    }
    expect(await valid()).toBe(true);
  });

  it('builds an index concurrently while an older transaction that reads another table runs (a backup): it waits for it rather than fails', async () => {
    const indexDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-migrations-'));
    fs.writeFileSync(path.join(indexDir, '9003_probe_snapshot.sql'), '-- listkeeper: no transaction\ncreate index concurrently if not exists probe_snapshot_v on probe_snapshot (v);\n');
    await db.pool.query(`create table probe_snapshot (id int primary key, v int)`);
    await db.pool.query(`insert into probe_snapshot select g, g from generate_series(1, 1000) g`);
    // As `listkeeper backup` does: one snapshot, held while it reads, here of another table.
    const backup = new pg.Client({ connectionString: db.url });
    await backup.connect();
    await backup.query('begin isolation level repeatable read');
    await backup.query('select count(*) from lists');
    let settled: string | undefined;
    const migrating = migrate(db.pool, { dir: indexDir, lockTimeoutMs: 200, attempts: 2 }).then(
      (applied) => (settled = `applied ${applied.join(', ')}`),
      (err: Error) => (settled = err.message),
    );
    try {
      // Two attempts under the lock timeout would have failed by now.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(settled).toBeUndefined();
    } finally {
      await backup.query('commit');
      await backup.end();
    }
    await migrating;
    expect(settled).toBe('applied 9003_probe_snapshot.sql');
    const { rows } = await db.pool.query<{ valid: boolean }>(`select indisvalid as valid from pg_index where indexrelid = 'probe_snapshot_v'::regclass`);
    expect(rows[0].valid).toBe(true);
  });

  it('waits for another process building an index concurrently without holding the snapshot that build waits for', async () => {
    // The other process: it holds the migration lock and builds an index concurrently, which waits
    // for every transaction with an older snapshot. A waiter inside pg_advisory_lock would be one,
    // and PostgreSQL would end one of the two as a deadlock (as CI saw with two `migrate` at once).
    await db.pool.query(`create table probe_race (id int primary key, v int)`);
    await db.pool.query(`insert into probe_race select g, g from generate_series(1, 1000) g`);
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    await other.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-migrations-'));
    let waiterDone = false;
    const waiter = migrate(db.pool, { dir: emptyDir }).finally(() => (waiterDone = true));
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(waiterDone).toBe(false);
      await other.query('create index concurrently probe_race_v on probe_race (v)');
      expect(waiterDone).toBe(false);
    } finally {
      await other.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      await other.end();
    }
    expect(await waiter).toEqual([]);
    const { rows } = await db.pool.query<{ valid: boolean }>(`select indisvalid as valid from pg_index where indexrelid = 'probe_race_v'::regclass`);
    expect(rows[0].valid).toBe(true);
  });

  it('leaves alone a migration a newer release applied (a rolling upgrade: the older code starts after the newer one migrated)', async () => {
    await db.pool.query(`insert into schema_migrations (name) values ('9999_from_a_newer_release.sql')`);
    expect(await migrate(db.pool)).toEqual([]);
    expect(await migrate(db.pool, { dir })).toEqual([]);
  });
});
