import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { findMember } from '../src/db/members.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, queuedMail, WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
let club: ListRow;
let mod: WebClient;
const R = '/admin/lists/club@lists.example.org/requests';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  club = await createList(db.pool, { address: 'club@lists.example.org', name: 'Club', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'members', owners: ['owner@example.org'] });
  await createList(db.pool, { address: 'other@lists.example.org', name: 'Other', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'members', owners: ['otherowner@example.org'] });
  await addListRole(db.pool, club.id, 'mod@example.org', 'moderator');
  mod = await loggedIn(db, web.url, 'mod@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

/** Asks to join on the web and confirms by the mailed link, as the address owner would. */
async function confirmedRequest(email: string) {
  const c = new WebClient(web.url, { 'x-forwarded-for': `198.51.100.${Math.floor(Math.random() * 200)}` });
  expect((await c.post('/lists/club/subscribe', { email, mode: 'digest' })).status).toBe(200);
  const mail = (await queuedMail(db, email)).at(-1)!;
  const link = new URL(/https?:\/\/\S+\/confirm\/\S+/.exec(mail.text)![0]);
  await c.get(link.pathname);
  expect((await c.post(link.pathname)).status).toBeLessThan(400);
}

describe('subscription requests awaiting approval', () => {
  it('lists confirmed requests and approves the ticked ones', async () => {
    await confirmedRequest('wants-in@example.org');
    await confirmedRequest('also-wants-in@example.org');
    expect(await findMember(db.pool, club.id, 'wants-in@example.org')).toBeNull();
    const page = await mod.get(R);
    expect(page.text).toContain('wants-in@example.org');
    expect(page.text).toContain('also-wants-in@example.org');
    const ids = [...page.text.matchAll(/name="ids" value="(\d+)" aria-label="Select ([^"]+)"/g)];
    const id = ids.find((m) => m[2] === 'wants-in@example.org')![1];
    const r = await mod.post(R, { ids: id, action: 'approve' });
    expect(r.status).toBe(303);
    expect(await findMember(db.pool, club.id, 'wants-in@example.org')).toMatchObject({ status: 'active', mode: 'digest' });
    const after = await mod.get(R);
    expect(after.text).not.toContain('value="' + id + '"');
    const audit = await db.pool.query(`select actor, action, target from audit_log where action like 'subscription.%'`);
    expect(audit.rows).toEqual([{ actor: 'mod@example.org', action: 'subscription.approve', target: 'wants-in@example.org' }]);
  });

  it('rejects a request, and the address is told', async () => {
    const page = await mod.get(R);
    const id = /name="ids" value="(\d+)" aria-label="Select also-wants-in@example.org"/.exec(page.text)![1];
    await mod.post(R, { ids: id, action: 'reject' });
    expect(await findMember(db.pool, club.id, 'also-wants-in@example.org')).toBeNull();
    const mail = await queuedMail(db, 'also-wants-in@example.org');
    expect(mail.at(-1)!.text).toMatch(/declined/);
  });

  it("ignores request ids of another list", async () => {
    await confirmedRequest('third@example.org');
    const id = /name="ids" value="(\d+)" aria-label="Select third@example.org"/.exec((await mod.get(R)).text)![1];
    const otherOwner = await loggedIn(db, web.url, 'otherowner@example.org');
    await otherOwner.post('/admin/lists/other@lists.example.org/requests', { ids: id, action: 'approve' });
    expect(await findMember(db.pool, club.id, 'third@example.org')).toBeNull();
  });
});
