import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { archiveMessage } from '../src/db/messages.ts';
import { parse } from '../src/mail/parse.ts';
import { BIN, ROOT, startServe, type RunningServe } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw } from './helpers/smtp.ts';

// `serve --smtp --web` with WEB_PROCESSES=2: two web processes share the port, the primary keeps
// SMTP, replaces a web process that dies and stops them all on SIGTERM.

let db: TestDatabase;
let serve: ChildProcess;
let running: RunningServe;
let smtpPort: number;
let webUrl: string;

beforeAll(async () => {
  db = await testDatabase();
  const list = await createList(db.pool, { address: 'multi@lists.example.org', name: 'multi', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const raw = Buffer.from(message({ id: 'spread@example.org', subject: 'Served by any process' }));
  await archiveMessage(db.pool, list.id, raw, await parse(raw));
  running = await startServe({ DATABASE_URL: db.url, WEB_PROCESSES: '2' });
  ({ child: serve, smtpPort, webUrl } = running);
}, 60_000);

afterAll(async () => {
  if (serve.exitCode === null) serve.kill('SIGKILL');
  await db?.drop();
});

/** Pids of the live listkeeper processes (not tsx's esbuild helper) whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z' && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(BIN)) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** One GET on a fresh connection, so that the primary hands each to the next process. */
function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(`${webUrl}${path}`, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject);
  });
}

async function metric(name: string, label: string): Promise<number> {
  const text = (await get('/metrics')).body;
  return Number(new RegExp(`^${name}\\{${label}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

async function eventually(fn: () => boolean | Promise<boolean>, what: string) {
  for (let i = 0; i < 200; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('serve with WEB_PROCESSES=2', () => {
  it('forks two web processes that both answer on the one port', async () => {
    expect(running.output()).toMatch(/http:\/\/127\.0\.0\.1:\d+\/ .*2 web processes/);
    expect(childrenOf(serve.pid!)).toHaveLength(2);
    for (let i = 0; i < 10; i++) {
      const page = await get('/message-id/spread@example.org');
      expect(page.status).toBe(200);
      expect(page.body).toContain('Served by any process');
    }
  });

  it('adds up every process in /metrics, whichever process answers the scrape', async () => {
    // Each page request is counted by the process that served it (a page-cache hit or miss);
    // connections alternate between the processes, so only a sum across them gives the total.
    const count = async () => (await metric('listkeeper_page_cache_requests_total', 'result="hit"')) + (await metric('listkeeper_page_cache_requests_total', 'result="miss"'));
    const before = await count();
    for (let i = 0; i < 20; i++) expect((await get('/message-id/spread@example.org')).status).toBe(200);
    expect(await count()).toBe(before + 20);
    // Counters of the primary's own roles are in there too: SMTP runs in the primary.
    const sent = await sendRaw(smtpPort, { from: 'a@example.org', to: ['multi@lists.example.org'] }, message({ id: 'counted@example.org' }));
    expect(sent.ok).toBe(true);
    expect(await metric('listkeeper_smtp_messages_total', 'result="accepted"')).toBeGreaterThanOrEqual(1);
    // Gauges every process reads from the database are not multiplied by the number of processes.
    await db.pool.query(`with m as (insert into outbound_mail (raw) values ('x') returning id)
      insert into outbox (kind, mail_id, recipient, domain, envelope_from) select 'notice', id, 'r@example.net', 'example.net', 'bounces@lists.example.org' from m`);
    const queued = (await db.pool.query(`select count(*)::int as n from outbox where state = 'queued'`)).rows[0].n;
    // (Each process reads the depth at most once a second: the scrapes above may still stand.)
    await eventually(async () => (await metric('listkeeper_outbox_rows', 'state="queued"')) === queued, 'the queued gauge');
    expect(queued).toBeGreaterThan(0);
  });

  it('replaces a web process that dies', async () => {
    const [victim] = childrenOf(serve.pid!);
    process.kill(victim, 'SIGKILL');
    await eventually(() => {
      const now = childrenOf(serve.pid!);
      return now.length === 2 && !now.includes(victim);
    }, 'a new web process');
    await eventually(async () => {
      const pages = await Promise.all(Array.from({ length: 6 }, () => get('/message-id/spread@example.org')));
      return pages.every((p) => p.status === 200);
    }, 'both processes answering');
    expect(running.output()).toContain('web process died; starting another');
  });

  it('stops every process on SIGTERM and exits 0', async () => {
    const web = childrenOf(serve.pid!);
    expect(web).toHaveLength(2);
    const exited = new Promise<number | null>((r) => serve.once('exit', (code) => r(code)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of web) expect(fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')).toBe(false);
    await expect(get('/healthz')).rejects.toThrow();
  });
});

describe('serve with WEB_PROCESSES=2 on a port in use', () => {
  it('exits 1 with the reason and leaves no web process behind', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const child = spawn(process.execPath, [BIN, 'serve', '--web'], {
        cwd: ROOT, env: { ...process.env, DATABASE_URL: db.url, WEB_PORT: String(port), WEB_PROCESSES: '2', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (out += d));
      const forked = new Set<number>();
      const watch = setInterval(() => childrenOf(child.pid!).forEach((p) => forked.add(p)), 20);
      const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      clearInterval(watch);
      expect(code).toBe(1);
      expect(out).toMatch(/EADDRINUSE|in use/);
      expect(out).not.toContain('listkeeper is running');
      for (const pid of forked) expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    } finally {
      blocker.close();
    }
    // Three processes start and stop here; a loaded machine takes seconds for each.
  }, 60_000);
});
