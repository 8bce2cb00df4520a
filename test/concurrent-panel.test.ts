/*
 * Two people acting on the same thing in the panel at once: two owners saving a list's settings
 * form (a full-form POST of every field), two sessions of one account changing its password. The
 * later one must not silently undo the earlier one, and the loser is told.
 */

import { afterAll, beforeAll, expect, it } from 'vitest';
import { hashPassword, verifyPassword } from '../src/auth/credentials.ts';
import { findAccountByEmail, issueLoginToken, setPasswordHash, upsertAccount } from '../src/db/accounts.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn, queuedMail, WebClient } from './helpers/browser.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;
let alice: WebClient;
let bob: WebClient;
const S = '/admin/lists/race@lists.example.org/settings';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  const list = await createList(db.pool, { address: 'race@lists.example.org', name: 'Race', description: 'first words', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: ['alice@example.org'] });
  await addListRole(db.pool, list.id, 'bob@example.org', 'owner');
  alice = await loggedIn(db, web.url, 'alice@example.org');
  bob = await loggedIn(db, web.url, 'bob@example.org');
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

const unescape = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** The settings form as a browser would submit it, untouched: every field with the value shown. */
async function settingsForm(client: WebClient): Promise<Record<string, string>> {
  const page = await client.get(S);
  expect(page.status).toBe(200);
  const form = /<form method="post" action="[^"]*\/settings" class="settings">([\s\S]*?)<\/form>/.exec(page.text)![1];
  const out: Record<string, string> = {};
  for (const [tag] of form.matchAll(/<input\b[^>]*>/g)) {
    const name = /\bname="([^"]*)"/.exec(tag)?.[1];
    if (!name || name === '_csrf' || (/type="checkbox"/.test(tag) && !/\bchecked\b/.test(tag))) continue;
    out[name] = unescape(/\bvalue="([^"]*)"/.exec(tag)?.[1] ?? '');
  }
  for (const [, name, options] of form.matchAll(/<select name="([^"]+)"[^>]*>([\s\S]*?)<\/select>/g)) {
    out[name] = unescape(/<option value="([^"]*)"[^>]*\bselected\b/.exec(options)?.[1] ?? /<option value="([^"]*)"/.exec(options)![1]);
  }
  for (const [, name, text] of form.matchAll(/<textarea name="([^"]+)"[^>]*>([\s\S]*?)<\/textarea>/g)) out[name] = unescape(text);
  return out;
}

const listRow = async () => (await db.pool.query('select description, subject_prefix from lists where address = $1', ['race@lists.example.org'])).rows[0];

it('an owner saving a settings page opened before another owner saved is told, and does not undo the other change', async () => {
  const alicesPage = await settingsForm(alice);
  const bobsPage = await settingsForm(bob);
  expect((await alice.post(S, { ...alicesPage, description: 'words by alice' })).status).toBe(303);
  // Bob only changes the prefix, on the page he opened before Alice saved.
  const stale = await bob.post(S, { ...bobsPage, subject_prefix: '[race]' });
  expect(stale.status).toBe(409);
  expect(stale.text).toContain('changed these settings since you opened this page');
  // The page shows what is saved now, for Bob to make his change again.
  expect(stale.text).toContain('value="words by alice"');
  expect(await listRow()).toEqual({ description: 'words by alice', subject_prefix: '' });
  const { rows } = await db.pool.query(`select actor, detail from audit_log where action = 'list.settings' order by id`);
  expect(rows).toEqual([{ actor: 'alice@example.org', detail: { description: 'words by alice' } }]);
  // Made again on the fresh page, Bob's change keeps Alice's.
  expect((await bob.post(S, { ...(await settingsForm(bob)), subject_prefix: '[race]' })).status).toBe(303);
  expect(await listRow()).toEqual({ description: 'words by alice', subject_prefix: '[race]' });
});

it('of two owners saving the same settings page at once, one is saved and the other told', async () => {
  for (let round = 0; round < 5; round++) {
    const [a, b] = await Promise.all([settingsForm(alice), settingsForm(bob)]);
    const replies = await Promise.all([
      alice.post(S, { ...a, description: `alice ${round}` }),
      bob.post(S, { ...b, subject_prefix: `[bob ${round}]` }),
    ]);
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses).toEqual([303, 409]);
    const row = await listRow();
    // Exactly the winner's change, and the other field as it was.
    const winner = replies[0].status === 303 ? 'alice' : 'bob';
    expect(winner === 'alice' ? row.description : row.subject_prefix).toBe(winner === 'alice' ? `alice ${round}` : `[bob ${round}]`);
    expect(winner === 'alice' ? row.subject_prefix : row.description).toBe(winner === 'alice' ? b.subject_prefix : a.description);
  }
});

it('of two sessions of one account changing its password at once, one wins and the other is told; the password is the winner\'s', async () => {
  const { account } = await upsertAccount(db.pool, 'twice@example.org');
  await setPasswordHash(db.pool, account.id, await hashPassword('the old password'));
  const one = await loggedIn(db, web.url, 'twice@example.org');
  const two = await loggedIn(db, web.url, 'twice@example.org');
  const replies = await Promise.all([
    one.post('/account/password', { current: 'the old password', password: 'new password one', confirm: 'new password one' }),
    two.post('/account/password', { current: 'the old password', password: 'new password two', confirm: 'new password two' }),
  ]);
  const hash = (await findAccountByEmail(db.pool, 'twice@example.org'))!.password_hash;
  const saved = [await verifyPassword(hash, 'new password one'), await verifyPassword(hash, 'new password two')];
  expect(saved.filter(Boolean)).toHaveLength(1);
  const winner = saved[0] ? 0 : 1;
  // The winner's session lives on; the loser was not told "Password saved" for a password not in force.
  expect(replies[winner].status).toBe(303);
  const loser = replies[1 - winner];
  // Told the password was changed meanwhile (or, had the winner been quite done first, sent to log in).
  if (loser.status === 409) expect(loser.text).toContain('changed meanwhile');
  else expect([loser.status, loser.location]).toEqual([303, expect.stringMatching(/\/login/)]);
  const told = (await queuedMail(db, 'twice@example.org')).filter((m) => m.subject === 'Your password was changed');
  expect(told).toHaveLength(1);
  const audit = await db.pool.query(`select count(*)::int as n from audit_log where target = 'twice@example.org' and action = 'account.password_changed'`);
  expect(audit.rows[0].n).toBe(1);
});

it('a password reset link posted twice at once resets the password once: the other post is told the link is used up', async () => {
  const { account } = await upsertAccount(db.pool, 'forgot@example.org');
  await setPasswordHash(db.pool, account.id, await hashPassword('the old password'));
  const token = await issueLoginToken(db.pool, 'forgot@example.org', 'reset', 3600);
  const tabs = [new WebClient(web.url), new WebClient(web.url)];
  const replies = await Promise.all(tabs.map((t, i) => t.post(`/login/reset/${token}`, { password: `new password ${i}`, confirm: `new password ${i}` })));
  expect(replies.map((r) => r.status).sort()).toEqual([303, 410]);
  const winner = replies[0].status === 303 ? 0 : 1;
  const hash = (await findAccountByEmail(db.pool, 'forgot@example.org'))!.password_hash;
  expect(await verifyPassword(hash, `new password ${winner}`)).toBe(true);
  expect((await queuedMail(db, 'forgot@example.org')).filter((m) => m.subject === 'Your password was changed')).toHaveLength(1);
});

it('two reset links of one account used at once: one password is saved, the other is told and not saved', async () => {
  const { account } = await upsertAccount(db.pool, 'two-links@example.org');
  await setPasswordHash(db.pool, account.id, await hashPassword('the old password'));
  const tokens = [await issueLoginToken(db.pool, 'two-links@example.org', 'reset', 3600), await issueLoginToken(db.pool, 'two-links@example.org', 'reset', 3600)];
  const replies = await Promise.all(tokens.map((t, i) => new WebClient(web.url).post(`/login/reset/${t}`, { password: `new password ${i}`, confirm: `new password ${i}` })));
  const statuses = replies.map((r) => r.status);
  const hash = (await findAccountByEmail(db.pool, 'two-links@example.org'))!.password_hash;
  const saved = [await verifyPassword(hash, 'new password 0'), await verifyPassword(hash, 'new password 1')];
  // The one told 303 is the one in force; the other was told 409 (or 410: its link voided by then).
  expect(saved.filter(Boolean)).toHaveLength(1);
  expect(statuses[saved[0] ? 0 : 1]).toBe(303);
  expect([409, 410]).toContain(statuses[saved[0] ? 1 : 0]);
  expect((await queuedMail(db, 'two-links@example.org')).filter((m) => m.subject === 'Your password was changed')).toHaveLength(1);
});

it('one address added to two accounts, both links followed at once: one account has it verified, the other is told it is taken', async () => {
  const accounts = [await loggedIn(db, web.url, 'first@example.org'), await loggedIn(db, web.url, 'second@example.org')];
  for (let round = 0; round < 3; round++) {
    const shared = `shared-${round}@example.org`;
    for (const c of accounts) expect((await c.post('/account/addresses', { email: shared })).status).toBe(303);
    // The first mail was asked for by the first account: each link is its own account's.
    const links = (await queuedMail(db, shared)).map((m) => new URL(/https?:\/\/\S+\/account\/addresses\/verify\/\S+/.exec(m.text)![0]).pathname);
    expect(links).toHaveLength(2);
    const replies = await Promise.all(accounts.map((c, i) => c.post(links[i])));
    expect(replies.map((r) => r.status).sort()).toEqual([303, 409]);
    const loser = replies[0].status === 409 ? 0 : 1;
    expect(replies[loser].text).toContain('already a verified address of another account');
    const { rows } = await db.pool.query(`select a.email from account_addresses aa join accounts a on a.id = aa.account_id where aa.email = $1 and aa.verified_at is not null`, [shared]);
    expect(rows).toEqual([{ email: loser === 0 ? 'second@example.org' : 'first@example.org' }]);
  }
});
