import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import type { Envelope, SendResult } from '../src/delivery/smtp-pool.ts';
import { deliveries } from '../src/delivery/metrics.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { attemptedRows, outboxRowsOf } from './helpers/outbox-rows.ts';
import { startScriptedRelay, type Script, type ScriptedRelay } from './helpers/scripted-relay.ts';
import { postTo, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { spawnWorker, until, type WorkerProcess } from './helpers/worker-process.ts';
import { DeliveryWorker as Worker } from '../src/delivery/worker.ts';

/**
 * Relay faults: every network wait has a deadline, a relay that cannot be
 * reached or refuses a session defers the copy with a logged reason, a worker that stops making
 * progress gives its rows back, and SIGTERM ends a worker in seconds whatever the relay does.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let relay: ScriptedRelay;
let worker: DeliveryWorker | undefined;
let proc: WorkerProcess | undefined;
const lists = new Map<string, ListRow>();

async function listWith(local: string, members: number): Promise<ListRow> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (let i = 1; i <= members; i++) await addMember(db.pool, list.id, `m${i}@${local}.example`, 'each');
  lists.set(local, list);
  return list;
}

const post = (local: string, id: string) => postTo(smtp.port, local, id);

const rowsOf = (id: string) => outboxRowsOf(db.pool, id);

/** Every row of the post has had its first attempt (or is done). */
const attempted = (id: string) => attemptedRows(db.pool, id);

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  relay = await startScriptedRelay();
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  proc = undefined;
  relay.setScript({});
});

afterAll(async () => {
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('a relay that refuses at each step', () => {
  // What each refusal means for the copy: only the envelope and the message can be refused for
  // good; a relay that will not hold a session says nothing about the copy, which waits.
  const cases: { name: string; script: Script; state: 'queued' | 'failed'; shows: string; bounce: boolean | null }[] = [
    { name: 'greeting 421', script: { replies: { greeting: '421 4.3.2 too busy' } }, state: 'queued', shows: '421', bounce: null },
    { name: 'greeting 554', script: { replies: { greeting: '554 5.3.2 no service here' } }, state: 'queued', shows: '554', bounce: null },
    { name: 'EHLO and HELO 451', script: { replies: { ehlo: '451 4.3.0 try later' } }, state: 'queued', shows: '451', bounce: null },
    { name: 'EHLO and HELO 550', script: { replies: { ehlo: '550 5.7.1 go away' } }, state: 'queued', shows: '550', bounce: null },
    { name: 'MAIL 451', script: { replies: { mail: '451 4.3.0 sender check failed' } }, state: 'queued', shows: '451', bounce: null },
    { name: 'MAIL 550', script: { replies: { mail: '550 5.7.1 sender refused' } }, state: 'failed', shows: '550', bounce: false },
    { name: 'RCPT 450', script: { replies: { rcpt: '450 4.2.1 mailbox busy' } }, state: 'queued', shows: '450', bounce: null },
    { name: 'RCPT 550', script: { replies: { rcpt: '550 5.1.1 no such user' } }, state: 'failed', shows: '550', bounce: true },
    { name: 'DATA 451', script: { replies: { data: '451 4.3.0 not now' } }, state: 'queued', shows: '451', bounce: null },
    { name: 'DATA 554', script: { replies: { data: '554 5.7.1 no mail from you' } }, state: 'failed', shows: '554', bounce: false },
    { name: 'end of message 452', script: { replies: { dot: '452 4.3.1 disk full' } }, state: 'queued', shows: '452', bounce: null },
    { name: 'end of message 554', script: { replies: { dot: '554 5.7.1 spam' } }, state: 'failed', shows: '554', bounce: false },
  ];

  it.each(cases)('$name: the copy is $state with the answer recorded', async ({ name, script, state, shows, bounce }) => {
    const local = `step-${name.replace(/\W+/g, '-').toLowerCase()}`;
    const list = await listWith(local, 1);
    relay.setScript(script);
    worker = await startWorker(db, workerConfig(relay, { DELIVERY_TIMEOUT_SECONDS: '5', DELIVERY_LEASE_SECONDS: '30' }));
    await post(local, `${local}@example.org`);
    const [row] = await attempted(`${local}@example.org`);
    // A refusal is recorded as a bounce (counted only at RCPT TO) right after the row is marked.
    const bounces = async () => (await db.pool.query<{ counted: boolean }>('select counted from bounces where list_id = $1', [list.id])).rows;
    if (bounce !== null) await until(async () => (await bounces()).length > 0, 'the bounce record');
    expect(row.state).toBe(state);
    expect(row.attempts).toBe(1);
    expect(row.locked_by).toBeNull();
    expect(row.last_error).toContain(shows);
    expect(await bounces()).toEqual(bounce === null ? [] : [{ counted: bounce }]);
    expect(relay.delivered.filter((d) => d.to.includes(`m1@${local}.example`))).toEqual([]);
  });
});

describe('a reply with bytes PostgreSQL text cannot hold', () => {
  // A relay's or a subscriber's MX's words are foreign input. A NUL in one made every write of
  // the results fail ("invalid byte sequence for encoding UTF8: 0x00"): the worker kept them and
  // retried them for ever, sending nothing more, while its heartbeat kept its rows from others.
  it.each([
    { step: 'rcpt' as const, reply: '450 4.2.1 mailbox\0busy', state: 'queued', shows: '450 4.2.1 mailbox busy' },
    { step: 'rcpt' as const, reply: '550 5.1.1 no\0such user', state: 'failed', shows: '550 5.1.1 no such user' },
    { step: 'greeting' as const, reply: '421 4.3.2 \0\x01busy', state: 'queued', shows: '421 4.3.2 busy' },
  ])('a $step reply with a NUL is recorded without it, and the worker goes on delivering', async ({ step, reply, state, shows }) => {
    const local = `nul-${step}-${reply.slice(0, 3)}`;
    const list = await listWith(local, 1);
    relay.setScript({ replies: { [step]: reply } });
    worker = await startWorker(db, workerConfig(relay, { DELIVERY_TIMEOUT_SECONDS: '5', DELIVERY_LEASE_SECONDS: '30' }));
    await post(local, `${local}-1@example.org`);
    const [row] = await attempted(`${local}-1@example.org`);
    expect(row.state).toBe(state);
    expect(row.locked_by).toBeNull();
    expect(row.last_error).toContain(shows);
    relay.setScript({});
    await addMember(db.pool, list.id, `m2@${local}.example`, 'each');
    await post(local, `${local}-2@example.org`);
    await until(async () => (await rowsOf(`${local}-2@example.org`)).every((r) => r.state === 'sent'), 'the next post to be delivered');
    expect(relay.delivered.filter((d) => d.raw.includes(`${local}-2@example.org`)).flatMap((d) => d.to).sort()).toEqual([`m1@${local}.example`, `m2@${local}.example`]);
  });
});

describe('a result the database refuses for what its row holds', () => {
  // A check or a trigger that refuses one row's error text (a data error, SQLSTATE class 22 or 23)
  // failed the whole write of the results, on every try: the worker kept them and sent nothing
  // more, for good. Such a row is now recorded with a fixed text; a refusal that even the fixed
  // text meets is not the row's doing, and the results are kept as for any database fault.
  let sink: CaptureRelay;
  const FIXED = '(the reply could not be stored: SQLSTATE 22023)';

  beforeAll(async () => {
    sink = await startCaptureRelay();
  });

  afterAll(async () => {
    await sink?.stop();
  });

  /** A trigger on outbox that refuses, with a data error, the updates of one list's rows that `when` picks. */
  async function refuse(name: string, listId: number, when: string) {
    await db.pool.query(`create function ${name}() returns trigger language plpgsql as $$
      begin raise exception 'refused by the test: %', new.last_error using errcode = '22023'; end $$`);
    await db.pool.query(`create trigger ${name} before update on outbox for each row
      when (new.list_id = ${listId} and ${when}) execute function ${name}()`);
  }

  async function allow(name: string) {
    await db.pool.query(`drop trigger if exists ${name} on outbox`);
    await db.pool.query(`drop function if exists ${name}()`);
  }

  const counted = async (result: string) => (await deliveries.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

  /** How many copies of each post each recipient got, of the posts whose Message-IDs contain `local`. */
  function copiesOf(local: string): Record<string, number> {
    const n: Record<string, number> = {};
    for (const m of sink.messages) {
      const id = /^Message-ID: <([^>]*)>/im.exec(m.raw.toString())?.[1];
      if (id?.includes(local)) n[`${m.to} ${id}`] = (n[`${m.to} ${id}`] ?? 0) + 1;
    }
    return n;
  }

  it('one refused row is recorded with a fixed text, the others with their own, and the worker goes on delivering', async () => {
    const local = 'poisoned';
    const list = await listWith(local, 7);
    const who = (i: number) => `m${i}@${local}.example`;
    await refuse('refuse_marked', list.id, `new.last_error like '%marker-word%'`);
    try {
      const replies: Record<string, { code: number; message: string }> = {
        [who(1)]: { code: 450, message: '4.2.1 mailbox busy' },
        [who(2)]: { code: 450, message: '4.2.1 marker-word in the mailbox' },
        [who(3)]: { code: 451, message: '4.3.0 try again later' },
        [who(4)]: { code: 550, message: '5.1.1 no such user' },
        [who(5)]: { code: 550, message: '5.1.1 marker-word user' },
        [who(6)]: { code: 553, message: '5.1.3 bad address' },
      };
      sink.setRule((address) => replies[address] ?? null);
      const before = { deferred: await counted('deferred'), failed: await counted('failed') };
      worker = await startWorker(db, workerConfig(sink, { DELIVERY_TIMEOUT_SECONDS: '5', DELIVERY_LEASE_SECONDS: '30' }));
      await post(local, `${local}-1@example.org`);
      const rows = await until(async () => {
        const r = await rowsOf(`${local}-1@example.org`);
        return r.every((x) => x.attempts > 0 && x.locked_by === null) && r;
      }, 'every copy of the first post recorded');
      expect(rows.map((r) => [r.recipient, r.state, r.attempts, r.last_error])).toEqual([
        [who(1), 'queued', 1, '450 4.2.1 mailbox busy'],
        [who(2), 'queued', 1, FIXED],
        [who(3), 'queued', 1, '451 4.3.0 try again later'],
        [who(4), 'failed', 1, '550 5.1.1 no such user'],
        [who(5), 'failed', 1, FIXED],
        [who(6), 'failed', 1, '553 5.1.3 bad address'],
        [who(7), 'sent', 1, null],
      ]);
      // Counted once each, as what the relay said; the refused copies' bounces are recorded too.
      await until(async () => (await counted('deferred')) - before.deferred === 3 && (await counted('failed')) - before.failed === 3, 'three deferrals and three failures counted');
      const bounces = await until(async () => {
        const { rows: b } = await db.pool.query<{ recipient: string }>('select recipient from bounces where list_id = $1 order by recipient', [list.id]);
        return b.length === 3 && b.map((x) => x.recipient);
      }, 'a bounce for each refused copy');
      expect(bounces).toEqual([who(4), who(5), who(6)]);

      // Not stalled: the next post goes to everyone (the deferred copies of the first one follow).
      sink.setRule(null);
      await post(local, `${local}-2@example.org`);
      await until(async () => (await rowsOf(`${local}-2@example.org`)).every((r) => r.state === 'sent'), 'the next post delivered');
      await until(async () => (await rowsOf(`${local}-1@example.org`)).every((r) => r.state === 'sent' || r.state === 'failed'), 'the deferred copies of the first post delivered on their retry');
      const copies = copiesOf(local);
      expect(Object.values(copies).every((n) => n === 1), JSON.stringify(copies)).toBe(true);
      expect(Object.keys(copies).filter((k) => k.endsWith(`${local}-2@example.org`))).toHaveLength(7);
      expect(Object.keys(copies).filter((k) => k.endsWith(`${local}-1@example.org`)).sort()).toEqual([1, 2, 3, 7].map((i) => `${who(i)} ${local}-1@example.org`));
    } finally {
      sink.setRule(null);
      await allow('refuse_marked');
    }
  });

  it('a refusal that meets the fixed text too is a fault: the results are kept, nothing more is sent, and they are written once the database takes them', async () => {
    const local = 'refuses-all';
    const list = await listWith(local, 3);
    const who = (i: number) => `m${i}@${local}.example`;
    // Every error text of this list's rows is refused, whatever it says: a broken schema, not a row.
    await refuse('refuse_every_error', list.id, 'new.last_error is not null');
    try {
      sink.setRule((address) => (address === who(1) ? { code: 450, message: '4.2.1 mailbox busy' } : address === who(2) ? { code: 550, message: '5.1.1 no such user' } : null));
      worker = await startWorker(db, workerConfig(sink, { DELIVERY_TIMEOUT_SECONDS: '5', DELIVERY_LEASE_SECONDS: '30' }));
      await post(local, `${local}-1@example.org`);
      await until(() => sink.attempts.has(who(1)) && sink.attempts.has(who(2)) && sink.to(who(3)).length === 1, 'every copy of the first post tried');
      await post(local, `${local}-2@example.org`);
      await new Promise((r) => setTimeout(r, 2_000));
      // Kept by the worker, untouched (the accepted copy's result may have been written before).
      const kept = await rowsOf(`${local}-1@example.org`);
      expect(kept.slice(0, 2).map((r) => [r.recipient, r.state, r.attempts, r.last_error])).toEqual([
        [who(1), 'sending', 0, null],
        [who(2), 'sending', 0, null],
      ]);
      expect((await rowsOf(`${local}-2@example.org`)).every((r) => r.state === 'queued' && r.attempts === 0)).toBe(true);
      expect(Object.keys(copiesOf(`${local}-2`))).toEqual([]);

      sink.setRule(null);
      await allow('refuse_every_error');
      await until(async () => (await rowsOf(`${local}-2@example.org`)).every((r) => r.state === 'sent'), 'the next post delivered once the results are written');
      expect((await rowsOf(`${local}-1@example.org`)).map((r) => [r.recipient, r.state, r.attempts, r.last_error])).toEqual([
        [who(1), 'queued', 1, '450 4.2.1 mailbox busy'],
        [who(2), 'failed', 1, '550 5.1.1 no such user'],
        [who(3), 'sent', 1, null],
      ]);
      const copies = copiesOf(local);
      expect(Object.values(copies).every((n) => n === 1), JSON.stringify(copies)).toBe(true);
    } finally {
      sink.setRule(null);
      await allow('refuse_every_error');
    }
  });
});

describe('deadlines', () => {
  it('a relay that answers every step slowly, within the deadline, gets every copy', async () => {
    await listWith('slow', 3);
    relay.setScript({ delayMs: 300 });
    worker = await startWorker(db, workerConfig(relay, { DELIVERY_TIMEOUT_SECONDS: '5', DELIVERY_LEASE_SECONDS: '30' }));
    await post('slow', 'slow-1@example.org');
    await until(async () => (await rowsOf('slow-1@example.org')).every((r) => r.state === 'sent'), 'the slow relay to take every copy');
    expect(relay.delivered.flatMap((d) => d.to).filter((t) => t.endsWith('@slow.example')).sort()).toEqual(['m1@slow.example', 'm2@slow.example', 'm3@slow.example']);
  });

  const stuck: { name: string; script: Script; env: Record<string, string>; shows: RegExp }[] = [
    { name: 'a relay slower than DELIVERY_TIMEOUT_SECONDS', script: { delayMs: 2_500 }, env: { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_LEASE_SECONDS: '30' }, shows: /ETIMEDOUT/ },
    { name: 'a black hole that accepts TCP and never speaks', script: { stall: 'greeting' }, env: { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_LEASE_SECONDS: '30' }, shows: /ETIMEDOUT: .*opening the session/ },
    { name: 'a relay that never answers the end of the message', script: { stall: 'dot' }, env: { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_DATA_DONE_TIMEOUT_SECONDS: '2', DELIVERY_LEASE_SECONDS: '30' }, shows: /ETIMEDOUT.*may have been delivered/ },
    // Data keeps flowing, so no socket timeout fires: only the deadline of the whole copy ends it.
    { name: 'a relay whose answer to MAIL never ends', script: { trickle: 'mail' }, env: { DELIVERY_TIMEOUT_SECONDS: '1', DELIVERY_LEASE_SECONDS: '3' }, shows: /no result within 2 s/ },
  ];

  it.each(stuck)('$name: the copy is deferred with the reason', async ({ name, script, env, shows }) => {
    const local = `stuck-${name.split(' ').slice(1, 3).join('-')}`;
    await listWith(local, 2);
    relay.setScript(script);
    worker = await startWorker(db, workerConfig(relay, env));
    await post(local, `${local}@example.org`);
    const rows = await attempted(`${local}@example.org`);
    for (const r of rows) {
      expect(r.state).toBe('queued');
      expect(r.last_error).toMatch(shows);
    }
    // Once the relay behaves, the copies go out on their next try.
    relay.setScript({});
    await until(async () => (await rowsOf(`${local}@example.org`)).every((r) => r.state === 'sent'), 'the retried copies', 25_000);
  });
});

describe('a worker that stops making progress', () => {
  it('stops beating its heartbeat, so another worker sends its rows after the lease', async () => {
    await listWith('wedged', 5);
    // A transport whose sends never end: what a lane waiting on a callback that never comes did.
    const pending: (() => void)[] = [];
    const wedged = {
      lanes: 2,
      send: (_d: string, _e: Envelope) => new Promise<SendResult>((resolve) => pending.push(() => resolve({ ok: false, temporary: true, code: null, response: 'ESHUTDOWN', stage: 'CONN', aborted: true }))),
      close: () => undefined,
      abort: () => { for (const p of pending.splice(0)) p(); },
    };
    const cfg = workerConfig(relay, { DELIVERY_LEASE_SECONDS: '2' });
    const stuckWorker = new Worker(db.pool, db.url, cfg, { name: 'wedged-worker', transport: wedged });
    await stuckWorker.start();
    try {
      await post('wedged', 'wedged-1@example.org');
      await until(async () => (await rowsOf('wedged-1@example.org')).every((r) => r.state === 'sending' && r.locked_by === 'wedged-worker'), 'the wedged worker to claim every copy');

      worker = await startWorker(db, workerConfig(relay, { DELIVERY_LEASE_SECONDS: '2' }), 'rescuer');
      await until(async () => (await rowsOf('wedged-1@example.org')).every((r) => r.state === 'sent'), 'the rescuer to send the wedged rows');
      expect(relay.delivered.flatMap((d) => d.to).filter((t) => t.endsWith('@wedged.example')).sort()).toEqual(['m1@wedged.example', 'm2@wedged.example', 'm3@wedged.example', 'm4@wedged.example', 'm5@wedged.example']);
      // The wedged worker still holds its lock: it was its heartbeat that stopped.
      const { rows: [after] } = await db.pool.query<{ stale: boolean }>(
        `select heartbeat_at < now() - interval '2 seconds' as stale from delivery_workers where name = 'wedged-worker'`);
      expect(after.stale).toBe(true);
      expect(stuckWorker.holdsLock).toBe(true);
    } finally {
      await stuckWorker.stop();
    }
  });
});

describe('a relay that goes away and comes back (a real serve --worker process)', () => {
  it('defers with a logged reason while the relay is down, then delivers everything, old and new', async () => {
    await listWith('blip', 4);
    await relay.pause();
    try {
      proc = await spawnWorker({ DATABASE_URL: db.url, RELAY_URL: relay.url, DELIVERY_CONNECTIONS: '2', DELIVERY_LEASE_SECONDS: '10' });
      await post('blip', 'blip-1@example.org');
      const rows = await attempted('blip-1@example.org');
      expect(rows.every((r) => r.state === 'queued' && /ECONNREFUSED/.test(r.last_error ?? ''))).toBe(true);
      expect(proc.output()).toMatch(/could not open an SMTP session; copies are deferred.*ECONNREFUSED|ECONNREFUSED.*could not open an SMTP session/);
      // Logged once the deferral is written: the row can be read before the line comes through the pipe.
      await until(async () => proc!.output().includes('delivery deferred'), 'the deferral logged');
    } finally {
      await relay.resume();
    }
    await until(async () => (await rowsOf('blip-1@example.org')).every((r) => r.state === 'sent'), 'the copies held while the relay was down', 25_000);
    await post('blip', 'blip-2@example.org');
    await until(async () => (await rowsOf('blip-2@example.org')).every((r) => r.state === 'sent'), 'a post made after the relay came back');
    const got = relay.delivered.flatMap((d) => d.to).filter((t) => t.endsWith('@blip.example'));
    expect(got.length).toBe(8);
    expect(new Set(got).size).toBe(4);
    // And it still stops on SIGTERM.
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  });
});

describe('SIGTERM', () => {
  it('during start-up, with the delivery worker already running, is held until every role has started, then stops them cleanly', async () => {
    // The purger starts after the delivery worker: hold its first statement with a lock.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table purge_switch in access exclusive mode');
      proc = await spawnWorker({ DATABASE_URL: db.url, RELAY_URL: relay.url });
      await until(async () => (await db.pool.query(`select 1 from pg_locks where relation = 'purge_switch'::regclass and not granted`)).rowCount! > 0, 'the purger waiting for its switch');
      proc.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      expect(proc.child.exitCode).toBeNull();
      expect(proc.child.signalCode).toBeNull();
    } finally {
      await blocker.query('rollback');
      blocker.release();
    }
    expect(await proc.exited).toBe(0);
    expect((await db.pool.query('select name from delivery_workers')).rows).toEqual([]);
  });

  // A copy cut while it waits for the reply to its final dot may have been delivered: it is
  // deferred saying so (docs/delivery.md), not given back as never sent.
  const hangs: { name: string; script: Script; handedOver: number }[] = [
    { name: 'a black hole', script: { stall: 'greeting' }, handedOver: 0 },
    { name: 'a relay stalled after the message', script: { stall: 'dot' }, handedOver: 2 },
  ];

  it.each(hangs)('ends the worker within 10 s against $name, and its claimed rows go back, untouched unless their message went', async ({ name, script, handedOver }) => {
    const local = `term-${name.split(' ').pop()}`;
    await listWith(local, 6);
    relay.setScript(script);
    // Copies earlier tests left to be retried wait until this one is done: it counts on the
    // worker's two lanes being taken by its own copies.
    await db.pool.query(`update outbox set run_at = now() + interval '1 hour' where state = 'queued'`);
    const sessionsBefore = relay.sessions();
    // The default deadlines (30 s per wait): only shutdown itself can end these sends quickly.
    proc = await spawnWorker({ DATABASE_URL: db.url, RELAY_URL: relay.url, DELIVERY_CONNECTIONS: '2' });
    await post(local, `${local}@example.org`);
    // This test's copies only: rows left over by earlier tests (retries falling due) may be in
    // flight too, and the worker's idle lanes claim them while the others are stuck.
    const sending = async () => (await db.pool.query<{ id: number }>(`select id from outbox where state = 'sending' and recipient like $1 order by id`, [`%@${local}.example`])).rows.map((r) => r.id);
    await until(async () => relay.sessions() >= sessionsBefore + 2 && (await sending()).length >= 2, 'sends stuck at the relay');
    const inFlight = await sending();
    const started = Date.now();
    proc.child.kill('SIGTERM');
    const code = await Promise.race([proc.exited, new Promise((r) => setTimeout(() => r('still running after 10 s'), 10_000))]);
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThanOrEqual(10_000);
    const { rows } = await db.pool.query<{ state: string; attempts: number; locked_by: string | null; last_error: string | null }>(
      'select state, attempts, locked_by, last_error from outbox where id = any($1::bigint[]) order by attempts, id', [inFlight]);
    const untouched = inFlight.length - handedOver;
    expect(rows.map((r) => [r.state, r.attempts, r.locked_by])).toEqual(inFlight.map((_, i) => ['queued', i < untouched ? 0 : 1, null]));
    for (const r of rows.slice(untouched)) expect(r.last_error).toMatch(/ESHUTDOWN.*the copy may have been delivered/);
    expect(await sending()).toEqual([]);
    const { rows: workers } = await db.pool.query('select name from delivery_workers');
    expect(workers).toEqual([]);
  });
});
