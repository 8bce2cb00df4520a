import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { loggedIn, queuedMail, type WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
let smtp: RunningIngest;
let dev: ListRow;
let mod: WebClient;
let otherMod: WebClient;
const H = '/admin/lists/dev@lists.example.org/held';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  smtp = await startIngest(db.pool);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  const qa = await createList(db.pool, { address: 'qa@lists.example.org', name: 'QA', description: '', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addListRole(db.pool, dev.id, 'mod@example.org', 'moderator');
  await addListRole(db.pool, qa.id, 'qamod@example.org', 'moderator');
  await addMember(db.pool, dev.id, 'reader@example.net', 'each');
  mod = await loggedIn(db, web.url, 'mod@example.org');
  otherMod = await loggedIn(db, web.url, 'qamod@example.org');
});
afterAll(async () => {
  await smtp?.stop();
  await web?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from outbox');
});

async function hold(opts: Parameters<typeof message>[0]): Promise<number> {
  const raw = message({ to: 'dev@lists.example.org', ...opts });
  const sent = await sendRaw(smtp.port, { from: /<([^>]+)>/.exec(opts.from ?? 'Alice <alice@example.org>')![1], to: ['dev@lists.example.org'] }, raw);
  expect(sent.ok, sent.response).toBe(true);
  const { rows } = await db.pool.query<{ id: number }>('select id from held_messages where message_id = $1', [opts.id]);
  return rows[0].id;
}

const state = async (id: number) => (await db.pool.query('select state, decided_by, decision_reason from held_messages where id = $1', [id])).rows[0];
const postCopies = async () => (await db.pool.query(`select recipient from outbox where kind = 'post'`)).rows.map((r) => r.recipient);

describe('the moderation queue', () => {
  it('lists held posts with sender, subject, reason and size, and previews one as escaped text only', async () => {
    const id = await hold({
      id: 'html-only@example.org', from: 'Mallory <mallory@example.org>', subject: 'Look <b>here</b>',
      headers: { 'Content-Type': 'text/html; charset=utf-8' },
      body: '<p>Hello <script>alert(1)</script><img src="http://tracker.example/x.png" onerror="alert(2)"> world &amp; friends</p>',
    });
    const page = await mod.get(H);
    expect(page.status).toBe(200);
    expect(page.text).toContain('mallory@example.org');
    expect(page.text).toContain('Look &lt;b&gt;here&lt;/b&gt;');
    expect(page.text).toMatch(/KB/);
    const preview = await mod.get(`${H}/${id}`);
    expect(preview.status).toBe(200);
    expect(preview.text).toContain('Mallory &lt;mallory@example.org&gt;');
    expect(preview.text).toContain('Hello');
    expect(preview.text).toContain('world &amp; friends');
    expect(preview.text).not.toContain('<script>alert(1)');
    // Nothing from the message is markup on the page: no image is loaded, no handler attached.
    expect(preview.text).not.toMatch(/<img[^>]*tracker/);
    expect(preview.text).not.toMatch(/<[^>]+onerror=/);
  });

  it('approves a held post once: copies are queued for the members, the decision is recorded', async () => {
    const id = await hold({ id: 'approve-me@example.org', subject: 'Approve me' });
    const r = await mod.post(H, { ids: String(id), action: 'approve' });
    expect(r.status).toBe(303);
    expect(await state(id)).toMatchObject({ state: 'approved', decided_by: 'mod@example.org' });
    expect(await postCopies()).toEqual(['reader@example.net']);
    const again = await mod.post(H, { ids: String(id), action: 'approve' });
    expect(again.status).toBe(303);
    expect(await postCopies()).toEqual(['reader@example.net']);
    const { rows } = await db.pool.query(`select actor, action, target from audit_log where action like 'held.%' and target = 'approve-me@example.org'`);
    expect(rows).toEqual([{ actor: 'mod@example.org', action: 'held.approve', target: 'approve-me@example.org' }]);
  });

  it('writes the approval and its audit entry in one transaction: when the audit entry fails, the post stays held and nothing is sent', async () => {
    const id = await hold({ id: 'audit-fails@example.org', subject: 'Audit me' });
    await db.pool.query(`create function refuse_audit() returns trigger language plpgsql as $$
      begin if new.target = 'audit-fails@example.org' then raise exception 'audit log unavailable'; end if; return new; end $$`);
    await db.pool.query(`create trigger refuse_audit before insert on audit_log for each row execute function refuse_audit()`);
    try {
      const r = await mod.post(H, { ids: String(id), action: 'approve' });
      expect(r.status).toBe(500);
      expect(await state(id)).toMatchObject({ state: 'held', decided_by: null });
      expect(await postCopies()).toEqual([]);
      expect((await db.pool.query(`select 1 from list_messages lm join messages m on m.id = lm.message_id where m.message_id = 'audit-fails@example.org'`)).rows).toEqual([]);
    } finally {
      await db.pool.query(`drop trigger refuse_audit on audit_log; drop function refuse_audit()`);
    }
    expect((await mod.post(H, { ids: String(id), action: 'approve' })).status).toBe(303);
    expect(await state(id)).toMatchObject({ state: 'approved', decided_by: 'mod@example.org' });
    expect(await postCopies()).toEqual(['reader@example.net']);
    const { rows } = await db.pool.query(`select actor, action from audit_log where target = 'audit-fails@example.org'`);
    expect(rows).toEqual([{ actor: 'mod@example.org', action: 'held.approve' }]);
  });

  it('rejects with a reason that is mailed to the sender', async () => {
    const id = await hold({ id: 'reject-me@example.org', from: 'Bob <bob@example.org>', subject: 'Off topic' });
    await mod.post(H, { ids: String(id), action: 'reject', reason: 'Please keep to the topic of the list.' });
    expect(await state(id)).toMatchObject({ state: 'rejected', decision_reason: 'Please keep to the topic of the list.' });
    const mail = await queuedMail(db, 'bob@example.org');
    expect(mail).toHaveLength(1);
    expect(mail[0].text).toContain('Please keep to the topic of the list.');
    expect(await postCopies()).toEqual([]);
  });

  it('discards in bulk with checkboxes, silently', async () => {
    const ids = [await hold({ id: 'spam1@example.org', from: 'S <s1@spam.example>' }), await hold({ id: 'spam2@example.org', from: 'S <s2@spam.example>' }), await hold({ id: 'spam3@example.org', from: 'S <s3@spam.example>' })];
    const r = await mod.post(H, { ids: ids.map(String), action: 'discard' });
    expect(r.status).toBe(303);
    for (const id of ids) expect((await state(id)).state).toBe('discarded');
    expect(await queuedMail(db)).toHaveLength(0);
    const page = await mod.get(H);
    for (const id of ids) expect(page.text).not.toContain(`name="ids" value="${id}"`);
    expect(page.text).toContain('held.discard');
  });

  it('approves and allowlists the sender, or discards and bans them', async () => {
    const a = await hold({ id: 'friend@example.org', from: 'Friend <friend@example.org>' });
    const b = await hold({ id: 'troll@example.org', from: 'Troll <troll@example.org>' });
    await mod.post(H, { ids: String(a), action: 'approve-allow' });
    await mod.post(H, { ids: String(b), action: 'discard-ban' });
    const { rows } = await db.pool.query('select email, kind, created_by from sender_rules where list_id = $1 order by email', [dev.id]);
    expect(rows).toEqual([
      { email: 'friend@example.org', kind: 'allow', created_by: 'mod@example.org' },
      { email: 'troll@example.org', kind: 'ban', created_by: 'mod@example.org' },
    ]);
    // The allowlisted sender's next post is not held any more.
    await sendRaw(smtp.port, { from: 'friend@example.org', to: ['dev@lists.example.org'] }, message({ id: 'friend-2@example.org', from: 'Friend <friend@example.org>', to: 'dev@lists.example.org' }));
    expect((await db.pool.query(`select 1 from held_messages where message_id = 'friend-2@example.org' and state = 'held'`)).rows).toHaveLength(0);
    const page = await mod.get(H);
    expect(page.text).toContain('troll@example.org');
    // Remove the ban from the sender rules section.
    await mod.post('/admin/lists/dev@lists.example.org/senders', { action: 'remove', email: 'troll@example.org' });
    expect((await db.pool.query(`select 1 from sender_rules where email = 'troll@example.org'`)).rows).toHaveLength(0);
  });

  it('ignores held ids of another list sent through a list the moderator does handle', async () => {
    const id = await hold({ id: 'not-yours@example.org' });
    const r = await otherMod.post('/admin/lists/qa@lists.example.org/held', { ids: String(id), action: 'discard' });
    expect(r.status).toBe(303);
    expect((await state(id)).state).toBe('held');
    expect((await otherMod.get(`/admin/lists/qa@lists.example.org/held/${id}`)).status).toBe(404);
    expect((await otherMod.post(H, { ids: String(id), action: 'discard' })).status).toBe(403);
  });
});
