/*
 * A list deleted in the panel while posts to it arrive over SMTP and its copies are being sent
 * by a worker to a (slow) relay. Every post gets an honest answer: 250 only for a post committed
 * before the deletion (deleted with the list), else a refusal the sender hears of; the worker
 * settles the copies it had in hand and keeps delivering the other lists' posts; the pages that
 * read the queue and the audit log still render. A moderator's decision taken on the list at that
 * moment is either made before the deletion or answered "not found", never a deadlock (503).
 */

import { afterAll, beforeAll, expect, it } from 'vitest';
import { hashToken } from '../src/auth/credentials.ts';
import { addListRole, deleteList } from '../src/db/list-admin.ts';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { archiveMessage } from '../src/db/messages.ts';
import { insertRequest } from '../src/db/subscription-requests.ts';
import { parse } from '../src/mail/parse.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn } from './helpers/browser.ts';
import { message, sendRaw, smtpDialogue, startIngest, type RunningIngest, type SendResult } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { sideTransaction, waitersForALock } from './helpers/locks.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let web: RunningWeb;
let worker: DeliveryWorker;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  web = await startWeb(db);
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await web?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

const MEMBERS = Array.from({ length: 20 }, (_, i) => `m${i}@example.net`);

const postTo = (local: string, id: string): Promise<SendResult> =>
  sendRaw(smtp.port, { from: 'alice@example.org', to: [`${local}@lists.example.org`] }, message({ id, to: `${local}@lists.example.org` }));

it('a list deleted while posts to it arrive and its copies go out: every post is answered honestly, the worker goes on, the pages render', async () => {
  const doomed = await createList(db.pool, { address: 'doomed@lists.example.org', name: 'Doomed', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const other = await createList(db.pool, { address: 'other@lists.example.org', name: 'Other', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const m of MEMBERS) await addMember(db.pool, doomed.id, m, 'each');
  await addMember(db.pool, other.id, 'reader@example.net', 'each');
  const admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
  // Copies are slow to go out, so that some are in a worker's hands when the list goes.
  relay.setDelay(50);
  await postTo('doomed', 'first@example.org');
  await relay.waitFor(1);

  // Posts keep arriving, a few at a time, while the list is deleted.
  const answers: { id: string; result: SendResult }[] = [];
  let deleting = true;
  const sending = (async () => {
    for (let n = 0; deleting || n < 6; n++) {
      const ids = [0, 1, 2].map((k) => `during-${n}-${k}@example.org`);
      const results = await Promise.all(ids.map((id) => postTo('doomed', id)));
      ids.forEach((id, k) => answers.push({ id, result: results[k] }));
    }
  })();
  await new Promise((r) => setTimeout(r, 150));
  const deleted = await admin.post('/admin/lists/doomed@lists.example.org/delete', { confirm: 'doomed@lists.example.org' });
  deleting = false;
  await sending;
  expect(deleted.status).toBe(303);
  relay.setDelay(0);

  for (const { id, result } of answers) {
    // Answered, one way or the other: 250, or a refusal (the list is gone) or 451 (try again).
    expect(result.ok || /^(4|5)\d\d/.test(result.response), `${id}: ${result.response}`).toBe(true);
  }
  // Posts after the deletion are refused at RCPT TO, as for any unknown list.
  const late = await postTo('doomed', 'late@example.org');
  expect(late.ok).toBe(false);
  expect(late.responseCode).toBe(550);
  expect(answers.some((a) => a.result.ok)).toBe(true);
  // Nothing of the list is left to be sent, and nothing it left behind stops the worker.
  await drained(db);
  const { rows: left } = await db.pool.query(`select state, count(*)::int as n from outbox where list_id = $1 and state in ('queued', 'sending') group by 1`, [doomed.id]);
  expect(left).toEqual([]);
  expect((await postTo('other', 'after@example.org')).ok).toBe(true);
  await relay.copy('reader@example.net', 'after@example.org');
  // The pages that read the queue, the ingest log and the audit log render.
  for (const page of ['/admin/', '/admin/dashboard', '/admin/audit', '/lists/other/']) {
    expect((await admin.get(page)).status, page).toBe(200);
  }
  const { rows: audit } = await db.pool.query(`select action, target from audit_log where action = 'list.delete'`);
  expect(audit).toEqual([{ action: 'list.delete', target: 'doomed@lists.example.org' }]);
});

it('a held post approved in the panel while the list is being deleted: the approval is made first, the deletion then; no deadlock', async () => {
  const list = await createList(db.pool, { address: 'held-doomed@lists.example.org', name: 'H', description: '', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const other = await createList(db.pool, { address: 'held-other@lists.example.org', name: 'O', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addListRole(db.pool, list.id, 'mod@example.org', 'moderator');
  await addMember(db.pool, list.id, 'reader@example.net', 'each');
  const raw = Buffer.from(message({ id: 'approve-while-deleting@example.org', to: 'held-doomed@lists.example.org' }));
  expect((await sendRaw(smtp.port, { from: 'alice@example.org', to: ['held-doomed@lists.example.org'] }, raw)).ok).toBe(true);
  const { rows: [held] } = await db.pool.query<{ id: number }>('select id from held_messages where list_id = $1', [list.id]);
  const mod = await loggedIn(db, web.url, 'mod@example.org');
  const admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
  // The same message being archived for another list holds the approval up after it took the
  // post (it waits for that insert); the deletion comes meanwhile.
  const side = await sideTransaction(db.url);
  let replies;
  try {
    await archiveMessage(side, other.id, raw, await parse(raw));
    const approving = mod.post('/admin/lists/held-doomed@lists.example.org/held', { ids: String(held.id), action: 'approve' });
    await waitersForALock(db.pool, 1);
    const deleting = admin.post('/admin/lists/held-doomed@lists.example.org/delete', { confirm: 'held-doomed@lists.example.org' });
    await waitersForALock(db.pool, 2);
    await side.query('rollback');
    replies = await Promise.all([approving, deleting]);
  } finally {
    await side.end();
  }
  expect(replies.map((r) => r.status)).toEqual([303, 303]);
  const { rows: audit } = await db.pool.query(`select action from audit_log where target in ('approve-while-deleting@example.org', 'held-doomed@lists.example.org') order by id`);
  expect(audit.map((r) => r.action)).toEqual(['held.approve', 'list.delete']);
  expect((await db.pool.query('select 1 from lists where id = $1', [list.id])).rows).toEqual([]);
});

it('a subscription request approved while the list is being deleted: one after the other, no deadlock', async () => {
  const list = await createList(db.pool, { address: 'club-doomed@lists.example.org', name: 'C', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'public', owners: [] });
  await addListRole(db.pool, list.id, 'mod@example.org', 'moderator');
  // A former member asks to come back: approving updates the row this side transaction holds.
  await addMember(db.pool, list.id, 'back@example.org', 'each');
  await db.pool.query(`update members set status = 'unsubscribed' where list_id = $1`, [list.id]);
  const request = await insertRequest(db.pool, { listId: list.id, email: 'back@example.org', name: null, mode: 'each', action: 'subscribe', via: 'web', tokenHash: hashToken('ab'.repeat(16)), state: 'approval', expiresInHours: 48 });
  const mod = await loggedIn(db, web.url, 'mod@example.org');
  const admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
  const side = await sideTransaction(db.url);
  let replies;
  try {
    await side.query(`select 1 from members where list_id = $1 for update`, [list.id]);
    const approving = mod.post('/admin/lists/club-doomed@lists.example.org/requests', { ids: String(request.id), action: 'approve' });
    await waitersForALock(db.pool, 1);
    const deleting = admin.post('/admin/lists/club-doomed@lists.example.org/delete', { confirm: 'club-doomed@lists.example.org' });
    await waitersForALock(db.pool, 2);
    await side.query('rollback');
    replies = await Promise.all([approving, deleting]);
  } finally {
    await side.end();
  }
  expect(replies.map((r) => r.status)).toEqual([303, 303]);
  const { rows: audit } = await db.pool.query(`select action from audit_log where target in ('back@example.org', 'club-doomed@lists.example.org') order by id`);
  expect(audit.map((r) => r.action)).toEqual(['subscription.approve', 'list.delete']);
});

it('a message accepted at RCPT TO for a list deleted before DATA ends is refused 550 at once and kept aside; one whose list was made again at the address hears 451 and goes to it on the retry', async () => {
  // RCPT TO is answered, then the list is deleted, then the message comes.
  const acceptedThenDeleted = async (local: string, role: string, remake: boolean) => {
    const address = `${local}@lists.example.org`;
    const list = await createList(db.pool, { address, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
    const to = `${local}${role}@lists.example.org`;
    const s = await smtpDialogue(smtp.port);
    try {
      await s.say('EHLO client.example');
      await s.say('MAIL FROM:<alice@example.org>');
      expect(await s.say(`RCPT TO:<${to}>`)).toMatch(/^250 /);
      await deleteList(db.pool, list.id);
      if (remake) await createList(db.pool, { address, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
      expect(await s.say('DATA')).toMatch(/^354 /);
      return await s.say(`${message({ id: `${local}${role}@example.org`, to })}\r\n.`);
    } finally {
      s.close();
    }
  };
  for (const role of ['', '-owner']) {
    const reply = await acceptedThenDeleted(`vanished${role.replace('-', '')}`, role, false);
    expect(reply, role).toMatch(new RegExp(`^550 5\\.1\\.1 the list vanished${role.replace('-', '')}@lists\\.example\\.org was deleted while this message was on its way; it was not delivered`));
    const { rows } = await db.pool.query('select list_id, reason from ingest_errors where message_id = $1', [`vanished${role.replace('-', '')}${role}@example.org`]);
    expect(rows, role).toEqual([{ list_id: null, reason: `the list vanished${role.replace('-', '')}@lists.example.org was deleted while this message was on its way; it was not delivered` }]);
  }
  // Deleted and made again at the same address: the message is for the list there now, so it
  // is not refused; the sender's retry finds the new list.
  const again = await acceptedThenDeleted('reborn', '', true);
  expect(again).toMatch(/^451 /);
  expect((await postTo('reborn', 'reborn@example.org')).ok).toBe(true);
});
