/*
 * A refused copy's result whose commit went unheard (the connection cut after COMMIT, before its
 * reply) is written again on a fresh connection, and that second write finds the row settled
 * already (db/outbox.ts CLAIMED) and returns nothing. The bounce must still be recorded, once.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberBounces } from '../src/db/bounces.ts';
import { createList } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { enqueueMail, insertOutboundMail } from '../src/db/outbox.ts';
import { createPool } from '../src/db/pool.ts';
import { DeliveryWorker } from '../src/delivery/worker.ts';
import { log } from '../src/log.ts';
import { verpAddress } from '../src/mail/address.ts';
import { drained, startCaptureRelay, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { unheardCommitProxy } from './helpers/db-faults.ts';
import { until } from './helpers/worker-process.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let proxy: Awaited<ReturnType<typeof unheardCommitProxy>>;
let pool: ReturnType<typeof createPool> | undefined;
let worker: DeliveryWorker | undefined;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  proxy = await unheardCommitProxy(db.url);
});

afterAll(async () => {
  await worker?.stop();
  await pool?.end();
  await proxy?.close();
  await relay?.stop();
  await db?.drop();
});

describe('a refused copy whose result\'s commit went unheard', () => {
  it('has its bounce recorded once, though the write tried again settled nothing', async () => {
    const list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, list.id, 'jay@example.net', 'digest');
    const jay = (await findMember(db.pool, list.id, 'jay@example.net'))!;
    relay.setRule((address) => (address === jay.email ? { code: 550, message: '5.1.1 <jay@example.net>: Recipient address rejected: User unknown' } : null));
    const mail = await insertOutboundMail(db.pool, Buffer.from('From: dev@lists.example.org\r\nTo: jay@example.net\r\nSubject: dev digest\r\n\r\ndigest\r\n'));
    const [id] = await enqueueMail(db.pool, 'digest', list.id, mail, [{ email: jay.email, envelopeFrom: verpAddress(list.address, jay.token), memberId: jay.id, memberToken: jay.token }]);

    // The worker's queries go through the proxy (its lock and LISTEN connections do not).
    proxy.arm(`update outbox o set state = 'failed'`);
    const cfg = workerConfig(relay);
    log.level = cfg.logLevel;
    pool = createPool(proxy.url, 4, 'worker');
    worker = new DeliveryWorker(pool, db.url, cfg);
    await worker.start();
    await proxy.cut;
    await drained(db);

    await until(async () => (await memberBounces(db.pool, jay.id)).length > 0, 'the bounce to be recorded');
    expect((await db.pool.query(`select state, attempts, bounce_stage from outbox where id = $1`, [id])).rows[0]).toEqual({ state: 'failed', attempts: 1, bounce_stage: null });
    expect((await memberBounces(db.pool, jay.id)).map((b) => [b.source, b.kind, b.counted])).toEqual([['smtp', 'hard', true]]);
    expect((await findMember(db.pool, list.id, jay.email))!.bounce_score).toBe(1);
    const { rows } = await db.pool.query(`select coalesce(sum(failed), 0)::int as failed, coalesce(sum(bounced), 0)::int as bounced from delivery_hourly`);
    expect(rows[0]).toEqual({ failed: 1, bounced: 1 });
  });
});
