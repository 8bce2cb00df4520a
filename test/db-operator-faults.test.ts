import pg from 'pg';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiToken } from '../src/core/api-tokens.ts';
import { createList } from '../src/db/lists.ts';
import { LOCK_TIMEOUT_MS } from '../src/db/pool.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';
import { startCaptureRelay, type CaptureRelay } from './helpers/capture-relay.ts';
import { adminQuery, testDatabase, type TestDatabase } from './helpers/db.ts';
import { indexWaitingForABackup } from './helpers/db-faults.ts';
import { problemLines, spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { message, sendRaw } from './helpers/smtp.ts';

/**
 * Database faults that are not a restart, against the real `serve` (ingest, web, worker): the
 * database made read-only (a standby not promoted, DATABASE_URL on a replica), and an
 * operator's lock held on a table. Each part must answer in time with a temporary refusal (451,
 * 503), keep serving what it can, and carry on once the fault is gone, without exiting.
 */
let db: TestDatabase;
let relay: CaptureRelay;
let serve: ServeProcess;
const address = 'ops@lists.example.org';
let n = 0;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  const list = await createList(db.pool, { address, name: 'ops', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await db.pool.query(`insert into members (list_id, email, mode) values ($1, 'm1@example.net', 'each')`, [list.id]);
  serve = await spawnServe({ roles: ['smtp', 'web', 'worker'], env: { DATABASE_URL: db.url, RELAY_URL: relay.url } });
  expect((await post('first@example.org')).ok).toBe(true);
}, 60_000);

afterAll(async () => {
  await serve?.kill();
  await relay?.stop();
  await db?.drop();
});

function post(id = `op-${n++}-${Date.now()}@example.org`) {
  return sendRaw(serve.smtpPort!, { from: 'alice@example.org', to: [address] }, message({ id, to: address, subject: `post ${id}` }));
}

/** Ends serve's backends, so that its next connections see what the database says now (as a failover does). */
async function reconnectServe(): Promise<void> {
  await db.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name like $1`, [`listkeeper:${serve.pid}:%`]);
}

async function subscribe(web: WebClient, email: string) {
  await web.get('/lists/ops/subscribe');
  return web.post('/lists/ops/subscribe', { email });
}

describe('a database that takes no writes', () => {
  it('keeps the archive readable, answers a write 503 saying so (not 500), a post 451, and takes both again once it is writable', async () => {
    const reader = await loggedIn(db, serve.webUrl!, 'reader@example.net');
    const { token } = await createApiToken(db.pool, { scope: 'admin', name: 'dashboard', actor: 'test' });
    // A session last seen a while ago is touched (a write) on its next page.
    await db.pool.query(`update sessions set last_seen_at = now() - interval '1 hour'`);
    await db.pool.query(`alter database ${db.name} set default_transaction_read_only = on`);
    try {
      await reconnectServe();
      expect((await fetch(`${serve.webUrl}/lists/ops/`)).status).toBe(200);
      expect((await reader.get('/lists/ops/')).status).toBe(200);
      const write = await subscribe(new WebClient(serve.webUrl!), 'new@example.net');
      expect(write.status).toBe(503);
      expect(write.headers.get('retry-after')).toBe('60');
      expect(write.text).toContain('takes no writes');
      // The API counts each request against its token's limit, a write: its reads go on uncounted.
      const authorization = `Bearer ${token}`;
      expect((await fetch(`${serve.webUrl}/api/v1/lists`, { headers: { authorization } })).status).toBe(200);
      const removal = await fetch(`${serve.webUrl}/api/v1/lists/ops/members/m1@example.net`, { method: 'DELETE', headers: { authorization } });
      expect(removal.status).toBe(503);
      expect(((await removal.json()) as { error: string }).error).toBe('read_only');
      const refused = await post();
      expect(refused.responseCode, refused.response).toBe(451);
    } finally {
      await db.pool.query(`alter database ${db.name} reset default_transaction_read_only`);
    }
    await reconnectServe();
    expect((await subscribe(new WebClient(serve.webUrl!), 'new@example.net')).status).toBe(200);
    expect((await post()).ok).toBe(true);
    expect(serve.alive()).toBe(true);
    expect(problemLines(serve.output()).filter((l) => l.msg === 'web request failed')).toEqual([]);
  }, 60_000);
});

describe('serve started on a database that takes no writes', () => {
  it('starts (ingest, web, worker) and serves reads, rather than exit at its first write; delivers once the database takes writes', async () => {
    const other = await testDatabase();
    let started: ServeProcess | undefined;
    try {
      await createList(other.pool, { address, name: 'ops', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
      await other.pool.query(`insert into members (list_id, email, mode) values ((select id from lists), 'late@example.net', 'each')`);
      await other.pool.query(`alter database ${other.name} set default_transaction_read_only = on`);
      started = await spawnServe({ roles: ['smtp', 'web', 'worker'], env: { DATABASE_URL: other.url, RELAY_URL: relay.url } });
      expect((await fetch(`${started.webUrl}/lists/ops/`)).status).toBe(200);
      const postThere = (id: string) => sendRaw(started!.smtpPort!, { from: 'alice@example.org', to: [address] }, message({ id, to: address }));
      expect((await postThere(`ro-start-${n++}@example.org`)).responseCode).toBe(451);

      await other.pool.query(`alter database ${other.name} reset default_transaction_read_only`);
      await other.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name like $1`, [`listkeeper:${started.pid}:%`]);
      const id = `writable-${Date.now()}@example.org`;
      expect((await postThere(id)).ok).toBe(true);
      await expect.poll(() => relay.to('late@example.net').filter((m) => m.raw.includes(`<${id}>`)).length, { timeout: 30_000 }).toBe(1);
      expect(started.alive()).toBe(true);
    } finally {
      await started?.kill();
      await other.drop();
    }
  }, 90_000);
});

describe('a database out of connection slots', () => {
  it('answers pages 503 and posts 451 while no connection can be had, and serves both once slots are free, without exiting', async () => {
    // A superuser passes CONNECTION LIMIT: serve connects as a role of its own.
    const role = `lk_test_${crypto.randomBytes(6).toString('hex')}`;
    const other = await testDatabase();
    let limited: ServeProcess | undefined;
    // With a password: the embedded server asks one of every role over TCP (the machine's trusts all).
    const password = crypto.randomBytes(12).toString('hex');
    await adminQuery(inject('adminDatabaseUrl'), `create role ${role} login password '${password}' in role pg_read_all_data, pg_write_all_data`);
    try {
      await other.pool.query(`grant create on schema public to ${role}`);
      await createList(other.pool, { address, name: 'ops', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
      const url = new URL(other.url);
      url.username = role;
      url.password = password;
      limited = await spawnServe({ roles: ['smtp', 'web', 'worker'], env: { DATABASE_URL: url.toString(), RELAY_URL: relay.url } });
      const postThere = () => sendRaw(limited!.smtpPort!, { from: 'alice@example.org', to: [address] }, message({ id: `slots-${n++}@example.org`, to: address }));
      await other.pool.query(`alter database ${other.name} connection limit 0`);
      await other.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = $1`, [role]);
      const page = await fetch(`${limited.webUrl}/lists/ops/`);
      expect(page.status).toBe(503);
      expect(page.headers.get('retry-after')).toBe('60');
      expect(await page.text()).toContain('unavailable or busy');
      expect((await postThere()).responseCode).toBe(451);

      await other.pool.query(`alter database ${other.name} connection limit -1`);
      expect((await fetch(`${limited.webUrl}/lists/ops/`)).status).toBe(200);
      expect((await postThere()).ok).toBe(true);
      expect(limited.alive()).toBe(true);
      expect(problemLines(limited.output()).filter((l) => l.msg === 'web request failed')).toEqual([]);
    } finally {
      await limited?.kill();
      await other.drop();
      await adminQuery(inject('adminDatabaseUrl'), `drop role if exists ${role}`);
    }
  }, 60_000);
});

describe('a table locked by an operator', () => {
  it('gets a post 451 and a page 503 while LOCK TABLE holds it, rather than holding them until it ends; both are taken after', async () => {
    const operator = new pg.Client({ connectionString: db.url });
    await operator.connect();
    // Held until both have answered, or for 45 s at most: without a deadline they answer only once it ends.
    let held = true;
    await operator.query('begin; lock table messages in access exclusive mode');
    const whileHeld = async <T>(work: Promise<T>) => ({ value: await work, held });
    const answers = Promise.all([
      whileHeld(post()),
      whileHeld(fetch(`${serve.webUrl}/message-id/first@example.org`).then((r) => r.status)),
    ]);
    await Promise.race([answers, new Promise((resolve) => setTimeout(resolve, 45_000))]);
    held = false;
    await operator.query('commit');
    await operator.end();
    const [posted, page] = await answers;
    expect(posted.value.responseCode, posted.value.response).toBe(451);
    expect(posted.held).toBe(true);
    expect(page).toEqual({ value: 503, held: true });

    const after = `after-lock-${Date.now()}@example.org`;
    expect((await post(after)).ok).toBe(true);
    await expect.poll(() => relay.messages.filter((m) => m.raw.includes(`<${after}>`)).length, { timeout: 20_000 }).toBe(1);
    expect(serve.alive()).toBe(true);
  }, 90_000);
});

describe('serve\'s lock timeout', () => {
  it('is not applied to an index a migration builds concurrently: it waits for a backup\'s older transaction past the timeout, and builds once', async () => {
    const other = await testDatabase();
    // 0059's index not built yet, as on a database of the release before it (cli.test.ts).
    const backup = await indexWaitingForABackup(other);
    let started: ServeProcess | undefined;
    try {
      const starting = spawnServe({ roles: ['web'], env: { DATABASE_URL: other.url } });
      await expect.poll(async () => (await other.pool.query(
        `select 1 from pg_stat_activity where application_name like 'listkeeper:%' and wait_event = 'virtualxid' and query like '%create index concurrently%'`)).rowCount, { timeout: 30_000 }).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, LOCK_TIMEOUT_MS + 1000));
      await backup.query('commit');
      started = await starting;
      expect(started.output()).not.toContain('migration waited too long for a lock');
      const { rows } = await other.pool.query<{ valid: boolean }>(`select indisvalid as valid from pg_index where indexrelid = 'messages_by_thread'::regclass`);
      expect(rows).toEqual([{ valid: true }]);
    } finally {
      await backup.end();
      await started?.kill();
      await other.drop();
    }
  }, 90_000);
});
