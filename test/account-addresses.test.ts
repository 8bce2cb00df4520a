import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { upsertAccount } from '../src/db/accounts.ts';
import { hashPassword } from '../src/auth/credentials.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, mailArrives, queuedMail, WebClient } from './helpers/browser.ts';
import { archive, mail } from './fixtures/archive/seed.ts';
import { parse } from '../src/mail/parse.ts';
import { messageUrl } from '../src/mail/urls.ts';
import { replyUrl } from '../src/web/archive/reply.ts';
import { makePrimaryAddress, removeAccountAddress } from '../src/core/account-addresses.ts';

let db: TestDatabase;
let web: RunningWeb;
let secret: ListRow;
let dev: ListRow;
const PASSWORD = 'correct horse battery';

const newList = (local: string, subscribePolicy: 'open' | 'confirm' | 'approve', archive: 'public' | 'members' = 'public') => createList(db.pool, {
  address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'members', subscribePolicy, archive, owners: ['owner@example.org'],
});

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  secret = await newList('secret', 'confirm', 'members');
  dev = await newList('dev', 'confirm');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from rate_limits');
  await db.pool.query('delete from outbox');
  await db.pool.query('delete from outbound_mail');
});

/** The verification link in the last mail to `to`, as a path. */
async function linkTo(to: string): Promise<string> {
  const mails = await queuedMail(db, to);
  expect(mails.at(-1)!.subject).toBe('Confirm your address');
  return new URL(/https?:\/\/\S+\/account\/addresses\/verify\/\S+/.exec(mails.at(-1)!.text)![0]).pathname;
}

/** Adds an address and follows the mailed link: what a person does with their second address. */
async function addVerified(c: WebClient, email: string): Promise<void> {
  expect((await c.post('/account/addresses', { email })).status).toBe(303);
  const link = await linkTo(email);
  expect((await c.post(link)).status).toBe(303);
}

const verifiedAt = async (account: string, email: string) => (await db.pool.query(
  `select aa.verified_at from account_addresses aa join accounts a on a.id = aa.account_id where a.email = $1 and aa.email = $2`, [account, email])).rows[0]?.verified_at;

/** The account a session belongs to, by the /account page's "Logged in as". */
const loggedInAs = async (c: WebClient) => /Logged in as <strong>([^<]+)<\/strong>/.exec((await c.get('/account')).text)?.[1] ?? null;

describe('adding an address', () => {
  it('mails a link that verifies it, once, in a session of the account that asked', async () => {
    const me = await loggedIn(db, web.url, 'ann@example.org');
    const added = await me.post('/account/addresses', { email: 'Ann.Work@Example.org' });
    expect(added.status).toBe(303);
    const page = (await me.get('/account')).text;
    expect(page).toContain('A link is on its way to ann.work@example.org');
    expect(page).toMatch(/data-address="ann\.work@example\.org">[\s\S]*?awaiting confirmation/);
    expect(await verifiedAt('ann@example.org', 'ann.work@example.org')).toBeNull();

    const mails = await queuedMail(db, 'ann.work@example.org');
    expect(mails).toHaveLength(1);
    expect(mails[0].text).toContain('logged in to');
    expect(mails[0].text).toContain('as ann@example.org');
    const link = await linkTo('ann.work@example.org');
    // Logged out, the link leads to the login page and back.
    const anonymous = await new WebClient(web.url).get(link);
    expect(anonymous.status).toBe(303);
    expect(anonymous.location).toBe(`/login?next=${encodeURIComponent(link)}`);
    // Opening it shows a button; a mail scanner's GET does not use it up.
    const ask = await me.get(link);
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('Add <strong>ann.work@example.org</strong> to your account');
    expect(await verifiedAt('ann@example.org', 'ann.work@example.org')).toBeNull();
    const done = await me.post(link);
    expect(done.status).toBe(303);
    expect(done.location).toBe('/account');
    expect(await verifiedAt('ann@example.org', 'ann.work@example.org')).toBeInstanceOf(Date);
    expect((await me.get('/account')).text).toMatch(/data-address="ann\.work@example\.org">[\s\S]*?>verified</);
    // Used once.
    expect((await me.post(link)).status).toBe(410);
    const audit = await db.pool.query(`select actor, action, target from audit_log where target = 'ann.work@example.org' order by id`);
    expect(audit.rows).toEqual([
      { actor: 'ann@example.org', action: 'account.address_add', target: 'ann.work@example.org' },
      { actor: 'ann@example.org', action: 'account.address_verify', target: 'ann.work@example.org' },
    ]);
    // The primary address is told once, with what to do if it was not them, the new address not named.
    const told = (await queuedMail(db, 'ann@example.org')).filter((m) => m.subject === 'An address was added to your account');
    expect(told).toHaveLength(1);
    expect(told[0].text).toMatch(/^Another address was added to your account on .* \(ann@example\.org, this address\) on \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    expect(told[0].text).toContain('remove the addresses you do not know');
    expect(told[0].text).not.toContain('ann.work');
  });

  it('refuses an expired link, and one asked for by another account without using it up', async () => {
    const me = await loggedIn(db, web.url, 'bea@example.org');
    const someoneElse = await loggedIn(db, web.url, 'carl@example.org');
    await me.post('/account/addresses', { email: 'bea2@example.org' });
    const link = await linkTo('bea2@example.org');
    const foreign = await someoneElse.get(link);
    expect(foreign.status).toBe(403);
    expect(foreign.text).toContain('was asked for by another account');
    expect((await someoneElse.post(link)).status).toBe(403);
    expect(await db.pool.query(`select 1 from account_addresses aa join accounts a on a.id = aa.account_id where a.email = 'carl@example.org' and aa.email = 'bea2@example.org'`)).toHaveProperty('rowCount', 0);
    // Still good for the account that asked, until it expires.
    await db.pool.query(`update login_tokens set expires_at = now() - interval '1 second' where purpose = 'verify' and email = 'bea2@example.org'`);
    const expired = await me.post(link);
    expect(expired.status).toBe(410);
    expect(expired.text).toContain('This link has expired');
    expect(await verifiedAt('bea@example.org', 'bea2@example.org')).toBeNull();
    expect((await me.get('/account/addresses/verify/not-a-token')).status).toBe(410);
  });

  it("cannot take another account's address, and answers as for any other address", async () => {
    const owner = await loggedIn(db, web.url, 'dora@example.org');
    const me = await loggedIn(db, web.url, 'eve@example.org');
    const flashOf = (r: { headers: Headers }) => decodeURIComponent(r.headers.getSetCookie().filter((l) => l.startsWith('lk_flash=')).at(-1)!.split(';')[0]);
    const free = await me.post('/account/addresses', { email: 'free@example.org' });
    const taken = await me.post('/account/addresses', { email: 'dora@example.org' });
    expect(taken.status).toBe(free.status);
    expect(flashOf(taken).replace('dora@example.org', 'X')).toBe(flashOf(free).replace('free@example.org', 'X'));
    expect((await me.get('/account')).text).toMatch(/data-address="dora@example\.org">[\s\S]*?awaiting confirmation/);
    expect(await queuedMail(db, 'dora@example.org')).toHaveLength(1);
    // Whoever follows the link (here the asker, as if they read that mailbox) changes nothing.
    const refused = await me.post(await linkTo('dora@example.org'));
    expect(refused.status).toBe(409);
    expect(refused.text).toContain('already a verified address of another account');
    expect(await verifiedAt('eve@example.org', 'dora@example.org')).toBeNull();
    expect(await verifiedAt('dora@example.org', 'dora@example.org')).toBeInstanceOf(Date);
    expect(await loggedInAs(owner)).toBe('dora@example.org');
  });

  it("refuses a list's own addresses: a link mailed there would wait in the list's queue, to be published if approved", async () => {
    const me = await loggedIn(db, web.url, 'lee@example.org');
    for (const email of ['dev@lists.example.org', 'DEV-request@lists.example.org', 'secret-owner@lists.example.org', 'dev-bounces+abc@lists.example.org']) {
      const r = await me.post('/account/addresses', { email });
      expect(r.status, email).toBe(400);
      expect(r.text).toContain('is an address of a mailing list on this site');
    }
    expect((await db.pool.query(`select email from account_addresses where email like '%@lists.example.org'`)).rows).toEqual([]);
    expect(await queuedMail(db)).toEqual([]);
    // An address that only looks like one (no such list) is anybody's.
    expect((await me.post('/account/addresses', { email: 'nolist-request@lists.example.org' })).status).toBe(303);
  });

  it('refuses every new form without its CSRF token, and nothing changes', async () => {
    const me = await loggedIn(db, web.url, 'fay@example.org');
    await addVerified(me, 'fay2@example.org');
    await me.post('/account/addresses', { email: 'fay3@example.org' });
    const link = await linkTo('fay3@example.org');
    await addMember(db.pool, dev.id, 'fay@example.org', 'each');
    const member = (await findMember(db.pool, dev.id, 'fay@example.org'))!;
    for (const [path, form] of [
      ['/account/addresses', { email: 'fay4@example.org' }],
      ['/account/addresses/remove', { email: 'fay2@example.org', confirm: '1' }],
      ['/account/addresses/primary', { email: 'fay2@example.org' }],
      [link, {}],
      [`/account/subscriptions/${member.id}`, { action: 'address', email: 'fay2@example.org' }],
    ] as const) {
      expect((await me.post(path, form, { csrf: false })).status, path).toBe(403);
      expect((await me.post(path, form, { csrf: 'wrong' })).status, path).toBe(403);
    }
    const { rows } = await db.pool.query(`select aa.email, aa.verified_at is not null as verified from account_addresses aa join accounts a on a.id = aa.account_id where a.email = 'fay@example.org' order by aa.email`);
    expect(rows).toEqual([{ email: 'fay2@example.org', verified: true }, { email: 'fay3@example.org', verified: false }, { email: 'fay@example.org', verified: true }]);
    expect((await findMember(db.pool, dev.id, 'fay@example.org'))!.id).toBe(member.id);
  });
});

describe('removing an address and choosing the primary one', () => {
  it('asks before removing, and never removes the primary address', async () => {
    const me = await loggedIn(db, web.url, 'gus@example.org');
    await addVerified(me, 'gus2@example.org');
    await addMember(db.pool, dev.id, 'gus2@example.org', 'each');
    const ask = await me.post('/account/addresses/remove', { email: 'gus2@example.org' });
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('Remove gus2@example.org from your account?');
    expect(ask.text).toContain('<li>dev@lists.example.org</li>');
    expect(ask.text).toContain('name="confirm" value="1"');
    expect(await verifiedAt('gus@example.org', 'gus2@example.org')).toBeInstanceOf(Date);
    const removed = await me.post('/account/addresses/remove', { email: 'gus2@example.org', confirm: '1' });
    expect(removed.status).toBe(303);
    expect(await verifiedAt('gus@example.org', 'gus2@example.org')).toBeUndefined();
    const primary = await me.post('/account/addresses/remove', { email: 'gus@example.org', confirm: '1' });
    expect(primary.status).toBe(400);
    expect(primary.text).toContain('Your primary address cannot be removed');
    expect(await verifiedAt('gus@example.org', 'gus@example.org')).toBeInstanceOf(Date);
    expect((await db.pool.query(`select action from audit_log where target = 'gus2@example.org' order by id`)).rows.map((r) => r.action))
      .toEqual(['account.address_add', 'account.address_verify', 'account.address_remove']);
  });

  it('makes a verified address primary, but not an unverified one', async () => {
    const me = await loggedIn(db, web.url, 'hal@example.org');
    await addVerified(me, 'hal2@example.org');
    await me.post('/account/addresses', { email: 'hal3@example.org' });
    expect((await me.post('/account/addresses/primary', { email: 'hal3@example.org' })).status).toBe(400);
    expect((await me.post('/account/addresses/primary', { email: 'hal2@example.org' })).status).toBe(303);
    expect(await loggedInAs(me)).toBe('hal2@example.org');
    expect((await me.get('/account')).text).toMatch(/data-address="hal2@example\.org">[\s\S]*?primary/);
    // The former primary address stays a verified one, and can now be removed.
    expect((await me.post('/account/addresses/remove', { email: 'hal@example.org', confirm: '1' })).status).toBe(303);
    const audit = await db.pool.query(`select actor, detail from audit_log where action = 'account.primary' and target = 'hal2@example.org'`);
    expect(audit.rows).toEqual([{ actor: 'hal@example.org', detail: { previous: 'hal@example.org' } }]);
  });
});

describe('logging in', () => {
  it('with any verified address lands in the same account; an unverified address is no way in', async () => {
    await upsertAccount(db.pool, 'ivy@example.org', { passwordHash: await hashPassword(PASSWORD) });
    const me = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.20' });
    expect((await me.post('/login', { email: 'ivy@example.org', password: PASSWORD })).status).toBe(303);
    await addVerified(me, 'ivy.work@example.org');
    await me.post('/account/addresses', { email: 'ivy.pending@example.org' });

    const byPassword = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.21' });
    expect((await byPassword.post('/login', { email: 'Ivy.Work@example.org', password: PASSWORD })).status).toBe(303);
    expect(await loggedInAs(byPassword)).toBe('ivy@example.org');

    const byLink = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.22' });
    expect((await byLink.post('/login/link', { email: 'ivy.work@example.org' })).status).toBe(200);
    const mail = (await mailArrives(db, 'ivy.work@example.org', 2)).find((m) => m.subject === 'Your login link')!;
    const link = new URL(/https?:\/\/\S+\/login\/link\/\S+/.exec(mail.text)![0]).pathname;
    expect((await byLink.post(link)).status).toBe(303);
    expect(await loggedInAs(byLink)).toBe('ivy@example.org');

    const unverified = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.23' });
    const refused = await unverified.post('/login', { email: 'ivy.pending@example.org', password: PASSWORD });
    expect(refused.status).toBe(401);
    expect(await loggedInAs(unverified)).toBeNull();
  });
});

describe('membership through a second address', () => {
  it('opens a members-only archive when only the verified second address is subscribed', async () => {
    await addMember(db.pool, secret.id, 'jo.home@example.org', 'each');
    const me = await loggedIn(db, web.url, 'jo@example.org');
    expect((await me.get('/lists/secret/')).status).toBe(403);
    await me.post('/account/addresses', { email: 'jo.home@example.org' });
    // Not before the address is verified.
    expect((await me.get('/lists/secret/')).status).toBe(403);
    await me.post(await linkTo('jo.home@example.org'));
    expect((await me.get('/lists/secret/')).status).toBe(200);
    const account = (await me.get('/account')).text;
    expect(account).toMatch(/data-list="secret@lists\.example\.org">[\s\S]*?jo\.home@example\.org/);
  });
});

describe('subscriptions and addresses', () => {
  it("switches a subscription to another verified address, keeping the member's row and mode", async () => {
    const me = await loggedIn(db, web.url, 'kim@example.org');
    await addVerified(me, 'kim2@example.org');
    await addMember(db.pool, dev.id, 'kim@example.org', 'digest');
    const before = (await findMember(db.pool, dev.id, 'kim@example.org'))!;
    const r = await me.post(`/account/subscriptions/${before.id}`, { action: 'address', email: 'kim2@example.org' });
    expect(r.status).toBe(303);
    const after = (await findMember(db.pool, dev.id, 'kim2@example.org'))!;
    expect(after).toMatchObject({ id: before.id, mode: 'digest', status: 'active' });
    expect(await findMember(db.pool, dev.id, 'kim@example.org')).toBeNull();
    expect((await me.get('/account')).text).toContain('dev@lists.example.org now sends to kim2@example.org.');
    const audit = await db.pool.query(`select actor, target, detail from audit_log where action = 'self.address'`);
    expect(audit.rows).toContainEqual({ actor: 'kim@example.org', target: 'kim2@example.org', detail: { from: 'kim@example.org' } });
    // Not to an address that is not a verified one of the account.
    expect((await me.post(`/account/subscriptions/${before.id}`, { action: 'address', email: 'stranger@example.org' })).status).toBe(400);
  });

  it('gives a switched subscription new unsubscribe links: those in mail sent to the former address neither show nor end it', async () => {
    const me = await loggedIn(db, web.url, 'ida@example.org');
    await addVerified(me, 'ida.home@example.org');
    await addMember(db.pool, dev.id, 'ida@example.org', 'each');
    const before = (await findMember(db.pool, dev.id, 'ida@example.org'))!;
    // A token of a row merged into this one (sql/0076) was the former address's too.
    await db.pool.query('insert into member_token_aliases (token, member_id) values ($1, $2)', ['merged0token0of0ida', before.id]);
    expect((await me.post(`/account/subscriptions/${before.id}`, { action: 'address', email: 'ida.home@example.org' })).status).toBe(303);
    const after = (await findMember(db.pool, dev.id, 'ida.home@example.org'))!;
    expect(after.token).not.toBe(before.token);
    // Whoever reads the former mailbox (an employer's, once its owner has left) follows an old link.
    const stranger = new WebClient(web.url);
    for (const old of [before.token, 'merged0token0of0ida']) {
      const page = await stranger.get(`/u/${old}`);
      expect(page.status).toBe(404);
      expect(page.text).not.toContain('ida.home@example.org');
      const oneClick = await stranger.request('POST', `/u/${old}`, 'List-Unsubscribe=One-Click', { 'content-type': 'application/x-www-form-urlencoded' });
      expect(oneClick.status).toBe(404);
    }
    expect((await findMember(db.pool, dev.id, 'ida.home@example.org'))!.status).toBe('active');
    // The new address's own link works.
    expect((await stranger.get(`/u/${after.token}`)).text).toContain('ida.home@example.org');
  });

  it('refuses to switch to an address already subscribed to the list', async () => {
    const me = await loggedIn(db, web.url, 'lee@example.org');
    await addVerified(me, 'lee2@example.org');
    await addMember(db.pool, dev.id, 'lee@example.org', 'each');
    await addMember(db.pool, dev.id, 'lee2@example.org', 'digest');
    const id = (await findMember(db.pool, dev.id, 'lee@example.org'))!.id;
    const r = await me.post(`/account/subscriptions/${id}`, { action: 'address', email: 'lee2@example.org' });
    expect(r.status).toBe(409);
    expect(r.text).toContain('lee2@example.org is already subscribed to dev@lists.example.org');
    expect((await findMember(db.pool, dev.id, 'lee@example.org'))!.id).toBe(id);
    expect((await findMember(db.pool, dev.id, 'lee2@example.org'))!.mode).toBe('digest');
  });

  it("subscribes a chosen verified address at once, following the list's policy", async () => {
    const open = await newList('open-list', 'open');
    const confirmed = await newList('confirm-list', 'confirm');
    const approved = await newList('approve-list', 'approve');
    const me = await loggedIn(db, web.url, 'max@example.org');
    await addVerified(me, 'max2@example.org');
    const form = (await me.get('/lists/open-list/subscribe')).text;
    expect(form).toContain('<option value="max2@example.org">');

    for (const list of [open, confirmed]) {
      const r = await me.post(`/lists/${list.local_part}/subscribe`, { email: 'max2@example.org', mode: 'digest' });
      expect(r.status).toBe(200);
      expect(r.text).toContain('<strong>max2@example.org</strong> is now subscribed');
      expect(await findMember(db.pool, list.id, 'max2@example.org')).toMatchObject({ status: 'active', mode: 'digest' });
    }
    // No confirmation request went out: the address was verified already.
    expect((await queuedMail(db, 'max2@example.org')).map((m) => m.subject)).not.toContainEqual(expect.stringMatching(/^confirm /));

    const r = await me.post('/lists/approve-list/subscribe', { email: 'max2@example.org' });
    expect(r.text).toContain('Waiting for approval');
    expect(await findMember(db.pool, approved.id, 'max2@example.org')).toBeNull();
    const request = await db.pool.query(`select state from subscription_requests where list_id = $1 and email = 'max2@example.org'`, [approved.id]);
    expect(request.rows).toEqual([{ state: 'approval' }]);
    expect((await queuedMail(db, 'owner@example.org')).map((m) => m.subject)).toContain('Subscription request for approve-list@lists.example.org needs approval');
    // Asked again while that waits (a second click): still waiting, the owners told once.
    expect((await me.post('/lists/approve-list/subscribe', { email: 'max2@example.org' })).text).toContain('Waiting for approval');
    expect((await db.pool.query(`select state from subscription_requests where list_id = $1 and email = 'max2@example.org'`, [approved.id])).rows).toEqual([{ state: 'approval' }]);
    expect((await queuedMail(db, 'owner@example.org')).filter((m) => m.subject.startsWith('Subscription request for approve-list@'))).toHaveLength(1);

    // Subscribing again changes nothing and asks nobody.
    const again = await me.post('/lists/open-list/subscribe', { email: 'max2@example.org' });
    expect(again.text).toContain('is already subscribed to');
    expect(await findMember(db.pool, open.id, 'max2@example.org')).toMatchObject({ mode: 'digest' });

    // An address that is not a verified one of the account still confirms by mail.
    const other = await me.post('/lists/open-list/subscribe', { email: 'max.other@example.org' });
    expect(other.text).toContain('Check your mail');
    expect(await findMember(db.pool, open.id, 'max.other@example.org')).toBeNull();
  });
});

describe('replying from the web with several addresses', () => {
  it('lets a member pick which subscribed address the reply comes from, and no other', async () => {
    const me = await loggedIn(db, web.url, 'ned@example.org');
    await addVerified(me, 'ned2@example.org');
    await addVerified(me, 'ned3@example.org');
    await addMember(db.pool, dev.id, 'ned2@example.org', 'each');
    await addMember(db.pool, dev.id, 'ned3@example.org', 'each');
    await archive(db.pool, dev, mail({ id: 'topic@example.org', subject: 'Topic', date: 'Mon, 02 Mar 2026 10:00:00 +0000' }));
    const page = (await me.get(messageUrl('topic@example.org'))).text;
    expect(page).toContain('<select id="reply-from" name="from">');
    expect(page).toContain('<option value="ned2@example.org" selected>');
    expect(page).toContain('<option value="ned3@example.org">');
    expect(page).not.toContain('<option value="ned@example.org"');
    // The primary address is not subscribed: it cannot be the From.
    expect((await me.post(replyUrl('topic@example.org'), { list: 'dev', from: 'ned@example.org', body: 'Hello' })).status).toBe(403);
    const r = await me.post(replyUrl('topic@example.org'), { list: 'dev', from: 'ned3@example.org', body: 'Agreed.' });
    expect(r.text).toContain('Reply posted');
    const { rows } = await db.pool.query<{ raw: Buffer }>(`select raw from messages where in_reply_to = 'topic@example.org'`);
    expect(rows).toHaveLength(1);
    expect((await parse(rows[0].raw)).fromEmail).toBe('ned3@example.org');
  });
});

describe('the primary address', () => {
  it('is never removed, even while it changes: a removal and "make it primary" at once take turns', async () => {
    for (let round = 0; round < 10; round++) {
      const [x, y] = [`race${round}@example.org`, `race${round}-second@example.org`];
      const { account } = await upsertAccount(db.pool, x);
      await db.pool.query('insert into account_addresses (account_id, email, verified_at) values ($1, $2, now())', [account.id, y]);
      const who = { accountId: account.id, email: x };
      await Promise.allSettled([makePrimaryAddress(db.pool, who, y, web.cfg), removeAccountAddress(db.pool, who, y, web.cfg)]);
      // Whichever went first, the account's primary address is one of its addresses.
      const { rows } = await db.pool.query(`select a.email, exists (select 1 from account_addresses aa where aa.account_id = a.id and aa.email = a.email and aa.verified_at is not null) as kept
                                              from accounts a where a.id = $1`, [account.id]);
      expect(rows[0].kept, `round ${round}: primary ${rows[0].email}`).toBe(true);
    }
  });
});

/** Makes the account's sessions come from a login of `minutes` ago, as a cookie taken some time after the owner logged in. */
const ageSessions = (email: string, minutes = 16) => db.pool.query(
  `update sessions set created_at = now() - make_interval(mins => $2) where account_id = (select id from accounts where email = $1)`, [email, minutes]);

const primaryOf = async (accountId: number) => (await db.pool.query('select email from accounts where id = $1', [accountId])).rows[0]?.email;

describe('a session whose login is not recent', () => {
  it('cannot add, make primary or remove an address, nor set a first password: it is sent to log in again, and nothing changes', async () => {
    const me = await loggedIn(db, web.url, 'olga@example.org');
    await addVerified(me, 'olga2@example.org');
    await db.pool.query('delete from outbox');
    const { id } = (await db.pool.query(`select id from accounts where email = 'olga@example.org'`)).rows[0];
    await ageSessions('olga@example.org');
    // What a stolen cookie was used for: an address of the thief's, made primary, the owner's removed, a password set.
    for (const [path, form] of [
      ['/account/addresses', { email: 'thief@example.net' }],
      ['/account/addresses/primary', { email: 'olga2@example.org' }],
      ['/account/addresses/remove', { email: 'olga2@example.org' }],
      ['/account/addresses/remove', { email: 'olga2@example.org', confirm: '1' }],
      ['/account/password', { password: 'the thief chose this', confirm: 'the thief chose this' }],
    ] as const) {
      const r = await me.post(path, form);
      expect(r.status, path).toBe(303);
      expect(r.location, path).toBe('/account/reauthenticate');
    }
    expect(await primaryOf(id)).toBe('olga@example.org');
    expect((await db.pool.query('select email from account_addresses where account_id = $1 order by email', [id])).rows.map((r) => r.email))
      .toEqual(['olga2@example.org', 'olga@example.org']);
    expect((await db.pool.query('select password_hash from accounts where id = $1', [id])).rows[0].password_hash).toBeNull();
    expect(await queuedMail(db)).toEqual([]);
    // The page says how to log in again: no password here, so a link to the primary address.
    const page = await me.get('/account/reauthenticate');
    expect(page.status).toBe(200);
    expect(page.text).toContain('Log in again');
    expect(page.text).toContain('Mail me a login link');
    expect(page.text).not.toContain('name="password"');
  });

  it('logs in again by a link mailed to the primary address, and the fresh session may make the change', async () => {
    const me = await loggedIn(db, web.url, 'pam@example.org');
    await addVerified(me, 'pam2@example.org');
    await ageSessions('pam@example.org');
    const old = me.jar.get('lk_session')!;
    const sent = await me.post('/account/reauthenticate/link');
    expect(sent.status).toBe(200);
    expect(sent.text).toContain('A login link is on its way to <strong>pam@example.org</strong>');
    expect(await queuedMail(db, 'pam2@example.org')).toHaveLength(1); // only its verification link
    const mails = (await queuedMail(db, 'pam@example.org')).filter((m) => m.subject !== 'An address was added to your account');
    expect(mails.map((m) => m.subject)).toEqual(['Log in again to change your account']);
    const url = new URL(/https?:\/\/\S+\/login\/link\/\S+/.exec(mails[0].text)![0]);
    expect(url.searchParams.get('next')).toBe('/account/reauthenticate');
    const login = await me.post(url.pathname, { next: url.searchParams.get('next')! });
    expect(login.status).toBe(303);
    expect(login.location).toBe('/account/reauthenticate');
    expect(me.jar.get('lk_session')).not.toBe(old);
    const back = await me.get('/account/reauthenticate');
    expect(back.location).toBe('/account');
    expect((await me.get('/account')).text).toContain('For 15 minutes after your login you can make the changes that ask for a recent one');
    expect((await me.post('/account/addresses/primary', { email: 'pam2@example.org' })).status).toBe(303);
    expect(await loggedInAs(me)).toBe('pam2@example.org');
    // The old cookie is worth nothing now.
    const thief = new WebClient(web.url);
    thief.jar.set('lk_session', old);
    expect(await loggedInAs(thief)).toBeNull();
  });

  it('logs in again with the password, which counts against the login limits; a password is changed with the current one', async () => {
    await upsertAccount(db.pool, 'quin@example.org', { passwordHash: await hashPassword(PASSWORD) });
    const me = await loggedIn(db, web.url, 'quin@example.org');
    await addVerified(me, 'quin2@example.org');
    await ageSessions('quin@example.org');
    expect((await me.post('/account/addresses/remove', { email: 'quin2@example.org', confirm: '1' })).location).toBe('/account/reauthenticate');
    const page = (await me.get('/account/reauthenticate')).text;
    expect(page).toContain('name="password"');
    const wrong = await me.post('/account/reauthenticate', { password: 'not it at all' });
    expect(wrong.status).toBe(401);
    expect(wrong.text).toContain('That password is not right.');
    expect((await db.pool.query(`select hits from rate_limits where key = 'login:fail:quin@example.org'`)).rows).toEqual([{ hits: 1 }]);
    expect((await me.post('/account/addresses/remove', { email: 'quin2@example.org', confirm: '1' })).location).toBe('/account/reauthenticate');
    // As if logged in by a link to the primary address (loggedIn() records none).
    await db.pool.query(`update sessions set login_email = 'quin@example.org' where account_id = (select id from accounts where email = 'quin@example.org')`);
    const right = await me.post('/account/reauthenticate', { password: PASSWORD });
    expect(right.status).toBe(303);
    expect(right.location).toBe('/account');
    // The renewed session keeps the address the session was logged in with: removing it would end this one too.
    const newest = await db.pool.query(`select s.login_email from sessions s join accounts a on a.id = s.account_id where a.email = 'quin@example.org' order by s.created_at desc limit 1`);
    expect(newest.rows).toEqual([{ login_email: 'quin@example.org' }]);
    expect((await me.post('/account/addresses/remove', { email: 'quin2@example.org', confirm: '1' })).status).toBe(303);
    expect(await verifiedAt('quin@example.org', 'quin2@example.org')).toBeUndefined();
    // The current password is itself the proof: an old session changes it with it.
    await ageSessions('quin@example.org');
    expect((await me.post('/account/password', { current: PASSWORD, password: 'a new long password', confirm: 'a new long password' })).location).toBe('/account');
    expect((await new WebClient(web.url, { 'x-forwarded-for': '198.51.100.30' }).post('/login', { email: 'quin@example.org', password: 'a new long password' })).status).toBe(303);
  });
});

describe('notices of changes to the addresses', () => {
  it('tells the address that stops being primary, without naming the new one', async () => {
    const me = await loggedIn(db, web.url, 'rita@example.org');
    await addVerified(me, 'rita.new@example.org');
    expect((await me.post('/account/addresses/primary', { email: 'rita.new@example.org' })).status).toBe(303);
    const mails = await queuedMail(db, 'rita@example.org');
    expect(mails.map((m) => m.subject)).toEqual(['An address was added to your account', 'Your primary address was changed']);
    mails.shift();
    const text = mails[0].text;
    expect(text).toContain(`The primary address of your account on ${web.url} was changed on`);
    expect(text).toMatch(/changed on \d{4}-\d\d-\d\d \d\d:\d\d UTC: it was rita@example\.org \(this address\), it is now another address/);
    expect(text).toContain('If you did not, someone else may be using your account.');
    expect(text).toContain('Log out everywhere else');
    expect(text).not.toContain('rita.new');
    expect(await queuedMail(db, 'rita.new@example.org')).toHaveLength(1); // its verification link only
  });

  it('tells a verified address that it was removed, and not one that was never verified', async () => {
    const me = await loggedIn(db, web.url, 'sam@example.org');
    await addVerified(me, 'sam.old@example.org');
    await me.post('/account/addresses', { email: 'sam.typo@example.org' });
    await db.pool.query('delete from outbox');
    expect((await me.post('/account/addresses/remove', { email: 'sam.old@example.org', confirm: '1' })).status).toBe(303);
    expect((await me.post('/account/addresses/remove', { email: 'sam.typo@example.org', confirm: '1' })).status).toBe(303);
    const mails = await queuedMail(db);
    expect(mails.map((m) => [m.to, m.subject])).toEqual([['sam.old@example.org', 'An address was removed from your account']]);
    expect(mails[0].text).toMatch(/sam\.old@example\.org \(this address\) was removed from its account on \S+ on \d{4}-\d\d-\d\d \d\d:\d\d UTC\./);
    expect(mails[0].text).toContain('If you did not, someone else may be using your account.');
    expect(mails[0].text).not.toContain('sam@example.org');
  });
});

describe('sessions logged in with an address', () => {
  /** Logs a new client in by the link mailed to `email`, from its own network. */
  async function logInByLink(email: string, ip: string): Promise<WebClient> {
    const c = new WebClient(web.url, { 'x-forwarded-for': ip });
    const before = (await queuedMail(db, email)).length;
    expect((await c.post('/login/link', { email })).status).toBe(200);
    const mail = (await mailArrives(db, email, before + 1)).filter((m) => m.subject === 'Your login link').at(-1)!;
    expect((await c.post(new URL(/https?:\/\/\S+\/login\/link\/\S+/.exec(mail.text)![0]).pathname)).status).toBe(303);
    return c;
  }

  it('end when the address is removed, all but the session removing it; the others stay', async () => {
    await upsertAccount(db.pool, 'uma@example.org', { passwordHash: await hashPassword(PASSWORD) });
    const { id } = (await db.pool.query(`select id from accounts where email = 'uma@example.org'`)).rows[0];
    const owner = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.40' });
    expect((await owner.post('/login', { email: 'uma@example.org', password: PASSWORD })).status).toBe(303);
    await addVerified(owner, 'uma.second@example.org');
    // Logged in with the second address: with the password, and by a link mailed to it.
    const byPassword = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.41' });
    expect((await byPassword.post('/login', { email: 'Uma.Second@example.org', password: PASSWORD })).status).toBe(303);
    const byLink = await logInByLink('uma.second@example.org', '198.51.100.42');
    const elsewhere = await logInByLink('uma@example.org', '198.51.100.43');
    const { rows } = await db.pool.query('select login_email from sessions where account_id = $1 order by created_at', [id]);
    expect(rows.map((r) => r.login_email)).toEqual(['uma@example.org', 'uma.second@example.org', 'uma.second@example.org', 'uma@example.org']);

    expect((await owner.post('/account/addresses/remove', { email: 'uma.second@example.org', confirm: '1' })).status).toBe(303);
    expect((await owner.get('/account')).text).toContain('uma.second@example.org is no longer one of your addresses. 2 sessions logged in with it were logged out.');
    expect(await loggedInAs(byPassword)).toBeNull();
    expect(await loggedInAs(byLink)).toBeNull();
    expect(await loggedInAs(owner)).toBe('uma@example.org');
    expect(await loggedInAs(elsewhere)).toBe('uma@example.org');
    const audit = await db.pool.query(`select detail from audit_log where action = 'account.address_remove' and target = 'uma.second@example.org'`);
    expect(audit.rows).toEqual([{ detail: { sessions_ended: 2 } }]);

    // The session that removes the address it logged in with stays.
    await addVerified(owner, 'uma.third@example.org');
    const third = await logInByLink('uma.third@example.org', '198.51.100.44');
    expect((await third.post('/account/addresses/remove', { email: 'uma.third@example.org', confirm: '1' })).status).toBe(303);
    const page = (await third.get('/account')).text;
    expect(page).toContain('uma.third@example.org is no longer one of your addresses.');
    expect(page).toContain('Logged in as <strong>uma@example.org</strong>');
  });
});
