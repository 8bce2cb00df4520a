/*
 * Members leaving while mail for them is on its way (docs/delivery.md, "The outbound queue and
 * workers"): a copy still waiting when its member leaves is not sent, but settled as cancelled
 * with the reason, never failed and never against the member. The interleaving is forced: a side
 * transaction holds the waiting row (workers skip it), or holds up a digest being built after it
 * has read its readers, while the member leaves over real HTTP.
 */

import { afterAll, beforeAll, expect, it } from 'vitest';
import { sendDigest } from '../src/core/digests.ts';
import { createList } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn } from './helpers/browser.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { sideTransaction, waitersForALock } from './helpers/locks.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let web: RunningWeb;
let worker: DeliveryWorker | null = null;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  web = await startWeb(db);
});

afterAll(async () => {
  await worker?.stop();
  await web?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

async function post(local: string, id: string) {
  const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: [`${local}@lists.example.org`] }, message({ id, to: `${local}@lists.example.org` }));
  expect(res.ok, res.response).toBe(true);
}

const rowOf = async (recipient: string, kind: string) =>
  (await db.pool.query('select state, last_error from outbox where recipient = $1 and kind = $2', [recipient, kind])).rows;

it('a member who unsubscribes by one click while the post\'s copy for them waits is not sent it; the others are', async () => {
  const list = await createList(db.pool, { address: 'fanout@lists.example.org', name: 'Fanout', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const m of ['stays@example.net', 'leaves@example.net']) await addMember(db.pool, list.id, m, 'each');
  await post('fanout', 'fanout@example.org');
  // The copy for the leaver is held where a worker skips it (claimed elsewhere, say, or due later).
  const side = await sideTransaction(db.url);
  try {
    await side.query(`select 1 from outbox where recipient = 'leaves@example.net' for update`);
    worker = await startWorker(db, workerConfig(relay));
    await relay.copy('stays@example.net', 'fanout@example.org');
    const { token } = (await findMember(db.pool, list.id, 'leaves@example.net'))!;
    const res = await fetch(`${web.url}/u/${token}`, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('You will receive no more mail from this list');
  } finally {
    await side.query('commit');
    await side.end();
  }
  await drained(db);
  expect(relay.to('leaves@example.net')).toEqual([]);
  expect(await rowOf('leaves@example.net', 'post')).toEqual([{ state: 'cancelled', last_error: 'not sent: the member is unsubscribed' }]);
  expect(await findMember(db.pool, list.id, 'leaves@example.net')).toMatchObject({ status: 'unsubscribed', bounce_score: 0 });
  await worker!.stop();
  worker = null;
});

it('a digest reader an owner removes while the issue is being built is not sent it; the other reader is', async () => {
  const list = await createList(db.pool, { address: 'digested@lists.example.org', name: 'Digested', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  for (const m of ['keeps@example.net', 'removed@example.net']) await addMember(db.pool, list.id, m, 'digest');
  await post('digested', 'for-the-digest@example.org');
  const owner = await loggedIn(db, web.url, 'owner@example.org');
  // The builder reads its readers, then waits to store the issue: the removal lands in between.
  const side = await sideTransaction(db.url);
  let building: Promise<boolean>;
  try {
    await side.query('lock table outbound_mail in exclusive mode');
    building = sendDigest(db.pool, list.id, 'https://lists.example.org');
    await waitersForALock(db.pool);
    const removed = await owner.post('/admin/lists/digested@lists.example.org/members/bulk', { emails: 'removed@example.net', action: 'remove', confirm: '1' });
    expect(removed.status).toBe(303);
  } finally {
    await side.query('commit');
    await side.end();
  }
  expect(await building).toBe(true);
  expect(await findMember(db.pool, list.id, 'removed@example.net')).toMatchObject({ status: 'unsubscribed' });
  worker = await startWorker(db, workerConfig(relay));
  await relay.copy('keeps@example.net', 'for-the-digest@example.org');
  await drained(db);
  expect(relay.to('removed@example.net')).toEqual([]);
  expect(await rowOf('removed@example.net', 'digest')).toEqual([{ state: 'cancelled', last_error: 'not sent: the member is unsubscribed' }]);
});
