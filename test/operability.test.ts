import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { healthReason } from '../src/core/readiness.ts';
import { createList } from '../src/db/lists.ts';
import { createPool } from '../src/db/pool.ts';
import { upgradeMarkerFile } from '../src/db/upgrade-marker.ts';
import { startServe, type RunningServe } from './helpers/cli.ts';
import { stuckableProxy } from './helpers/db-faults.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw } from './helpers/smtp.ts';
import { startWeb } from './helpers/web.ts';

let db: TestDatabase;
let serve: ChildProcess;
let running: RunningServe;
let smtpPort: number;
let webUrl: string;

beforeAll(async () => {
  db = await testDatabase();
  await createList(db.pool, { address: 'ops@lists.example.org', name: 'ops', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  running = await startServe({ DATABASE_URL: db.url });
  ({ child: serve, smtpPort, webUrl } = running);
}, 60_000);

afterAll(async () => {
  if (serve.exitCode === null) serve.kill('SIGKILL');
  await db?.drop();
});

describe('operating listkeeper serve', () => {
  it('reports health with a database check', async () => {
    const res = await fetch(`${webUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', database: 'ok' });
  });

  it('answers ready when the database answers, every migration is applied and no upgrade runs', async () => {
    const res = await fetch(`${webUrl}/healthz?ready`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { database: 'ok', migrations: 'ok', upgrade: 'ok' } });
  });

  it('logs JSON lines that carry the SMTP session and the Message-ID', async () => {
    const res = await sendRaw(smtpPort, { from: 'a@example.org', to: ['ops@lists.example.org'] }, message({ id: 'logged@example.org' }));
    expect(res.ok).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    const line = running.output().split('\n').find((l) => l.includes('"logged@example.org"'));
    expect(line).toBeDefined();
    const entry = JSON.parse(line!);
    expect(entry.messageId).toBe('logged@example.org');
    expect(typeof entry.session).toBe('string');
    expect(entry.level).toBe(30);
  });

  it('warns at start-up that mailbox providers do not act on one-click unsubscribe while PUBLIC_URL is not https', () => {
    const warning = running.output().split('\n').filter((l) => l.includes('List-Unsubscribe-Post')).map((l) => JSON.parse(l));
    expect(warning).toEqual([expect.objectContaining({ level: 40, publicUrl: expect.stringMatching(/^http:\/\//) })]);
    expect(warning[0].msg).toMatch(/PUBLIC_URL is not https.*RFC 8058 one-click unsubscribe needs an https link/);
  });

  it('exposes Prometheus metrics including ingest counts', async () => {
    // A notice waiting for a worker for a minute and a half (this process runs none).
    await db.pool.query(`with m as (insert into outbound_mail (raw) values ('x') returning id)
      insert into outbox (kind, mail_id, recipient, domain, envelope_from, created_at)
      select 'notice', id, 'r@example.net', 'example.net', 'bounces@lists.example.org', now() - interval '90 seconds' from m`);
    const res = await fetch(`${webUrl}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/listkeeper_smtp_messages_total\{result="accepted"\} [1-9]/);
    expect(text).toContain('process_cpu_seconds_total');
    // The queue's depth, read from the outbox at scrape time.
    const queued = (await db.pool.query(`select count(*)::int as n from outbox where state = 'queued'`)).rows[0].n;
    expect(text).toContain(`listkeeper_outbox_rows{state="queued"} ${queued}`);
    expect(queued).toBeGreaterThan(0);
    expect(Number(/^listkeeper_outbox_oldest_queued_seconds (\S+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(90);
  });

  it('lets no cache keep its answers about itself or the panel\'s pages, and keeps the archive\'s cacheable', async () => {
    for (const p of ['/healthz', '/healthz?ready', '/metrics', '/login', '/login/reset', '/no-such-page']) {
      const res = await fetch(`${webUrl}${p}`);
      await res.arrayBuffer();
      expect(res.headers.get('cache-control'), p).toBe('no-store');
    }
    const page = await fetch(`${webUrl}/message-id/logged@example.org`);
    await page.arrayBuffer();
    expect([page.status, page.headers.get('cache-control')]).toEqual([200, expect.stringMatching(/^public/)]);
  });

  it('logs a change of readiness once, not every probe of a load balancer', async () => {
    const { rows: [last] } = await db.pool.query<{ name: string }>(`select name from schema_migrations order by name desc limit 1`);
    await db.pool.query(`delete from schema_migrations where name = $1`, [last.name]);
    try {
      for (let i = 0; i < 5; i++) expect((await fetch(`${webUrl}/healthz?ready`)).status).toBe(503);
    } finally {
      await db.pool.query(`insert into schema_migrations (name) values ($1)`, [last.name]);
    }
    for (let i = 0; i < 3; i++) expect((await fetch(`${webUrl}/healthz?ready`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    const lines = running.output().split('\n').filter((l) => /"msg":"(not ready|ready again)"/.test(l)).map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.msg, l.checks?.migrations ?? null])).toEqual([['not ready', `1 not applied: ${last.name}`], ['ready again', null]]);
  });

  it('shuts down gracefully on SIGTERM: intake closes and the process exits 0', async () => {
    const exited = new Promise<number | null>((r) => serve.once('exit', (code) => r(code)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(running.output()).toContain('"msg":"stopped"');
    const after = await sendRaw(smtpPort, { from: 'a@example.org', to: ['ops@lists.example.org'] }, message({}));
    expect(after.ok).toBe(false);
  });
});

describe('readiness (/healthz?ready) of a web process whose database fails it', () => {
  let proxy: Awaited<ReturnType<typeof stuckableProxy>>;
  let web: Awaited<ReturnType<typeof startWeb>>;
  let dataDir: string;
  const pools: { end(): Promise<void> }[] = [];

  beforeAll(async () => {
    proxy = await stuckableProxy(db.url);
    const pool = createPool(proxy.url, 4, 'web');
    pools.push(pool);
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-ready-'));
    web = await startWeb({ pool, readPool: pool, url: proxy.url, close: async () => undefined }, { DATA_DIR: dataDir });
  });

  afterAll(async () => {
    await web?.stop();
    await proxy?.close();
    for (const p of pools) await p.end().catch(() => undefined);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const ready = async () => {
    // Longer than any check's deadline: a request that hangs fails here instead of answering.
    const res = await fetch(`${web.url}/healthz?ready`, { signal: AbortSignal.timeout(30_000) });
    return { status: res.status, body: await res.json() };
  };

  it('is not ready while a migration in sql/ is not applied, and names it', async () => {
    const { rows } = await db.pool.query<{ name: string }>(`select name from schema_migrations order by name desc limit 1`);
    await db.pool.query(`delete from schema_migrations where name = $1`, [rows[0].name]);
    try {
      const r = await ready();
      expect(r.status).toBe(503);
      expect(r.body.status).toBe('not ready');
      expect(r.body.checks).toEqual({ database: 'ok', migrations: `1 not applied: ${rows[0].name}`, upgrade: 'ok' });
    } finally {
      await db.pool.query(`insert into schema_migrations (name) values ($1)`, [rows[0].name]);
    }
    expect((await ready()).status).toBe(200);
  });

  it('is not ready while the upgrade marker says a PostgreSQL upgrade runs', async () => {
    fs.writeFileSync(upgradeMarkerFile(dataDir), 'upgrading PostgreSQL 17 to 18\n');
    try {
      const r = await ready();
      expect(r.status).toBe(503);
      expect(r.body.checks.upgrade).toBe('in progress: upgrading PostgreSQL 17 to 18');
      expect(r.body.checks.database).toBe('ok');
    } finally {
      fs.rmSync(upgradeMarkerFile(dataDir));
    }
  });

  it('answers 503 naming the database when the database is stuck, instead of hanging', async () => {
    expect((await ready()).status).toBe(200);
    proxy.freeze();
    const r = await ready();
    expect(r.status).toBe(503);
    expect(r.body.checks.database).toMatch(/^failed: .*did not answer within 2 s|^failed: Query read timeout/);
    expect(r.body.checks.upgrade).toBe('ok');
    // The plain health check, too, answers within its deadline.
    const res = await fetch(`${web.url}/healthz`, { signal: AbortSignal.timeout(30_000) });
    expect(res.status).toBe(503);
    expect((await res.json()).status).toBe('error');
  });

  it('says what kind of failure it is, never the database\'s address (anyone may ask)', async () => {
    const port = new URL(proxy.url).port;
    await proxy.close(); // now refused: "connect ECONNREFUSED 127.0.0.1:PORT" is what pg says
    for (const p of ['/healthz', '/healthz?ready']) {
      let body = '';
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${web.url}${p}`, { signal: AbortSignal.timeout(30_000) });
        expect(res.status, p).toBe(503);
        body = await res.text();
        if (body.includes('cannot reach the database')) break; // past the frozen connections being dropped
      }
      expect(body, p).toContain('cannot reach the database');
      expect(body, p).not.toContain(port);
      expect(body, p).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    }
    expect(healthReason(Object.assign(new Error('getaddrinfo ENOTFOUND db.internal'), { code: 'ENOTFOUND' }))).toBe('cannot reach the database');
    expect(healthReason(Object.assign(new Error('password authentication failed for user "lk"'), { code: '28P01' }))).toBe('the database refused the login');
    expect(healthReason(new Error('relation "x" at db.internal does not exist'))).toBe('an error (see the log)');
  });
});
