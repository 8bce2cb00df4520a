import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { heldPreview } from '../src/web/admin/held-preview.ts';
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
    // The first POST only asks: a page naming the posts, with a confirm button; nothing is discarded yet.
    const ask = await mod.post(H, { ids: ids.map(String), action: 'discard' });
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('Discard these messages?');
    for (const i of [1, 2, 3]) expect(ask.text).toContain(`s${i}@spam.example`);
    expect(ask.text).toMatch(/<input type="hidden" name="confirm" value="1">/);
    for (const id of ids) expect((await state(id)).state).toBe('held');
    const r = await mod.post(H, { ids: ids.map(String), action: 'discard', confirm: '1' });
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
    expect((await mod.post(H, { ids: String(b), action: 'discard-ban' })).status).toBe(200);
    expect((await state(b)).state).toBe('held');
    await mod.post(H, { ids: String(b), action: 'discard-ban', confirm: '1' });
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

  it('takes a sender rule for 1 to 99999 days, and refuses any other number of days rather than make the rule last for ever', async () => {
    const senders = '/admin/lists/dev@lists.example.org/senders';
    await mod.post(senders, { action: 'add', kind: 'ban', email: 'week@example.org', days: '7' });
    for (const days of ['-1', '0', '1.5', '1e3', '100000', '100000000']) {
      const r = await mod.post(senders, { action: 'add', kind: 'ban', email: `typo${days}@example.org`, days });
      expect(r.status, days).toBe(303);
      expect(decodeURIComponent(r.headers.getSetCookie().join(';')), days).toContain('a whole number from 1 to 99999');
    }
    const { rows } = await db.pool.query<{ email: string; days: number }>(
      `select email, round(extract(epoch from expires_at - now()) / 86400)::int as days from sender_rules where list_id = $1 and (email like 'typo%' or email = 'week@example.org')`, [dev.id]);
    expect(rows).toEqual([{ email: 'week@example.org', days: 7 }]);
  });

  it('ignores held ids of another list sent through a list the moderator does handle', async () => {
    const id = await hold({ id: 'not-yours@example.org' });
    const r = await otherMod.post('/admin/lists/qa@lists.example.org/held', { ids: String(id), action: 'discard', confirm: '1' });
    expect(r.status).toBe(303);
    expect((await state(id)).state).toBe('held');
    expect((await otherMod.get(`/admin/lists/qa@lists.example.org/held/${id}`)).status).toBe(404);
    expect((await otherMod.post(H, { ids: String(id), action: 'discard', confirm: '1' })).status).toBe(403);
    expect((await otherMod.post(`${H}/sender`, { sender: '@example.org', action: 'discard-sender', confirm: '1' })).status).toBe(403);
    expect((await state(id)).state).toBe('held');
  });

  it('pages a flood of held posts, 50 a page, with an honest count', async () => {
    await clearQueue();
    await floodHeld(120, 'flood.example');
    const first = await mod.get(H);
    expect(first.text).toContain('120 messages held; showing 1–50, page 1 of 3.');
    expect(first.text.match(/name="ids" value=/g)).toHaveLength(50);
    const third = await mod.get(`${H}?page=3`);
    expect(third.text).toContain('showing 101–120, page 3 of 3');
    expect(third.text.match(/name="ids" value=/g)).toHaveLength(20);
    expect(third.text).toContain('Flood 120<');
    expect(third.text).not.toContain('Flood 100<');
    expect((await mod.get(`${H}?page=9`)).location).toBe(`${H}?page=3`);
  });

  it('"select all on this page" acts on every post listed on the page, and only those, after confirming', async () => {
    await clearQueue();
    const ids = await floodHeld(60, 'flood.example');
    const page = await mod.get(H);
    const pageIds = [...page.text.matchAll(/name="page_ids" value="(\d+)"/g)].map((m) => m[1]);
    expect(pageIds).toEqual(ids.slice(0, 50).map(String));
    const ask = await mod.post(H, { all: '1', page_ids: pageIds, action: 'discard', page: '1' });
    expect(ask.status).toBe(200);
    expect(ask.text.match(/name="ids" value=/g)).toHaveLength(50);
    expect(await heldCount()).toBe(60);
    const r = await mod.post(H, { ids: pageIds, action: 'discard', page: '1', confirm: '1' });
    expect(r.status).toBe(303);
    const { rows } = await db.pool.query(`select id from held_messages where list_id = $1 and state = 'held' order by id`, [dev.id]);
    expect(rows.map((x) => x.id)).toEqual(ids.slice(50));
    const audited = await db.pool.query(`select count(*)::int as n from audit_log where action = 'held.discard' and (detail->>'id')::bigint = any($1::bigint[])`, [ids]);
    expect(audited.rows[0].n).toBe(50);
    // A second click is harmless: nothing is held any more among those ids.
    const again = await mod.post(H, { ids: pageIds, action: 'discard', confirm: '1' });
    expect(again.status).toBe(303);
    expect(await heldCount()).toBe(10);
  });

  it('discards all held from one address, or bans a whole domain and discards all held from it', async () => {
    await clearQueue();
    await floodHeld(3, 'bad.example');
    const bob = await hold({ id: 'bob-1@other.example', from: 'Bob <bob@other.example>' });
    const bob2 = await hold({ id: 'bob-2@other.example', from: 'Bob <bob@other.example>' });
    const carol = await hold({ id: 'carol@other.example', from: 'Carol <carol@other.example>' });
    // One address.
    const ask = await mod.post(`${H}/sender`, { sender: 'Bob@Other.example', action: 'discard-sender' });
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('Discard all held from bob@other.example?');
    expect(ask.text).toContain('2 held messages');
    expect((await state(bob)).state).toBe('held');
    expect((await mod.post(`${H}/sender`, { sender: 'bob@other.example', action: 'discard-sender' }, { csrf: false })).status).toBe(403);
    expect((await state(bob)).state).toBe('held');
    await mod.post(`${H}/sender`, { sender: 'bob@other.example', action: 'discard-sender', confirm: '1' });
    expect([(await state(bob)).state, (await state(bob2)).state, (await state(carol)).state]).toEqual(['discarded', 'discarded', 'held']);
    // A whole domain, from a ticked post: the ban rule is written, every post held from it goes.
    const [one] = (await db.pool.query(`select id from held_messages where from_email like '%@bad.example' and state = 'held' order by id limit 1`)).rows;
    const askDomain = await mod.post(H, { ids: String(one.id), action: 'discard-ban-domain' });
    expect(askDomain.text).toContain('Domains: @bad.example.');
    expect((await db.pool.query(`select 1 from sender_rules where email = '@bad.example'`)).rows).toHaveLength(0);
    await mod.post(H, { ids: String(one.id), action: 'discard-ban-domain', confirm: '1' });
    expect((await db.pool.query(`select email, kind, created_by from sender_rules where list_id = $1 and email = '@bad.example'`, [dev.id])).rows)
      .toEqual([{ email: '@bad.example', kind: 'ban', created_by: 'mod@example.org' }]);
    expect((await db.pool.query(`select state from held_messages where from_email like '%@bad.example'`)).rows.map((x) => x.state)).toEqual(['discarded', 'discarded', 'discarded']);
    expect((await state(carol)).state).toBe('held');
    const audit = await db.pool.query(`select action, target from audit_log where action in ('sender.ban', 'held.discard-ban') and (target = '@bad.example' or detail->>'sender' = '@bad.example') order by id`);
    expect(audit.rows.map((x) => x.action)).toEqual(['sender.ban', 'held.discard-ban', 'held.discard-ban', 'held.discard-ban']);
    // The next post from the domain is dropped, not held.
    await sendRaw(smtp.port, { from: 'new@bad.example', to: ['dev@lists.example.org'] }, message({ id: 'late@bad.example', from: 'N <new@bad.example>', to: 'dev@lists.example.org' }));
    expect((await db.pool.query(`select state from held_messages where message_id = 'late@bad.example'`)).rows).toEqual([{ state: 'discarded' }]);
    // Ban by the sender form: confirmed, then the rule exists even though nothing was held.
    await mod.post(`${H}/sender`, { sender: '@worse.example', action: 'discard-ban-sender', confirm: '1' });
    expect((await db.pool.query(`select kind from sender_rules where email = '@worse.example'`)).rows).toEqual([{ kind: 'ban' }]);
  });
});

async function clearQueue() {
  await db.pool.query(`update held_messages set state = 'discarded', decided_by = 'test' where state = 'held'`);
}

const heldCount = async () => (await db.pool.query<{ n: number }>(`select count(*)::int as n from held_messages where list_id = $1 and state = 'held'`, [dev.id])).rows[0].n;

/** `n` held posts on dev, from n addresses at `domain`, received a second apart in order; their ids. */
async function floodHeld(n: number, domain: string): Promise<number[]> {
  const { rows } = await db.pool.query<{ id: number }>(
    `insert into held_messages (list_id, message_id, raw, size, from_email, from_name, subject, reason, rule, state, received_at)
     select $1, 'flood-' || g || '-' || $3 || '@' || $2, convert_to('Subject: Flood ' || g, 'UTF8'), 20, 'user' || g || '@' || $2, '', 'Flood ' || g,
            'moderated list', 'moderated', 'held', now() - interval '1 day' + make_interval(secs => g)
       from generate_series(1, $4::int) g returning id`,
    [dev.id, domain, Date.now(), n],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

describe('the preview of a held post', () => {
  it('makes text of HTML only when that is cheap: a part nested 60,000 deep is left out, at once', async () => {
    const withHtml = (html: string) => Buffer.from([
      'From: Mallory <mallory@example.net>', 'Subject: held', 'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary=b', '',
      '--b', 'Content-Type: text/plain', '', '', '--b', 'Content-Type: text/html', '', html, '--b--', '',
    ].join('\r\n'));
    const started = Date.now();
    const deep = await heldPreview(withHtml(`${'<div>'.repeat(60_000)}deep inside`));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(deep).toMatchObject({ text: '\n', fromHtml: false, problem: null });
    expect(await heldPreview(withHtml('<p>Buy <b>now</b></p>'))).toMatchObject({ text: 'Buy now', fromHtml: true });
  });
});
