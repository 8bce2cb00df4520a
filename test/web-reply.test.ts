import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { parse } from '../src/mail/parse.ts';
import { messageUrl } from '../src/mail/urls.ts';
import { REPLY_REFERENCES } from '../src/mail/web-reply.ts';
import { MAX_REPLY_BYTES, REPLIES_PER_HOUR, replyUrl } from '../src/web/archive/reply.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let mod: ListRow;
let member: WebClient;
let outsider: WebClient;

const PARENT = 'parent.1@example.org';
const MODERATED = 'held-parent@example.org';
const ODD = 'odd/id+&=?#1@example.org';
const oldRefs = Array.from({ length: 30 }, (_, i) => `ref${i}@example.org`);

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  mod = await createList(db.pool, { address: 'mod@lists.example.org', name: 'Mod', description: '', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, dev.id, 'me@example.org', 'each', 'Zoë Member');
  await addMember(db.pool, mod.id, 'me@example.org', 'each');
  await archive(db.pool, dev, mail({ id: PARENT, subject: 'Plans for the release', date: 'Mon, 02 Mar 2026 10:00:00 +0000', references: oldRefs }));
  await archive(db.pool, dev, mail({ id: ODD, subject: 'Re: Café & co', date: 'Mon, 02 Mar 2026 11:00:00 +0000' }));
  await archive(db.pool, mod, mail({ id: MODERATED, subject: 'Moderated topic', date: 'Mon, 02 Mar 2026 12:00:00 +0000' }));
  member = await loggedIn(db, web.url, 'me@example.org');
  outsider = await loggedIn(db, web.url, 'stranger@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from rate_limits');
});

const unescape = (s: string) => s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
const mailtoOf = (html: string) => unescape(/href="(mailto:[^"]*)"/.exec(html)?.[1] ?? '');

async function archivedReplies(parent: string) {
  const { rows } = await db.pool.query<{ message_id: string; raw: Buffer; thread_id: string; parent_thread: string }>(
    `select m.message_id, m.raw, m.thread_id, p.thread_id as parent_thread from messages m join messages p on p.message_id = m.in_reply_to where m.in_reply_to = $1 order by m.id`,
    [parent],
  );
  return rows;
}

describe('reply from the web', () => {
  it('shows an active member the form, with CSRF, on the message page', async () => {
    const r = await member.get(messageUrl(PARENT));
    expect(r.status).toBe(200);
    expect(r.text).toContain(`action="${replyUrl(PARENT)}"`);
    expect(r.text).toMatch(/name="_csrf" value="[A-Za-z0-9_-]{32,}"/);
    expect(r.text).toContain('Subject: Re: Plans for the release');
  });

  it('archives the reply in the same thread with the headers of a reply', async () => {
    const r = await member.post(replyUrl(PARENT), { list: 'dev', body: 'Sounds good to me.\nShip it — on Friday.' });
    expect(r.status).toBe(200);
    expect(r.text).toContain('Reply posted');
    const [reply] = await archivedReplies(PARENT);
    expect(reply).toBeDefined();
    expect(reply.thread_id).toBe(reply.parent_thread);
    expect(r.text).toContain(`href="${messageUrl(reply.message_id)}"`);
    const parsed = await parse(reply.raw);
    expect(parsed.fromEmail).toBe('me@example.org');
    expect(parsed.headers.get('from')?.[0]).toContain('=?UTF-8?');
    expect(parsed.headers.get('to')).toEqual(['dev@lists.example.org']);
    expect(parsed.subject).toBe('Re: Plans for the release');
    expect(parsed.inReplyTo).toBe(PARENT);
    expect(reply.message_id).toMatch(/@lists\.example\.org$/);
    // The parent's References (30) plus the parent, capped: the root and the newest.
    expect(parsed.references).toHaveLength(REPLY_REFERENCES);
    expect(parsed.references[0]).toBe('ref0@example.org');
    expect(parsed.references.at(-1)).toBe(PARENT);
    expect(parsed.references.at(-2)).toBe('ref29@example.org');
    expect(parsed.headers.get('mime-version')).toEqual(['1.0']);
    expect(parsed.headers.get('content-type')?.[0]).toMatch(/^text\/plain; charset=utf-8/);
    expect(parsed.headers.get('date')?.[0]).toMatch(/\+0000$/);
    expect(parsed.text).toContain('Ship it — on Friday.');
    // The login vouched for the sender: not held as an unauthenticated member post.
    const checks = await db.pool.query(`select checks->'auth'->>'header' as header from messages where message_id = $1`, [reply.message_id]);
    expect(checks.rows[0].header).toMatch(/; auth=pass smtp\.auth=me@example\.org$/);
    // The parent's page now lists it as a reply.
    expect((await member.get(messageUrl(PARENT))).text).toContain(messageUrl(reply.message_id));
  });

  it('writes the From of a member whose name is 200 CJK characters in lines of at most 998 octets, the name whole', async () => {
    // The web subscription form takes a name of 200 characters. In encoded words it was a From
    // line of over 1,000 octets, which every member's copy of the reply carried as it was.
    const name = '山田太郎と申します。よろしくお願いいたします'.repeat(10).slice(0, 200);
    await addMember(db.pool, dev.id, 'wide@example.org', 'each', name);
    const wide = await loggedIn(db, web.url, 'wide@example.org');
    const id = 'wide-name-parent@example.org';
    await archive(db.pool, dev, mail({ id, subject: 'A wide name', date: 'Mon, 02 Mar 2026 14:00:00 +0000' }));
    expect((await wide.post(replyUrl(id), { list: 'dev', body: 'Hello.' })).status).toBe(200);
    const [reply] = await archivedReplies(id);
    const head = reply.raw.toString('latin1').split('\r\n\r\n')[0];
    expect(Math.max(...head.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(998);
    const parsed = await parse(reply.raw);
    expect(parsed.fromEmail).toBe('wide@example.org');
    expect(parsed.fromName).toBe(name);
  });

  it('does not double "Re:"', async () => {
    const r = await member.post(replyUrl(ODD), { list: 'dev', body: 'Merci' });
    expect(r.status).toBe(200);
    const [reply] = await archivedReplies(ODD);
    expect((await parse(reply.raw)).subject).toBe('Re: Café & co');
  });

  it('sends the subject the form showed, even when the parent\'s reads like an encoded word', async () => {
    // The parent's subject, decoded, is the text "=?utf-8?b?SSBxdWl0?=": sent as it is, every
    // reader would decode it again, to "I quit", a subject the member never saw nor wrote.
    const id = 'encoded-word-subject@example.org';
    await archive(db.pool, dev, mail({ id, subject: '=?utf-8?q?=3D=3Futf-8=3Fb=3FSSBxdWl0=3F=3D?=', date: 'Mon, 02 Mar 2026 13:00:00 +0000' }));
    const page = await member.get(messageUrl(id));
    expect(page.text).toContain('Subject: Re: =?utf-8?b?SSBxdWl0?=');
    expect((await member.post(replyUrl(id), { list: 'dev', body: 'Agreed.' })).status).toBe(200);
    const [reply] = await archivedReplies(id);
    expect((await parse(reply.raw)).subject).toBe('Re: =?utf-8?b?SSBxdWl0?=');
  });

  it('holds a reply to a moderated list for a moderator', async () => {
    const r = await member.post(replyUrl(MODERATED), { list: 'mod', body: 'A held reply' });
    expect(r.status).toBe(200);
    expect(r.text).toContain('held for a moderator');
    expect(await archivedReplies(MODERATED)).toEqual([]);
    const held = await db.pool.query(`select from_email, subject, state from held_messages where list_id = $1`, [mod.id]);
    expect(held.rows).toEqual([{ from_email: 'me@example.org', subject: 'Re: Moderated topic', state: 'held' }]);
  });

  it('refuses an empty reply and shows the form again', async () => {
    const before = (await archivedReplies(PARENT)).length;
    const r = await member.post(replyUrl(PARENT), { list: 'dev', body: '  \n ' });
    expect(r.status).toBe(400);
    expect(r.text).toContain('The reply is empty');
    expect(r.text).toContain(`action="${replyUrl(PARENT)}"`);
    expect((await archivedReplies(PARENT)).length).toBe(before);
  });

  it('refuses a reply over the size bound, keeping the text', async () => {
    const r = await member.post(replyUrl(PARENT), { list: 'dev', body: 'x'.repeat(MAX_REPLY_BYTES + 1) });
    expect(r.status).toBe(413);
    expect(r.text).toContain('longer than');
    expect(r.text).toContain('<textarea');
  });

  it('keeps the text when the database fails after the post, and a second send posts it once', async () => {
    const body = 'Posted once, whatever the server says the first time.';
    const encoded = Buffer.from(body).toString('base64').slice(0, 40); // the reply's body is base64
    const copies = async () => (await archivedReplies(PARENT)).filter((x) => x.raw.toString().includes(encoded));
    // The post is archived, then the web process's next statement fails (what a dropped connection
    // after the commit looks like to it): it cannot know the reply went in.
    await db.pool.query('alter table held_messages rename to held_messages_away');
    let first;
    try {
      first = await member.post(replyUrl(PARENT), { list: 'dev', body });
    } finally {
      await db.pool.query('alter table held_messages_away rename to held_messages');
    }
    expect(first.status).toBe(503);
    expect(first.text).toContain('The reply could not be posted just now');
    expect(first.text).toContain(body);
    const replyId = /name="reply_id" value="([^"]+)"/.exec(first.text)?.[1];
    expect(replyId).toMatch(/@/);
    expect(await copies()).toHaveLength(1);

    const again = await member.post(replyUrl(PARENT), { list: 'dev', body, reply_id: unescape(replyId!) });
    expect(again.status).toBe(200);
    expect(again.text).toContain('Reply posted');
    expect(await copies()).toHaveLength(1);
    expect((await archivedReplies(PARENT)).map((x) => x.message_id)).toContain(unescape(replyId!));

    // Only an id this server could have made is taken: anything else is a new reply's.
    const forged = await member.post(replyUrl(PARENT), { list: 'dev', body: 'A new one.', reply_id: PARENT });
    expect(forged.status).toBe(200);
    expect((await archivedReplies(PARENT)).map((x) => x.message_id)).not.toContain(PARENT);
  });

  it('refuses a POST without the CSRF token (403)', async () => {
    const before = (await archivedReplies(PARENT)).length;
    const r = await member.post(replyUrl(PARENT), { list: 'dev', body: 'no token' }, { csrf: false });
    expect(r.status).toBe(403);
    expect(r.text).toContain('CSRF');
    expect((await archivedReplies(PARENT)).length).toBe(before);
  });

  it('gives a non-member only the mailto link, and refuses their POST (403)', async () => {
    const page = await outsider.get(messageUrl(PARENT));
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(`action="${replyUrl(PARENT)}"`);
    expect(mailtoOf(page.text)).toMatch(/^mailto:dev@lists\.example\.org\?/);
    const before = (await archivedReplies(PARENT)).length;
    const r = await outsider.post(replyUrl(PARENT), { list: 'dev', body: 'let me in' });
    expect(r.status).toBe(403);
    expect(r.text).toContain('Only active members');
    expect((await archivedReplies(PARENT)).length).toBe(before);
    // Nor may an anonymous reader post (a CSRF cookie is not a login).
    expect((await new WebClient(web.url).post(replyUrl(PARENT), { list: 'dev', body: 'anon' })).status).toBe(403);
  });

  it('gives anonymous readers a correctly encoded mailto link (RFC 6068)', async () => {
    const r = await new WebClient(web.url).get(messageUrl(ODD));
    expect(r.status).toBe(200);
    expect(r.text).not.toContain('<textarea');
    const href = mailtoOf(r.text);
    expect(href).toBe(`mailto:dev@lists.example.org?subject=Re%3A%20Caf%C3%A9%20%26%20co&In-Reply-To=%3Codd%2Fid%2B%26%3D%3F%231%40example.org%3E`);
    const u = new URL(href);
    expect(u.searchParams.get('subject')).toBe('Re: Café & co');
    expect(u.searchParams.get('In-Reply-To')).toBe(`<${ODD}>`);
  });

  it(`rate-limits replies per account (${REPLIES_PER_HOUR} an hour, then 429)`, async () => {
    for (let i = 0; i < REPLIES_PER_HOUR; i++) {
      expect((await member.post(replyUrl(PARENT), { list: 'dev', body: `reply ${i}` })).status).toBe(200);
    }
    const before = (await archivedReplies(PARENT)).length;
    const r = await member.post(replyUrl(PARENT), { list: 'dev', body: 'one too many' });
    expect(r.status).toBe(429);
    expect(r.text).toContain('the most allowed');
    expect((await archivedReplies(PARENT)).length).toBe(before);
  });
});
