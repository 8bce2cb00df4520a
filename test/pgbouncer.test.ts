/*
 * Through PgBouncer in transaction mode (issue 14, item 6), Debian's 1.18, which knows nothing of
 * prepared statements: DATABASE_URL is PgBouncer (pool_mode = transaction, 3 server connections
 * for many clients, so consecutive statements of one client land on different server connections),
 * DATABASE_DIRECT_URL the server itself, DATABASE_POOL_MODE=transaction. Migrations, the CLI,
 * ingest under concurrent posts, delivery, archive pages and search must all work, with nothing
 * failing on a statement prepared on another connection, and the traffic must really go through
 * PgBouncer (its SHOW STATS).
 */

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaptureRelay, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli, startServe, type RunningServe } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { clusterRoot, freePort } from './helpers/private-postgres.ts';
import { message, sendRaw } from './helpers/smtp.ts';

const PGBOUNCER = '/usr/sbin/pgbouncer';
const LIST = 'dev@lists.example.org';

let db: TestDatabase;
let tmp: string;
let bouncer: ChildProcess | undefined;
let bouncerUrl: string;
let adminUrl: string;
let relay: CaptureRelay;
let serve: RunningServe | undefined;
let env: Record<string, string>;

/** PgBouncer refuses to run as root: then it runs as postgres (the folder is open to it). */
function serverUser(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

beforeAll(async () => {
  if (!fs.existsSync(PGBOUNCER)) throw new Error('this test needs Debian\'s pgbouncer (apt-get install pgbouncer; .ci/run installs it)');
  db = await testDatabase();
  relay = await startCaptureRelay();
  tmp = clusterRoot('lk-pgbouncer-');
  const server = new URL(db.url);
  const port = await freePort();
  fs.writeFileSync(path.join(tmp, 'users.txt'), '"postgres" ""\n');
  fs.writeFileSync(path.join(tmp, 'pgbouncer.ini'), [
    '[databases]',
    // The server's own credentials (the embedded server has a password; the machine's trusts).
    `lk = host=${server.hostname} port=${server.port || 5432} dbname=${server.pathname.slice(1)} user=${decodeURIComponent(server.username || 'postgres')}${server.password ? ` password=${decodeURIComponent(server.password)}` : ''}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1', `listen_port = ${port}`, 'unix_socket_dir =',
    'auth_type = trust', `auth_file = ${path.join(tmp, 'users.txt')}`, 'admin_users = postgres',
    'pool_mode = transaction', 'default_pool_size = 3', 'max_client_conn = 500',
    'ignore_startup_parameters = extra_float_digits', 'stats_period = 1',
    // A server PgBouncer cannot log in to is an error within seconds, not a two-minute wait.
    'query_wait_timeout = 10', 'server_login_retry = 1',
    `logfile = ${path.join(tmp, 'pgbouncer.log')}`, `pidfile = ${path.join(tmp, 'pgbouncer.pid')}`,
    '',
  ].join('\n'));
  bouncer = spawn(PGBOUNCER, [path.join(tmp, 'pgbouncer.ini')], { ...serverUser(), stdio: 'ignore' });
  bouncerUrl = `postgres://postgres@127.0.0.1:${port}/lk`;
  adminUrl = `postgres://postgres@127.0.0.1:${port}/pgbouncer`;
  for (let i = 0; ; i++) {
    const c = new pg.Client({ connectionString: bouncerUrl, connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query('select 1');
      await c.end();
      break;
    } catch (err) {
      await c.end().catch(() => undefined);
      if (i > 50) throw new Error(`PgBouncer does not answer: ${(err as Error).message}; its log: ${fs.readFileSync(path.join(tmp, 'pgbouncer.log'), 'utf8').slice(-2000)}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  env = { DATABASE_URL: bouncerUrl, DATABASE_DIRECT_URL: db.url, DATABASE_POOL_MODE: 'transaction', MAIL_DOMAIN: 'lists.example.org' };
}, 60_000);

afterAll(async () => {
  serve?.child.kill('SIGKILL');
  bouncer?.kill('SIGKILL');
  await relay?.stop();
  await db?.drop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** PgBouncer's own count of transactions it has carried for the lk database. */
async function bouncedTransactions(): Promise<number> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ database: string; total_xact_count: string }>('show stats');
    return Number(rows.find((r) => r.database === 'lk')?.total_xact_count ?? 0);
  } finally {
    await c.end();
  }
}

describe('through PgBouncer in transaction mode', () => {
  it('refuses the mode without a direct URL for what needs a session', async () => {
    const r = await cli(['list', 'ls'], { DATABASE_URL: bouncerUrl, DATABASE_POOL_MODE: 'transaction' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('DATABASE_DIRECT_URL');
  });

  it('migrates and runs the CLI', async () => {
    const migrated = await cli(['migrate'], env);
    expect(migrated.stderr).toBe('');
    expect((await cli(['list', 'create', LIST, '--name', 'Developers', '--post-policy', 'open'], env)).code).toBe(0);
    const sub = await cli(['subscribe', LIST, 'bob@example.org', 'carol@example.org'], env);
    expect(sub.stderr).toBe('');
    const members = await cli(['members', LIST, '--json'], env);
    expect(JSON.parse(members.stdout).map((m: { email: string }) => m.email).sort()).toEqual(['bob@example.org', 'carol@example.org']);
  }, 60_000);

  it('takes posts, delivers them and serves the archive and search under concurrency', async () => {
    const before = await bouncedTransactions();
    serve = await startServe({ ...env, RELAY_URL: relay.url, DELIVERY_POLL_MS: '200', WEB_PROCESSES: '1' }, ['--smtp', '--web', '--worker']);
    const ids = Array.from({ length: 24 }, (_, i) => `bounced-${i}@example.org`);
    const sent = await Promise.all(ids.map((id, i) => sendRaw(serve!.smtpPort, { from: 'alice@example.org', to: [LIST] }, message({ id, to: LIST, subject: `Pooled post number ${i}` }))));
    expect(sent.filter((r) => !r.ok)).toEqual([]);
    await relay.waitFor(ids.length * 2, 30_000);

    const pages = [...ids.map((id) => `/message-id/${id}`), '/lists/dev/', '/search?q=pooled', '/search?q=pooled+number', '/search?q=%22pooled+post%22', '/search?from=alice'];
    const answers = await Promise.all([...pages, ...pages].map(async (p) => {
      const res = await fetch(`${serve!.webUrl}${p}`);
      return { p, status: res.status, html: await res.text() };
    }));
    expect(answers.filter((a) => a.status !== 200).map((a) => `${a.p}: ${a.status}`)).toEqual([]);
    expect(answers.find((a) => a.p === '/search?q=pooled')!.html).toContain('24 messages found');
    expect(serve.output()).not.toMatch(/prepared statement|does not exist|bind message/i);
    // The work went through PgBouncer, not around it (its totals are brought up to date each second).
    await new Promise((r) => setTimeout(r, 1500));
    expect(await bouncedTransactions()).toBeGreaterThan(before + 100);
  }, 90_000);
});
