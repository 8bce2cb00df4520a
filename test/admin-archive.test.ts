import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { archiveMessage } from '../src/db/messages.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { message } from './helpers/smtp.ts';
import { loggedIn, queuedMail, WebClient } from './helpers/browser.ts';
import { addMember, findMember } from '../src/db/members.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let mod: WebClient;
let qaMod: WebClient;
const A = '/admin/lists/dev@lists.example.org/messages';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const qa = await createList(db.pool, { address: 'qa@lists.example.org', name: 'QA', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addListRole(db.pool, dev.id, 'mod@example.org', 'moderator');
  await addListRole(db.pool, qa.id, 'qamod@example.org', 'moderator');
  for (const [id, subject] of [['leak@example.org', 'My phone number'], ['ok@example.org', 'Release notes'], ['spam@example.org', 'Cheap pills']]) {
    const raw = Buffer.from(message({ id, subject }));
    await archiveMessage(db.pool, dev.id, raw, await parse(raw));
  }
  mod = await loggedIn(db, web.url, 'mod@example.org');
  qaMod = await loggedIn(db, web.url, 'qamod@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

const hidden = async (id: string) => (await db.pool.query(
  `select lm.hidden_reason, lm.hidden_by, lm.hidden_at is not null as hidden
     from list_messages lm join messages m on m.id = lm.message_id where m.message_id = $1`, [id])).rows[0];

describe('archive moderation', () => {
  it('finds messages by subject, sender or Message-ID', async () => {
    expect((await mod.get(`${A}?q=phone`)).text).toContain('leak@example.org');
    expect((await mod.get(`${A}?q=%3Cspam@example.org%3E`)).text).toMatch(/1 message\b/);
    expect((await mod.get(`${A}?q=alice@example.org`)).text).toMatch(/3 messages/);
  });

  it('hides a message with a reason and a note, and shows it again', async () => {
    const r = await mod.post(`${A}/hide`, { message_id: 'leak@example.org', reason: 'privacy', note: 'asked by the author', back: `${A}?q=phone` });
    expect(r.status).toBe(303);
    expect(r.location).toBe(`${A}?q=phone`);
    expect(await hidden('leak@example.org')).toEqual({ hidden: true, hidden_reason: 'privacy: asked by the author', hidden_by: 'mod@example.org' });
    const list = await mod.get(`${A}?hidden=1`);
    expect(list.text).toMatch(/1 message\b/);
    expect(list.text).toContain('hidden: privacy: asked by the author');
    await mod.post(`${A}/unhide`, { message_id: 'leak@example.org' });
    expect((await hidden('leak@example.org')).hidden).toBe(false);
    expect((await mod.get(A)).text).toContain('Message visible again.');
    // Shown again while visible: the page says nothing changed, and nothing is recorded.
    expect((await mod.post(`${A}/unhide`, { message_id: 'leak@example.org' })).status).toBe(303);
    expect((await mod.get(A)).text).toContain('That message was not hidden: nothing changed.');
    const audit = await db.pool.query(`select actor, action, target, detail from audit_log where target = 'leak@example.org' order by id`);
    expect(audit.rows.map((x) => x.action)).toEqual(['message.hide', 'message.unhide']);
    expect(audit.rows[0].detail).toEqual({ reason: 'privacy', note: 'asked by the author' });
  });

  it('accepts only privacy, spam or legal as the reason', async () => {
    expect((await mod.post(`${A}/hide`, { message_id: 'spam@example.org', reason: 'boring' })).status).toBe(400);
    expect((await hidden('spam@example.org')).hidden).toBe(false);
  });

  it("does not let a moderator of another list hide this list's messages through their own list", async () => {
    const r = await qaMod.post('/admin/lists/qa@lists.example.org/messages/hide', { message_id: 'spam@example.org', reason: 'spam' });
    expect(r.status).toBe(404);
    expect((await hidden('spam@example.org')).hidden).toBe(false);
  });
});

describe('archives behind a login', () => {
  it('opens a private archive to a logged-in member of the list, and to nobody else', async () => {
    const secret = await createList(db.pool, { address: 'secret@lists.example.org', name: 'Secret', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'private', owners: [] });
    const raw = Buffer.from(message({ id: 'classified@example.org', subject: 'Classified plans' }));
    await archiveMessage(db.pool, secret.id, raw, await parse(raw));
    await addMember(db.pool, secret.id, 'insider@example.org', 'each');
    const insider = await loggedIn(db, web.url, 'insider@example.org');
    const outsider = await loggedIn(db, web.url, 'outsider@example.org');
    const anonymous = new WebClient(web.url);
    for (const path of ['/lists/secret/', '/message-id/classified@example.org']) {
      const ok = await insider.get(path);
      expect(ok.status, path).toBe(200);
      expect(ok.text).toContain('Classified plans');
      expect((await outsider.get(path)).text).not.toContain('Classified plans');
      expect((await anonymous.get(path)).text).not.toContain('Classified plans');
      expect((await anonymous.get(path)).status).toBeGreaterThanOrEqual(400);
    }
  });

  it("takes subscriptions from the list page's own form", async () => {
    const page = await new WebClient(web.url).get('/lists/dev/');
    const form = /<form class="subscribe[^"]*" method="post" action="([^"]+)"/.exec(page.text);
    expect(form).not.toBeNull();
    const c = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.77' });
    const r = await c.post(form![1], { email: 'from-list-page@example.org', name: 'Reader' });
    expect(r.status).toBe(200);
    expect(r.text).toContain('Check your mail');
    expect(await findMember(db.pool, dev.id, 'from-list-page@example.org')).toBeNull();
    expect(await queuedMail(db, 'from-list-page@example.org')).toHaveLength(1);
  });
});
