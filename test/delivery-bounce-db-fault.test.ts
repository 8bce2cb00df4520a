/*
 * A refused copy's bounce is recorded after its result, in a transaction of its own
 * (core/refusals.ts). That transaction losing its connection (pg_terminate_backend) must not
 * lose the bounce: a refused probe that is not recorded never disables the member, and the probe
 * then expires as if it had reached them, clearing their score.
 */

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendProbe } from '../src/core/bounce-notices.ts';
import { memberBounces, startProbe } from '../src/db/bounces.ts';
import { createList } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { withTransaction } from '../src/db/pool.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
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

describe('the bounce of a refused probe', () => {
  it('is recorded, and the member disabled and told, when the connection recording it is terminated', async () => {
    const list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
    await addMember(db.pool, list.id, 'eve@example.net', 'each');
    const eve = (await findMember(db.pool, list.id, 'eve@example.net'))!;
    await withTransaction(db.pool, async (tx) => {
      const token = (await startProbe(tx, eve.id))!;
      await sendProbe(tx, list, eve, token, null);
    });
    relay.setRule((a) => (a === 'eve@example.net' ? { code: 550, message: '5.1.1 <eve@example.net>: Recipient address rejected: User unknown' } : null));

    // The member's row is held, so that the worker's disable waits where the test can end its backend.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from members where id = $1 for no key update', [eve.id]);
      worker = await startWorker(db, workerConfig(relay));
      const deadline = Date.now() + 10_000;
      let ended = 0;
      while (ended === 0 && Date.now() < deadline) {
        // Asked outside the holder's transaction, which sees pg_stat_activity as it was when it began.
        const { rows } = await db.pool.query<{ ended: boolean }>(
          `select pg_terminate_backend(pid) as ended from pg_stat_activity
            where wait_event_type = 'Lock' and query like '%set status = ''disabled''%' and pid <> pg_backend_pid()`);
        ended = rows.filter((r) => r.ended).length;
        if (ended === 0) await new Promise((r) => setTimeout(r, 20));
      }
      expect(ended).toBe(1);
    } finally {
      await holder.query('rollback');
      await holder.end();
    }

    await expect.poll(async () => (await findMember(db.pool, list.id, 'eve@example.net'))!.status, { timeout: 5_000 }).toBe('disabled');
    const after = (await findMember(db.pool, list.id, 'eve@example.net'))!;
    expect(after.disabled_reason).toBe('probe bounced (no_such_user 5.1.1)');
    expect((await memberBounces(db.pool, eve.id)).map((b) => [b.probe, b.counted, b.source])).toEqual([[true, true, 'smtp']]);
    // Told once each: the member how to turn delivery back on, the owner why.
    const { rows } = await db.pool.query<{ recipient: string; n: number }>(
      `select o.recipient, count(*)::int as n from outbox o join outbound_mail m on m.id = o.mail_id
        where o.kind = 'notice' and position('disabled' in convert_from(m.raw, 'UTF8')) > 0 group by o.recipient order by o.recipient`);
    expect(rows).toEqual([{ recipient: 'eve@example.net', n: 1 }, { recipient: 'owner@example.org', n: 1 }]);
  });
});
