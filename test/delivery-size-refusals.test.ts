/*
 * A copy refused for its size (552 5.3.4) is about the post, not the member: it never counts as a
 * bounce, and the list's owners and the post's author hear about it once per post and list, however
 * many copies were refused and however many workers sent them.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberBounces } from '../src/db/bounces.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { tellPostTooBig } from '../src/core/notices.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let workers: DeliveryWorker[] = [];
let dev: ListRow;
const members = Array.from({ length: 40 }, (_, i) => `m${i}@members.example`);
/** Postfix's own words when a message passes message_size_limit */
const POSTFIX_552 = '552 5.3.4 Error: message file too big';

async function post(id: string, subject: string) {
  const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id, subject, body: 'x'.repeat(2000) }));
  expect(res.ok, res.response).toBe(true);
}

async function noticesTo(address: string) {
  return relay.to(address).map((m) => m.raw.toString('utf8'));
}

/** Waits until the notices of a post (two owners and the author) have arrived, then for stragglers. */
async function settled(expected: number) {
  await relay.waitFor(expected, 30_000);
  await drained(db, 30_000);
  // A second notice would be queued by the same round of results: give the workers a moment.
  await new Promise((r) => setTimeout(r, 500));
  await drained(db, 30_000);
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  // Every member's copy is too big for the "relay"; notices (small, to owners and author) pass.
  relay.setDataRule((address) => (address.endsWith('@members.example') ? { code: 552, message: POSTFIX_552.slice(4) } : null));
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner1@example.com', 'owner2@example.com'] });
  for (const m of members) await addMember(db.pool, dev.id, m, 'each');
  // Two workers share the queue (SKIP LOCKED): both meet refusals of the same post.
  const cfg = workerConfig(relay, { DELIVERY_BATCH_SIZE: '8' });
  workers = [await startWorker(db, cfg, 'w1'), await startWorker(db, cfg, 'w2')];
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('copies refused for their size', () => {
  it('tells each owner and the author once per post, and counts no bounce against any member', async () => {
    await post('big-1@example.org', 'Slides attached');
    await settled(3);
    const { rows } = await db.pool.query<{ state: string; n: number; error: string }>(
      `select state, count(*)::int as n, min(last_error) as error from outbox where kind = 'post' group by state`);
    expect(rows).toEqual([{ state: 'failed', n: members.length, error: expect.stringContaining('5.3.4') }]);

    for (const owner of ['owner1@example.com', 'owner2@example.com']) {
      const got = await noticesTo(owner);
      expect(got).toHaveLength(1);
      const parsed = await parse(Buffer.from(got[0]));
      expect(parsed.subject).toBe('A post to dev@lists.example.org was too big to deliver');
      expect(parsed.text).toContain('"Slides attached"');
      expect(parsed.text).toContain('<big-1@example.org>');
      expect(parsed.text).toContain("too big to deliver after the list's headers were added");
      expect(parsed.text).toContain(POSTFIX_552.slice(4));
    }
    const [author] = await noticesTo('alice@example.org');
    expect(await noticesTo('alice@example.org')).toHaveLength(1);
    const parsed = await parse(Buffer.from(author));
    expect(parsed.subject).toBe('Your message to dev@lists.example.org was too big to deliver');
    expect(String(parsed.headers.get('in-reply-to'))).toBe('<big-1@example.org>');
    expect(parsed.text).toContain("too big to deliver after the list's headers were added");

    for (const m of members.slice(0, 5)) {
      const member = (await findMember(db.pool, dev.id, m))!;
      expect(member.bounce_score).toBe(0);
      expect(member.status).toBe('active');
      expect(await memberBounces(db.pool, member.id)).toEqual([]);
    }
    const guard = await db.pool.query('select list_id, response from size_refusals');
    expect(guard.rows).toEqual([{ list_id: dev.id, response: expect.stringContaining('5.3.4') }]);
  });

  it('tells them again for another post, and never twice for one (the database guard)', async () => {
    relay.clear();
    await post('big-2@example.org', 'More slides');
    await settled(3);
    expect(await noticesTo('owner1@example.com')).toHaveLength(1);
    expect(await noticesTo('alice@example.org')).toHaveLength(1);
    // A worker retrying the same results later, or another one racing it, finds the guard.
    const { rows } = await db.pool.query<{ id: number }>(`select id from messages where message_id = 'big-2@example.org'`);
    const again = await Promise.all([1, 2, 3].map(() => tellPostTooBig(db.pool, dev.id, rows[0].id, POSTFIX_552)));
    expect(again).toEqual([false, false, false]);
    const queued = await db.pool.query<{ n: number }>(`select count(*)::int as n from outbox where kind = 'notice'`);
    expect(queued.rows[0].n).toBe(6); // two posts × (two owners + the author)
  });

  it('counts other refusals after DATA as before: not the member\'s, and no size notice', async () => {
    relay.clear();
    relay.setDataRule((address) => (address === members[0] ? { code: 550, message: '5.7.1 Message content rejected' } : null));
    await post('content-1@example.org', 'Plain');
    await drained(db, 30_000);
    expect(await noticesTo('owner1@example.com')).toEqual([]);
    const member = (await findMember(db.pool, dev.id, members[0]))!;
    expect(member.bounce_score).toBe(0);
    expect((await memberBounces(db.pool, member.id)).map((b) => b.category)).toEqual(['sender_or_content']);
  });
});
