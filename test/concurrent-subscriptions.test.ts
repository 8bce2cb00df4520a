/*
 * Joining and leaving acted on twice at once over real HTTP: the same confirmation link posted
 * twice, the same one-click unsubscribe posted twice, two moderators deciding the same
 * subscription request. One change, one welcome, one audit entry; every answer says what is true.
 */

import crypto from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hashToken } from '../src/auth/credentials.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { insertRequest } from '../src/db/subscription-requests.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn, queuedMail, WebClient } from './helpers/browser.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { sideTransaction, waitersForALock } from './helpers/locks.ts';

let db: TestDatabase;
let web: RunningWeb;
let open: ListRow;
let club: ListRow;
const R = '/admin/lists/club@lists.example.org/requests';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  open = await createList(db.pool, { address: 'open@lists.example.org', name: 'Open', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  club = await createList(db.pool, { address: 'club@lists.example.org', name: 'Club', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'public', owners: ['owner@example.org'] });
  for (const m of ['ann@example.org', 'ben@example.org']) await addListRole(db.pool, club.id, m, 'moderator');
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

/** A request of `email` to join `list` in `state`, and the token of its confirmation link. */
async function request(list: ListRow, email: string, state: 'confirm' | 'approval'): Promise<{ id: number; token: string }> {
  const token = crypto.randomBytes(16).toString('hex');
  const row = await insertRequest(db.pool, { listId: list.id, email, name: null, mode: 'each', action: 'subscribe', via: 'web', tokenHash: hashToken(token), state, expiresInHours: 48 });
  return { id: row.id, token };
}

const welcomes = async (email: string, list: ListRow) => (await queuedMail(db, email)).filter((m) => m.subject === `Welcome to ${list.address}`).length;

it('the same confirmation link posted twice at once subscribes the address once and welcomes it once; both answers say it is subscribed', async () => {
  for (let round = 0; round < 3; round++) {
    const email = `twice-${round}@example.org`;
    const { token } = await request(open, email, 'confirm');
    const browser = new WebClient(web.url);
    const replies = await Promise.all([browser.post(`/confirm/${token}`), browser.post(`/confirm/${token}`)]);
    for (const r of replies) {
      expect(r.status).toBe(200);
      expect(r.text).toContain(`${email} is subscribed to open@lists.example.org`);
    }
    expect(await findMember(db.pool, open.id, email)).toMatchObject({ status: 'active' });
    expect(await welcomes(email, open)).toBe(1);
  }
});

it('the same one-click unsubscribe posted twice at once unsubscribes once; both are answered 200', async () => {
  for (let round = 0; round < 3; round++) {
    const email = `leaving-${round}@example.org`;
    await addMember(db.pool, open.id, email, 'each');
    const { token } = (await findMember(db.pool, open.id, email))!;
    const oneClick = () => fetch(`${web.url}/u/${token}`, { method: 'POST', body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    const replies = await Promise.all([oneClick(), oneClick()]);
    for (const r of replies) {
      expect(r.status).toBe(200);
      expect(await r.text()).toContain(`${email} is unsubscribed from open@lists.example.org`);
    }
    expect(await findMember(db.pool, open.id, email)).toMatchObject({ status: 'unsubscribed' });
  }
});

it('a moderator approving requests, one of which another moderator decides at that moment, has the others decided and is told which was already', async () => {
  const ann = await loggedIn(db, web.url, 'ann@example.org');
  const ben = await loggedIn(db, web.url, 'ben@example.org');
  const first = await request(club, 'first@example.org', 'approval');
  const second = await request(club, 'second@example.org', 'approval');
  // Both moderators' decisions on the first request wait behind a lock on it, Ann's first in line.
  const side = await sideTransaction(db.url);
  let replies;
  try {
    await side.query('select 1 from subscription_requests where id = $1 for update', [first.id]);
    const annDecides = ann.post(R, { ids: String(first.id), action: 'reject' });
    await waitersForALock(db.pool, 1);
    const benDecides = ben.post(R, { ids: [String(first.id), String(second.id)], action: 'approve' });
    await waitersForALock(db.pool, 2);
    await side.query('commit');
    replies = await Promise.all([annDecides, benDecides]);
  } finally {
    await side.end();
  }
  expect(replies.map((r) => r.status)).toEqual([303, 303]);
  // Ann's rejection stands; Ben's approval of the other request was made, not lost.
  expect(await findMember(db.pool, club.id, 'first@example.org')).toBeNull();
  expect(await findMember(db.pool, club.id, 'second@example.org')).toMatchObject({ status: 'active' });
  const audit = await db.pool.query(`select actor, action, target from audit_log where action like 'subscription.%' order by id`);
  expect(audit.rows).toEqual([
    { actor: 'ann@example.org', action: 'subscription.reject', target: 'first@example.org' },
    { actor: 'ben@example.org', action: 'subscription.approve', target: 'second@example.org' },
  ]);
  const told = await ben.get(replies[1].location!);
  expect(told.text).toContain('1 request approved');
  expect(told.text).toContain('Already decided by someone else: first@example.org');
});
