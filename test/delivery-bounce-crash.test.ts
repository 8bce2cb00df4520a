/*
 * A refused copy's result and its bounce are written by two transactions (delivery/outcomes.ts,
 * core/refusals.ts). A worker killed (SIGKILL) between them must not lose the bounce, nor record it
 * twice: the result marks the row, and the bounce's transaction clears the mark.
 */

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberBounces } from '../src/db/bounces.ts';
import { createList } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { enqueueMail, insertOutboundMail } from '../src/db/outbox.ts';
import { verpAddress } from '../src/mail/address.ts';
import { startCaptureRelay, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { until } from './helpers/worker-process.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let serve: ServeProcess | undefined;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
});

afterAll(async () => {
  await serve?.kill();
  await relay?.stop();
  await db?.drop();
});

const worker = () => spawnServe({ roles: ['worker'], env: { DATABASE_URL: db.url, RELAY_URL: relay.url, DELIVERY_POLL_MS: '100', DELIVERY_LEASE_SECONDS: '2' } });

describe('a worker killed between a refused copy\'s result and its bounce', () => {
  it('leaves the bounce to be recorded once, by the worker that comes next', async () => {
    const list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, list.id, 'ivy@example.net', 'digest');
    const ivy = (await findMember(db.pool, list.id, 'ivy@example.net'))!;
    relay.setRule((address) => (address === ivy.email ? { code: 550, message: '5.1.1 <ivy@example.net>: Recipient address rejected: User unknown' } : null));
    const mail = await insertOutboundMail(db.pool, Buffer.from('From: dev@lists.example.org\r\nTo: ivy@example.net\r\nSubject: dev digest\r\n\r\ndigest\r\n'));
    const [id] = await enqueueMail(db.pool, 'digest', list.id, mail, [{ email: ivy.email, envelopeFrom: verpAddress(list.address, ivy.token), memberId: ivy.id, memberToken: ivy.token }]);

    // The member's row is held, so that the bounce waits, its copy's result committed, where the
    // test kills the process.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from members where id = $1 for no key update', [ivy.id]);
      serve = await worker();
      const pid = serve.pid;
      await until(async () => {
        const { rows } = await db.pool.query(
          `select 1 from pg_stat_activity where application_name like $1 and wait_event_type = 'Lock'`, [`listkeeper:${pid}:%`]);
        return rows.length > 0;
      }, 'the bounce to wait for the member\'s row');
      expect((await db.pool.query(`select state from outbox where id = $1`, [id])).rows[0].state).toBe('failed');
      await serve.kill('SIGKILL');
      serve = undefined;
    } finally {
      await holder.query('rollback');
      await holder.end();
    }
    expect(await memberBounces(db.pool, ivy.id)).toEqual([]);

    serve = await worker();
    await until(async () => (await memberBounces(db.pool, ivy.id)).length > 0, 'the bounce to be recorded');
    // Recorded, and nothing left marked for another pass to record again.
    expect((await db.pool.query(`select state, bounce_stage from outbox where id = $1`, [id])).rows[0]).toEqual({ state: 'failed', bounce_stage: null });
    expect((await memberBounces(db.pool, ivy.id)).map((b) => [b.source, b.kind, b.counted])).toEqual([['smtp', 'hard', true]]);
    expect((await findMember(db.pool, list.id, ivy.email))!.bounce_score).toBe(1);
    const { rows } = await db.pool.query(`select coalesce(sum(failed), 0)::int as failed, coalesce(sum(bounced), 0)::int as bounced from delivery_hourly`);
    expect(rows[0]).toEqual({ failed: 1, bounced: 1 });
    // The first copy was sent once: the row was settled before the kill.
    expect(relay.attempts.get(ivy.email)).toBe(1);
  });
});
