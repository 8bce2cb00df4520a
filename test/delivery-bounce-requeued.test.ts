/*
 * A copy requeued from a worker that looked dead (reclaimStale) may be sent by two workers, and
 * refused to both. Its result is written by one of the two (db/outbox.ts CLAIMED); so is its
 * bounce: one refusal of one copy is one bounce, not one per worker that met it.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberBounces } from '../src/db/bounces.ts';
import { createList } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { claimBatch, enqueueMail, insertOutboundMail, releaseRows } from '../src/db/outbox.ts';
import { Outcomes } from '../src/delivery/outcomes.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { log } from '../src/log.ts';
import { verpAddress } from '../src/mail/address.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let worker: DeliveryWorker | undefined;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
});

afterAll(async () => {
  await worker?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('a copy refused to two workers', () => {
  it('is recorded as one bounce, by the worker whose result stands', async () => {
    const list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, list.id, 'hank@example.net', 'digest');
    const hank = (await findMember(db.pool, list.id, 'hank@example.net'))!;
    const refusal = '550 5.1.1 <hank@example.net>: Recipient address rejected: User unknown';
    relay.setRule((address) => (address === 'hank@example.net' ? { code: 550, message: refusal.slice(4) } : null));
    const mail = await insertOutboundMail(db.pool, Buffer.from('From: dev@lists.example.org\r\nTo: hank@example.net\r\nSubject: dev digest\r\n\r\ndigest\r\n'));
    await enqueueMail(db.pool, 'digest', list.id, mail, [{ email: hank.email, envelopeFrom: verpAddress(list.address, hank.token), memberId: hank.id, memberToken: hank.token }]);

    // The first worker claims the copy, sends it, is refused, and looks dead before writing that.
    const [first] = (await claimBatch(db.pool, 'w1', 10)).rows;
    await releaseRows(db.pool, [first.id], 'w1'); // given back to the queue while w1 still held it, as after a lost lock
    // A second worker sends it again over SMTP, is refused too, and records its result and bounce.
    worker = await startWorker(db, workerConfig(relay), 'w2');
    await drained(db);
    await expect.poll(async () => (await memberBounces(db.pool, hank.id)).length, { timeout: 10_000 }).toBe(1);
    // The first worker's result, kept through its stall, is written now: it is not its to write.
    const late = new Outcomes(db.pool, 'w1', 24, 100, log, 'https://lists.example.org');
    late.failedFor(first, refusal, 'RCPT TO');
    await late.finish();

    const bounces = await memberBounces(db.pool, hank.id);
    expect(bounces.map((b) => [b.source, b.kind, b.counted])).toEqual([['smtp', 'hard', true]]);
    expect((await findMember(db.pool, list.id, hank.email))!.bounce_score).toBe(1);
    const { rows } = await db.pool.query(`select coalesce(sum(failed), 0)::int as failed, coalesce(sum(bounced), 0)::int as bounced from delivery_hourly`);
    expect(rows[0]).toEqual({ failed: 1, bounced: 1 });
  });
});
