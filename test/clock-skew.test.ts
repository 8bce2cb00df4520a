/**
 * Machines whose clocks disagree with the database's (NTP broken, a VM restored from a snapshot):
 * a real `serve --worker` process run under libfaketime (Debian's faketime), hours ahead of or
 * behind the machine that holds PostgreSQL. What other machines compare comes from one clock, the
 * database's (docs/architecture.md, "One clock").
 */

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createApiToken } from '../src/core/api-tokens.ts';
import { conversionsFindings, queueFinding } from '../src/core/doctor.ts';
import { addMember } from '../src/db/members.ts';
import { createList, updateDeliverySettings } from '../src/db/lists.ts';
import { startCaptureRelay, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { testKey } from './helpers/dkimpy.ts';
import { jumpingClock, skewedClock } from './helpers/skewed-clock.ts';
import { message, postTo, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { cli, startServe } from './helpers/cli.ts';
import { spawnWorker, until, type WorkerProcess } from './helpers/worker-process.ts';

let db: TestDatabase;
let smtp: RunningIngest;
let relay: CaptureRelay;
const procs: WorkerProcess[] = [];
const key = testKey();

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  relay = await startCaptureRelay();
});

afterEach(() => {
  vi.useRealTimers();
  relay.setDelay(0);
  for (const p of procs.splice(0)) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
});

afterAll(async () => {
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

async function databaseSeconds(): Promise<number> {
  const { rows } = await db.pool.query<{ s: number }>('select extract(epoch from now())::float8 as s');
  return rows[0].s;
}

/** Every t= in the list's own signature fields (DKIM-Signature d=lists.example.org, the ARC set). */
function listSignatureTimes(raw: Buffer): number[] {
  const fields = raw.toString('latin1').split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/);
  return fields
    .filter((f) => /^(DKIM-Signature:.*\bd=lists\.example\.org|ARC-Seal:|ARC-Message-Signature:)/i.test(f))
    .map((f) => Number(/\bt=(\d+)/.exec(f)?.[1]));
}

describe('a worker whose clock is off the database', () => {
  it.each(['+2h', '-2h', '+5m'])("signs with the database's time, not its own (%s), and says its clock is off", async (offset) => {
    const local = `skew${offset.replace('+', 'ahead').replace('-', 'behind')}`;
    const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, list.id, `m@${local}.example`, 'each');
    await updateDeliverySettings(db.pool, list.id, { dkim_domain: 'lists.example.org', dkim_selector: 'lists', dkim_private_key: key.pem });
    const worker = await spawnWorker({ DATABASE_URL: db.url, RELAY_URL: relay.url, ...skewedClock(offset) });
    procs.push(worker);
    await postTo(smtp.port, local, `${local}-1@example.org`);
    const copy = await relay.copy(`m@${local}.example`, `${local}-1@example.org`);
    const now = await databaseSeconds();
    const times = listSignatureTimes(copy.raw);
    expect(times.length).toBeGreaterThan(0);
    // A receiver such as OpenDKIM refuses a t= more than 5 minutes in its future.
    for (const t of times) expect(Math.abs(t - now)).toBeLessThan(600);
    expect(worker.output()).toContain("this machine's clock is off the database's");
  });
});

describe('a worker whose clock jumps while a copy waits for its final dot', () => {
  it('neither cuts the copy nor withholds its heartbeat: deadlines run on the monotonic clock', async () => {
    const list = await createList(db.pool, { address: 'jump@lists.example.org', name: 'jump', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, list.id, 'm@jump.example', 'each');
    const clock = jumpingClock();
    try {
      // A lease of 3 s: a heartbeat every second, a copy's time 2 s until handed over.
      const worker = await spawnWorker({ DATABASE_URL: db.url, RELAY_URL: relay.url, DELIVERY_LEASE_SECONDS: '3', ...clock.env });
      procs.push(worker);
      relay.setDelay(4_000); // the reply to the final dot, within DELIVERY_DATA_DONE_TIMEOUT_SECONDS
      await postTo(smtp.port, 'jump', 'jump-1@example.org');
      await until(async () => (await db.pool.query(`select 1 from outbox where state = 'sending' and recipient = 'm@jump.example'`)).rowCount === 1, 'the copy in flight');
      await new Promise((r) => setTimeout(r, 1_500)); // the copy built and handed over, its reply awaited
      clock.jump('+1h');
      await relay.copy('m@jump.example', 'jump-1@example.org');
      const state = await until(async () => (await db.pool.query<{ state: string }>(`select state from outbox where recipient = 'm@jump.example' and state <> 'sending'`)).rows[0]?.state, 'the outcome');
      await new Promise((r) => setTimeout(r, 1_500)); // a heartbeat or two after the jump
      expect(state).toBe('sent');
      expect(relay.to('m@jump.example')).toHaveLength(1);
      // The heartbeat's own words for a send it judges stuck ("… is past its deadline"); the
      // start-up's put-back of rows earlier tests left ("… stuck past its deadline …") is not one.
      expect(worker.output()).not.toMatch(/is past its deadline/);
    } finally {
      clock.remove();
    }
  });
});

describe('doctor on a machine whose clock is off the database', () => {
  it.each(['+2h', '-2h'])('judges ages by the database\'s clock (%s): a fresh queue and a running conversion are not flagged', async (offset) => {
    const local = `doctor${offset.replace('+', 'ahead').replace('-', 'behind')}`;
    const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    // One copy queued just now (no worker runs in this test).
    await db.pool.query('delete from outbox');
    await addMember(db.pool, list.id, 'm@doctor.example', 'each');
    await postTo(smtp.port, local, `${local}@example.org`);
    const name = (await db.pool.query<{ name: string }>('select min(name) as name from conversions')).rows[0].name;
    await db.pool.query(`update conversions set done_at = null, started_at = now(), locked_at = now(), locked_by = 'w', error = null where name = $1`, [name]);
    const hours = Number(offset.slice(0, -1));
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + hours * 3_600_000 });
    const queue = await queueFinding(db.pool, workerConfig(relay));
    const conversions = await conversionsFindings(db.pool);
    vi.useRealTimers();
    expect(queue.what).toMatch(/queued (0|1) min ago/);
    expect(queue.status).not.toBe('fail');
    expect(conversions.find((f) => f.what.includes(name))).toMatchObject({ status: 'ok', what: expect.stringContaining('running') });
  });
});

describe('a listener whose clock is off the database', () => {
  it.each([['-2h', 'an expired ban', 'ban', '-1 hour', true], ['+2h', 'a live ban', 'ban', '1 hour', false]] as const)(
    'judges sender rules by the database\'s clock (%s): %s', async (offset, _what, kind, expires, accepted) => {
      const local = `rules${offset.replace('+', 'ahead').replace('-', 'behind')}`;
      const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
      await db.pool.query(`insert into sender_rules (list_id, email, kind, expires_at, created_by) values ($1, 'spammer@example.org', $2, now() + $3::interval, 'test')`, [list.id, kind, expires]);
      const listener = await startServe({ DATABASE_URL: db.url, ...skewedClock(offset) }, ['--smtp', '--web']);
      try {
        const id = `${local}@example.org`;
        await sendRaw(listener.smtpPort, { from: 'spammer@example.org', to: [list.address] }, message({ id, from: 'spammer@example.org', to: list.address, subject: 'Rule test' }));
        const { rowCount } = await db.pool.query('select 1 from messages where message_id = $1', [id]);
        expect(rowCount === 1).toBe(accepted);
      } finally {
        listener.child.kill('SIGKILL');
      }
    });
});

describe('expiry days given on a machine whose clock is off the database', { timeout: 60_000 }, () => {
  /** How far `at` is from the database's now plus `days`, in seconds (0 when it is right). */
  async function offDays(at: string, days: number): Promise<number> {
    return Math.abs(new Date(at).getTime() / 1000 - (await databaseSeconds()) - days * 86_400);
  }

  it.each(['+2h', '-2h'])('a sender rule\'s --days and a token\'s --days on the command line end N days from the database\'s now (%s)', async (offset) => {
    const local = `days${offset.replace('+', 'ahead').replace('-', 'behind')}`;
    await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org', ...skewedClock(offset) };
    const rule = await cli(['rules', local, 'ban', '@spam.example', '--days', '3', '--json'], env);
    expect([rule.code, rule.stderr]).toEqual([0, '']);
    // Within ten minutes of three days from the database's now: two hours off would be 7,200 s.
    expect(await offDays(JSON.parse(rule.stdout).expires_at, 3)).toBeLessThan(600);
    const token = await cli(['token', 'create', '--scope', 'read', '--name', local, '--days', '5', '--json'], env);
    expect([token.code, token.stderr]).toEqual([0, '']);
    expect(await offDays(JSON.parse(token.stdout).expires_at, 5)).toBeLessThan(600);
  });

  it('a rule\'s days given to the REST API of a web process 2 h ahead end N days from the database\'s now, and the audit log says the same', async () => {
    const list = await createList(db.pool, { address: 'apidays@lists.example.org', name: 'apidays', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const { token } = await createApiToken(db.pool, { scope: 'moderate', name: 'skew', actor: 'test' });
    const web = await startServe({ DATABASE_URL: db.url, ...skewedClock('+2h') });
    try {
      const res = await fetch(`${web.webUrl}/api/v1/lists/apidays/rules`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ pattern: 'troll@example.net', kind: 'ban', days: 2 }),
      });
      expect(res.status).toBe(200);
      const body = await res.json();
      expect(await offDays(body.expires_at, 2)).toBeLessThan(600);
      const { rows } = await db.pool.query(`select detail->>'expires' as expires from audit_log where list_id = $1 and action = 'sender.ban'`, [list.id]);
      expect(new Date(rows[0].expires).getTime()).toBe(new Date(body.expires_at).getTime());
    } finally {
      web.child.kill('SIGKILL');
    }
  });
});
