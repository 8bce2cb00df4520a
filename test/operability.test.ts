import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { startServe, type RunningServe } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw } from './helpers/smtp.ts';

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

  it('warns at start-up that copies carry no one-click unsubscribe while PUBLIC_URL is not https', () => {
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

  it('shuts down gracefully on SIGTERM: intake closes and the process exits 0', async () => {
    const exited = new Promise<number | null>((r) => serve.once('exit', (code) => r(code)));
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(running.output()).toContain('"msg":"stopped"');
    const after = await sendRaw(smtpPort, { from: 'a@example.org', to: ['ops@lists.example.org'] }, message({}));
    expect(after.ok).toBe(false);
  });
});
