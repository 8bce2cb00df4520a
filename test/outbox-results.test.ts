/*
 * A claimed row's result is written once, however often the write is tried (db/outbox.ts
 * CLAIMED): a write whose commit went unheard is tried again on a fresh connection (outcomes.ts),
 * and a row requeued after its worker looked dead may be claimed and sent by another.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimBatch, enqueueMail, heartbeat, insertOutboundMail, markFailed, markRetry, markSent, reclaimStale, releaseRows, type ClaimedRow } from '../src/db/outbox.ts';
import { deliveries } from '../src/delivery/metrics.ts';
import { Outcomes } from '../src/delivery/outcomes.ts';
import { log } from '../src/log.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** Queues one copy for each recipient and claims them all for `worker`. */
async function claimed(worker: string, recipients: string[]): Promise<ClaimedRow[]> {
  const mail = await insertOutboundMail(db.pool, Buffer.from('From: a@example.org\r\nSubject: x\r\n\r\nx\r\n'));
  await enqueueMail(db.pool, 'notice', null, mail, recipients.map((email) => ({ email, envelopeFrom: 'bounces@lists.example.org' })));
  const { rows } = await claimBatch(db.pool, worker, 100);
  expect(rows.map((r) => r.recipient).sort()).toEqual([...recipients].sort());
  return rows;
}

const hour = async () => (await db.pool.query(`select coalesce(sum(sent), 0)::int as sent, coalesce(sum(deferred), 0)::int as deferred, coalesce(sum(failed), 0)::int as failed from delivery_hourly`)).rows[0];
const row = async (id: number) => (await db.pool.query(`select state, attempts, last_error, run_at from outbox where id = $1`, [id])).rows[0];

describe('results of claimed copies', () => {
  it('are applied once when the same write is made twice', async () => {
    const [a, b, c] = (await claimed('w1', ['a@example.net', 'b@example.net', 'c@example.net'])).sort((x, y) => x.recipient.localeCompare(y.recipient));
    const before = await hour();
    for (let i = 0; i < 2; i++) {
      await markSent(db.pool, [{ id: a.id, attempts: a.attempts }]);
      expect((await markRetry(db.pool, 'w1', [{ id: b.id, attempts: b.attempts, error: '451 later' }], 24)).failed).toEqual([]);
      await markFailed(db.pool, 'w1', [{ id: c.id, attempts: c.attempts, error: '550 no such user', bounceStage: null }]);
    }
    expect(await row(a.id)).toMatchObject({ state: 'sent', attempts: 1 });
    const retried = await row(b.id);
    expect(retried).toMatchObject({ state: 'queued', attempts: 1, last_error: '451 later' });
    // e^1 seconds from now, not e^2 from e^1 from now.
    expect(retried.run_at.getTime() - Date.now()).toBeLessThan(4_000);
    expect(await row(c.id)).toMatchObject({ state: 'failed', attempts: 1, last_error: '550 no such user' });
    const after = await hour();
    expect({ sent: after.sent - before.sent, deferred: after.deferred - before.deferred, failed: after.failed - before.failed }).toEqual({ sent: 1, deferred: 1, failed: 1 });
  });

  it('of a copy requeued and sent again by another worker are written by one of the two', async () => {
    const [first] = await claimed('w1', ['d@example.net']);
    await releaseRows(db.pool, [first.id], 'w1'); // as reclaimStale does for a worker that looked dead
    const second = (await claimBatch(db.pool, 'w2', 100)).rows.find((r) => r.id === first.id)!;
    expect(second).toMatchObject({ id: first.id, attempts: first.attempts });
    const before = await hour();
    await markSent(db.pool, [{ id: first.id, attempts: first.attempts }]); // w1's kept result
    await markRetry(db.pool, 'w2', [{ id: first.id, attempts: second.attempts, error: '421 busy' }], 24); // w2's
    expect(await row(first.id)).toMatchObject({ state: 'sent', attempts: 1, last_error: null });
    const after = await hour();
    expect({ sent: after.sent - before.sent, deferred: after.deferred - before.deferred }).toEqual({ sent: 1, deferred: 0 });
  });

  it('of a copy requeued and not yet sent again are written: what was sent is not sent twice', async () => {
    const [r] = await claimed('w1', ['f@example.net']);
    await releaseRows(db.pool, [r.id], 'w1');
    await markSent(db.pool, [{ id: r.id, attempts: r.attempts }]);
    expect(await row(r.id)).toMatchObject({ state: 'sent', attempts: 1 });
    expect((await claimBatch(db.pool, 'w2', 100)).rows.map((x) => x.id)).not.toContain(r.id);
  });

  it('deferred or refused late by a worker that looked dead are not written over another worker sending them: its result stands', async () => {
    const [d, f] = (await claimed('w1', ['late-d@example.net', 'late-f@example.net'])).sort((a, b) => a.recipient.localeCompare(b.recipient));
    await releaseRows(db.pool, [d.id, f.id], 'w1'); // as reclaimStale does for a worker that looked dead
    const again = (await claimBatch(db.pool, 'w2', 100)).rows.filter((r) => r.id === d.id || r.id === f.id);
    expect(again).toHaveLength(2);
    // w1's kept results arrive while w2 is sending both copies: they are not w1's to write.
    expect(await markRetry(db.pool, 'w1', [{ id: d.id, attempts: d.attempts, error: '421 busy' }], 24)).toEqual({ queued: [], failed: [] });
    expect(await markFailed(db.pool, 'w1', [{ id: f.id, attempts: f.attempts, error: '550 no such user', bounceStage: 'RCPT TO' }])).toEqual([]);
    for (const id of [d.id, f.id]) {
      expect((await db.pool.query(`select state, locked_by, attempts, bounce_stage from outbox where id = $1`, [id])).rows[0]).toEqual({ state: 'sending', locked_by: 'w2', attempts: 0, bounce_stage: null });
    }
    // w2's results are written, once each: no third send, no bounce from w1's refusal.
    expect(await markSent(db.pool, again.map((r) => ({ id: r.id, attempts: r.attempts })))).toEqual(expect.arrayContaining([d.id, f.id]));
    expect(await row(d.id)).toMatchObject({ state: 'sent', attempts: 1 });
    expect(await row(f.id)).toMatchObject({ state: 'sent', attempts: 1 });
  });

  it('given back by a stopping worker are left alone when another worker has claimed them since', async () => {
    const [r] = await claimed('w1', ['g@example.net']);
    // w1 lost its lock (its connection dropped): its rows went back to the queue, and w2 took this one.
    expect(await reclaimStale(db.pool, 60)).toBeGreaterThan(0);
    expect((await claimBatch(db.pool, 'w2', 100)).rows.map((x) => x.id)).toContain(r.id);
    // w1 stops and gives back what it had not sent, while w2 is sending it.
    await releaseRows(db.pool, [r.id], 'w1');
    expect((await db.pool.query(`select state, locked_by from outbox where id = $1`, [r.id])).rows[0]).toEqual({ state: 'sending', locked_by: 'w2' });
    expect((await claimBatch(db.pool, 'w3', 100)).rows.map((x) => x.id)).not.toContain(r.id);
  });
});

describe('the deliveries counter of /metrics', () => {
  const counted = async () => {
    const values = (await deliveries.get()).values;
    const of = (result: string) => values.find((v) => v.labels.result === result)?.value ?? 0;
    return { sent: of('sent'), deferred: of('deferred'), failed: of('failed') };
  };

  it('counts copies requeued and settled by another worker once, as the hourly counts do', async () => {
    const rows = (await claimed('w1', ['x@example.net', 'y@example.net'])).sort((a, b) => a.recipient.localeCompare(b.recipient));
    await releaseRows(db.pool, rows.map((r) => r.id), 'w1'); // as reclaimStale does for a worker that looked dead
    const again = (await claimBatch(db.pool, 'w2', 100)).rows.sort((a, b) => a.recipient.localeCompare(b.recipient));
    const [before, hourBefore] = [await counted(), await hour()];
    // w2 delivers x and is told to try y later; w1, whose lock came back, writes what it kept.
    const w2 = new Outcomes(db.pool, 'w2', 24, 100, log, 'https://lists.example.org');
    w2.delivered(again[0]);
    w2.deferred(again[1], '421 busy');
    await w2.finish();
    const w1 = new Outcomes(db.pool, 'w1', 24, 100, log, 'https://lists.example.org');
    w1.deferred(rows[0], '451 later');
    w1.delivered(rows[1]);
    await w1.finish();

    const [after, hourAfter] = [await counted(), await hour()];
    expect({ sent: hourAfter.sent - hourBefore.sent, deferred: hourAfter.deferred - hourBefore.deferred }).toEqual({ sent: 1, deferred: 1 });
    expect({ sent: after.sent - before.sent, deferred: after.deferred - before.deferred, failed: after.failed - before.failed }).toEqual({ sent: 1, deferred: 1, failed: 0 });
  });
});

describe("each claimed row's lease (sql/0100)", () => {
  /** Queues one copy per recipient, claims them for `worker` and makes their leases two minutes old. */
  async function heldSince(worker: string, recipients: string[]): Promise<number[]> {
    const mail = await insertOutboundMail(db.pool, Buffer.from('From: a@example.org\r\nSubject: x\r\n\r\nx\r\n'));
    const ids = await enqueueMail(db.pool, 'notice', null, mail, recipients.map((email) => ({ email, envelopeFrom: 'bounces@lists.example.org' })));
    const { rows } = await db.pool.query<{ id: number; recipient: string }>(
      `update outbox set state = 'sending', locked_by = $2, locked_at = now() - interval '2 minutes' where id = any($1::bigint[]) returning id, recipient`, [ids, worker]);
    return recipients.map((r) => rows.find((x) => x.recipient === r)!.id);
  }
  const holder = async (id: number) => (await db.pool.query(`select state, locked_by from outbox where id = $1`, [id])).rows[0];

  it('is renewed by its live worker\'s heartbeat but for a stuck send\'s row, which alone goes back to the queue', async () => {
    const identity = { name: 'leases-new', host: 'h', pid: 1, lockKey: null, leaseSeconds: 60 };
    await heartbeat(db.pool, identity);
    const [stuck, moving] = await heldSince('leases-new', ['stuck@example.net', 'moving@example.net']);
    await heartbeat(db.pool, identity, [stuck]);
    await reclaimStale(db.pool, 60);
    expect(await holder(stuck)).toEqual({ state: 'queued', locked_by: null });
    expect(await holder(moving)).toEqual({ state: 'sending', locked_by: 'leases-new' });
    // The worker asking spares its own rows while its lock is being retaken, not a lease run out.
    const [own] = await heldSince('leases-new', ['own@example.net']);
    await reclaimStale(db.pool, 60, 'leases-new');
    expect(await holder(own)).toEqual({ state: 'queued', locked_by: null });
  });

  it('is not judged for a live worker of the previous release, which renews none', async () => {
    await db.pool.query(`insert into delivery_workers (name, host, pid, lease_seconds) values ('leases-old', 'h', 2, 60)`);
    const [id] = await heldSince('leases-old', ['old@example.net']);
    await reclaimStale(db.pool, 60);
    expect(await holder(id)).toEqual({ state: 'sending', locked_by: 'leases-old' });
  });
});
