import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { removeRole } from '../src/core/lists.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, queuedMail, WebClient } from './helpers/browser.ts';

/**
 * Every admin route against every role, allowed and forbidden, checked on the server: the table
 * below is the access policy. Forbidden requests are answered 403 and change nothing; anonymous
 * visitors are sent to /login with the way back.
 */
type Role = 'anonymous' | 'member' | 'moderator' | 'owner' | 'otherOwner' | 'siteAdmin';
type Need = 'login' | 'staff' | 'moderator' | 'owner' | 'siteAdmin';

const ROLES: Role[] = ['anonymous', 'member', 'moderator', 'owner', 'otherOwner', 'siteAdmin'];
const ALLOWED: Record<Need, Role[]> = {
  login: ['member', 'moderator', 'owner', 'otherOwner', 'siteAdmin'],
  staff: ['moderator', 'owner', 'otherOwner', 'siteAdmin'],
  moderator: ['moderator', 'owner', 'siteAdmin'],
  owner: ['owner', 'siteAdmin'],
  siteAdmin: ['siteAdmin'],
};

const L = '/admin/lists/dev@lists.example.org';
const PAGES: [string, Need][] = [
  ['/admin/', 'staff'],
  ['/admin/dashboard', 'siteAdmin'],
  ['/admin/audit', 'siteAdmin'],
  ['/admin/tokens', 'siteAdmin'],
  ['/admin/lists/new', 'siteAdmin'],
  [`${L}/`, 'moderator'],
  ['/admin/lists/dev/', 'moderator'],
  [`${L}/held`, 'moderator'],
  [`${L}/requests`, 'moderator'],
  [`${L}/messages`, 'moderator'],
  [`${L}/messages?q=hello&hidden=1`, 'moderator'],
  [`${L}/members`, 'owner'],
  [`${L}/members?q=example&mode=each&status=active&page=1`, 'owner'],
  [`${L}/members.csv`, 'owner'],
  [`${L}/members/member@example.org`, 'owner'],
  [`${L}/settings`, 'owner'],
  [`${L}/audit`, 'owner'],
  [`${L}/delete`, 'siteAdmin'],
  ['/account', 'login'],
];

// Bodies that get past the guard without changing anything (they fail validation or select nothing).
const ACTIONS: [string, Need, Record<string, string>][] = [
  ['/admin/lists/new', 'siteAdmin', { address: '' }],
  ['/admin/tokens', 'siteAdmin', { name: 'x', scope: 'no-such-scope' }],
  ['/admin/tokens/999999/revoke', 'siteAdmin', {}],
  [`${L}/settings`, 'owner', { name: '' }],
  [`${L}/roles`, 'owner', { action: 'add', role: 'moderator', email: '' }],
  [`${L}/delete`, 'siteAdmin', { confirm: 'no' }],
  [`${L}/members/add`, 'owner', { addresses: 'not-an-address' }],
  [`${L}/members/bulk`, 'owner', { action: 'remove' }],
  [`${L}/held`, 'moderator', { action: 'approve' }],
  [`${L}/held/sender`, 'moderator', { action: 'discard-sender', sender: '' }],
  [`${L}/requests`, 'moderator', { action: 'approve' }],
  [`${L}/messages/hide`, 'moderator', { message_id: 'nothing@example.org', reason: 'spam' }],
  [`${L}/messages/unhide`, 'moderator', { message_id: 'nothing@example.org' }],
  ['/account/password', 'login', { password: 'x' }],
  ['/account/sessions/end-others', 'login', {}],
];

let db: TestDatabase;
let web: RunningWeb;
const as: Partial<Record<Role, WebClient>> = {};

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  const dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await createList(db.pool, { address: 'qa@lists.example.org', name: 'QA', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['other@example.org'] });
  await addListRole(db.pool, dev.id, 'mod@example.org', 'moderator');
  await addMember(db.pool, dev.id, 'member@example.org', 'each');
  as.anonymous = new WebClient(web.url);
  as.member = await loggedIn(db, web.url, 'member@example.org');
  as.moderator = await loggedIn(db, web.url, 'mod@example.org');
  as.owner = await loggedIn(db, web.url, 'owner@example.org');
  as.otherOwner = await loggedIn(db, web.url, 'other@example.org');
  as.siteAdmin = await loggedIn(db, web.url, 'admin@example.org', { siteAdmin: true });
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('every page against every role', () => {
  for (const [path, need] of PAGES) {
    for (const role of ROLES) {
      const allowed = ALLOWED[need].includes(role);
      const expected = role === 'anonymous' ? '303 to /login' : allowed ? '200' : '403';
      it(`GET ${path} as ${role}: ${expected}`, async () => {
        const r = await as[role]!.get(path);
        if (role === 'anonymous') {
          expect(r.status).toBe(303);
          expect(r.location).toBe(`/login?next=${encodeURIComponent(path)}`);
        } else {
          expect(r.status, r.text.slice(0, 300)).toBe(allowed ? 200 : 403);
        }
      });
    }
  }
});

describe('every form action against every role', () => {
  for (const [path, need, body] of ACTIONS) {
    for (const role of ROLES) {
      const allowed = ALLOWED[need].includes(role);
      it(`POST ${path} as ${role}: ${role === 'anonymous' ? '303 to /login' : allowed ? 'passes the role check' : '403'}`, async () => {
        const r = await as[role]!.post(path, body);
        if (role === 'anonymous') {
          expect(r.status).toBe(303);
          expect(r.location).toMatch(/^\/login\?next=/);
        } else if (allowed) {
          expect(r.status, r.text.slice(0, 300)).not.toBe(403);
          expect(r.location ?? '').not.toMatch(/^\/login/);
        } else {
          expect(r.status).toBe(403);
        }
      });
    }
  }

  it('a forbidden request changes nothing', async () => {
    const r = await as.otherOwner!.post(`${L}/roles`, { action: 'add', role: 'owner', email: 'intruder@example.org' });
    expect(r.status).toBe(403);
    const m = await as.moderator!.post(`${L}/members/add`, { addresses: 'sneaky@example.org' });
    expect(m.status).toBe(403);
    const { rows } = await db.pool.query(`select email from list_roles where email = 'intruder@example.org' union all select email from members where email = 'sneaky@example.org'`);
    expect(rows).toEqual([]);
  });

  it('an unknown list is a 404 for staff and still a login redirect for anonymous visitors', async () => {
    expect((await as.siteAdmin!.get('/admin/lists/nope/held')).status).toBe(404);
    expect((await as.anonymous!.get('/admin/lists/nope/held')).status).toBe(303);
    expect((await as.anonymous!.get('/admin/anything/else')).status).toBe(303);
  });
});

describe('CSRF', () => {
  it('refuses a form without the token, or with a token that does not match the cookie', async () => {
    const missing = await as.owner!.post(`${L}/roles`, { action: 'add', role: 'moderator', email: 'csrf@example.org' }, { csrf: false });
    expect(missing.status).toBe(403);
    expect(missing.text).toMatch(/CSRF/);
    const wrong = await as.owner!.post(`${L}/roles`, { action: 'add', role: 'moderator', email: 'csrf@example.org' }, { csrf: 'x'.repeat(32) });
    expect(wrong.status).toBe(403);
    const { rows } = await db.pool.query(`select 1 from list_roles where email = 'csrf@example.org'`);
    expect(rows).toHaveLength(0);
    // The same request with the token goes through.
    const ok = await as.owner!.post(`${L}/roles`, { action: 'add', role: 'moderator', email: 'csrf@example.org' });
    expect(ok.status).toBe(303);
    expect((await db.pool.query(`select 1 from list_roles where email = 'csrf@example.org'`)).rows).toHaveLength(1);
  });

  it('binds a logged-in form to its session: a planted cookie does not pass, nor another session\'s token', async () => {
    const owner = as.owner!;
    const page = await owner.get('/admin/');
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
    expect(token).toBe(owner.csrf);
    const add = (c: WebClient, csrf: string) => c.post(`${L}/roles`, { action: 'add', role: 'moderator', email: 'bound@example.org' }, { csrf });
    // A cookie another host of the domain could plant, and the same value in the form: the
    // double-submit check alone would take it.
    const planted = 'p'.repeat(32);
    owner.jar.set('lk_csrf', planted);
    expect((await add(owner, planted)).status).toBe(403);
    owner.jar.delete('lk_csrf');
    // The token of another session, even of the same account's.
    const other = await loggedIn(db, web.url, 'owner@example.org');
    expect(other.csrf).not.toBe(owner.csrf);
    expect((await add(owner, other.csrf)).status).toBe(403);
    expect((await db.pool.query(`select 1 from list_roles where email = 'bound@example.org'`)).rows).toHaveLength(0);
    expect((await add(owner, token!)).status).toBe(303);
    expect((await db.pool.query(`select 1 from list_roles where email = 'bound@example.org'`)).rows).toHaveLength(1);
  });

  it('protects login, logout and self-service too', async () => {
    expect((await new WebClient(web.url).post('/login', { email: 'a@example.org', password: 'x' }, { csrf: false })).status).toBe(403);
    expect((await as.member!.post('/logout', {}, { csrf: false })).status).toBe(403);
    expect((await as.member!.post('/account/subscriptions/1', { action: 'unsubscribe' }, { csrf: false })).status).toBe(403);
    // The list page's subscribe form, the same for every anonymous reader, has no token: its post
    // subscribes no one and answers with the form and the visitor's own token. A wrong token, or
    // none from a logged-in visitor, is refused.
    const tokenless = await new WebClient(web.url).post('/lists/dev/subscribe', { email: 'a@example.org' }, { csrf: false });
    expect(tokenless.status).toBe(200);
    expect(tokenless.text).toContain('Check your address and press Subscribe once more');
    expect((await db.pool.query(`select 1 from subscription_requests where email = 'a@example.org'`)).rows).toHaveLength(0);
    expect((await new WebClient(web.url).post('/lists/dev/subscribe', { email: 'a@example.org' }, { csrf: 'x'.repeat(32) })).status).toBe(403);
    expect((await as.member!.post('/lists/dev/subscribe', { email: 'a@example.org' }, { csrf: false })).status).toBe(403);
    // A browser that says the post comes from this site's own page (Fetch Metadata, or else an
    // Origin that is PUBLIC_URL's) subscribes with one press; another site's form, or a sibling
    // host of the domain, gets the form back, and nothing is asked of anyone.
    const requested = async (email: string) => (await db.pool.query(`select 1 from subscription_requests where email = $1`, [email])).rows.length;
    const tokenlessFrom = (headers: Record<string, string>, email: string) => new WebClient(web.url, headers).post('/lists/dev/subscribe', { email }, { csrf: false });
    for (const [headers, email] of [[{ 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }, 'x1@example.org'], [{ 'sec-fetch-site': 'same-site' }, 'x2@example.org'],
      [{ origin: 'https://evil.example' }, 'x3@example.org'], [{ 'sec-fetch-site': 'cross-site', origin: new URL(web.url).origin }, 'x4@example.org']] as const) {
      const r = await tokenlessFrom(headers, email);
      expect(r.text, email).toContain('Check your address and press Subscribe once more');
      expect(await requested(email), email).toBe(0);
    }
    for (const [headers, email] of [[{ 'sec-fetch-site': 'same-origin' }, 'own1@example.org'], [{ origin: new URL(web.url).origin }, 'own2@example.org']] as const) {
      const r = await tokenlessFrom(headers, email);
      expect(r.status, email).toBe(200);
      expect(r.text, email).toContain('Check your mail');
      expect(await requested(email), email).toBe(1);
    }
  });

  it('refuses a token of the right length but other bytes with 403, not 500', async () => {
    const c = new WebClient(web.url);
    const odd = `é${c.csrf.slice(1)}`; // as many characters as the cookie's, one more byte
    const r = await c.post('/login', { email: 'a@example.org', password: 'x' }, { csrf: odd });
    expect(r.status).toBe(403);
    expect(r.text).toContain('CSRF check failed');
  });

  it('sends security headers on panel pages', async () => {
    const r = await as.siteAdmin!.get('/admin/');
    expect(r.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(r.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
  });
});

describe('owners', () => {
  it('two owners removing each other at once: one succeeds, the other is refused as the last owner, and one owner remains', async () => {
    for (let round = 0; round < 10; round++) {
      const list = await createList(db.pool, { address: `race${round}@lists.example.org`, name: 'Race', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['a@example.org', 'b@example.org'] });
      // Each removal runs in its own transaction on its own pool connection.
      const results = await Promise.allSettled([
        removeRole(db.pool, list, 'b@example.org', 'owner', { actor: 'a@example.org' }),
        removeRole(db.pool, list, 'a@example.org', 'owner', { actor: 'b@example.org' }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled').map((r) => r.value), `round ${round}`).toEqual([true]);
      const refused = results.find((r) => r.status === 'rejected');
      expect((refused?.reason as { code?: string } | undefined)?.code, `round ${round}`).toBe('last_owner');
      const { rows } = await db.pool.query(`select email from list_roles where list_id = $1 and role = 'owner'`, [list.id]);
      expect(rows, `round ${round}`).toHaveLength(1);
    }
  });
});

describe('owners and moderators need a recent login to change', () => {
  it('an old session adds or removes no owner or moderator; a fresh login by mailed link returns to the roles and may', async () => {
    const list = await createList(db.pool, { address: 'kept@lists.example.org', name: 'Kept', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['keeper@example.org', 'co@example.org'] });
    const rolesOf = async () => (await db.pool.query(`select email, role from list_roles where list_id = $1 order by email`, [list.id])).rows;
    const before = await rolesOf();
    const keeper = await loggedIn(db, web.url, 'keeper@example.org');
    // The cookie of a login 16 minutes ago, as a thief who took it would hold it.
    await db.pool.query(`update sessions set created_at = now() - interval '16 minutes' where account_id = (select id from accounts where email = 'keeper@example.org')`);
    const back = '/admin/lists/kept@lists.example.org/settings#roles';
    const reauth = `/account/reauthenticate?next=${encodeURIComponent(back)}`;
    for (const form of [
      { action: 'add', role: 'owner', email: 'thief@example.net' },
      { action: 'add', role: 'moderator', email: 'thief@example.net' },
      { action: 'remove', role: 'owner', email: 'co@example.org' },
    ]) {
      const r = await keeper.post('/admin/lists/kept@lists.example.org/roles', form);
      expect(r.status, JSON.stringify(form)).toBe(303);
      expect(r.location, JSON.stringify(form)).toBe(reauth);
    }
    expect(await rolesOf()).toEqual(before);
    expect((await db.pool.query(`select 1 from audit_log where action like 'role.%' and list_id = $1`, [list.id])).rowCount).toBe(0);

    // The page keeps where to return, and the mailed link brings the fresh session back there.
    const page = await keeper.get(reauth);
    expect(page.status).toBe(200);
    expect(page.text).toContain("adding or removing a list's owners and moderators");
    expect(page.text).toContain(`name="next" value="${back}"`);
    expect((await keeper.post('/account/reauthenticate/link', { next: back })).status).toBe(200);
    const [mail] = (await queuedMail(db, 'keeper@example.org')).filter((m) => m.subject === 'Log in again to change your account');
    const url = new URL(/https?:\/\/\S+\/login\/link\/\S+/.exec(mail.text)![0]);
    expect(url.searchParams.get('next')).toBe(reauth);
    const login = await keeper.post(url.pathname, { next: url.searchParams.get('next')! });
    expect(login.location).toBe(reauth);
    expect((await keeper.get(reauth)).location).toBe(back);
    expect((await keeper.post('/admin/lists/kept@lists.example.org/roles', { action: 'add', role: 'moderator', email: 'helper@example.org' })).location).toBe(back);
    expect(await rolesOf()).toEqual([...before, { email: 'helper@example.org', role: 'moderator' }].sort((a, b) => a.email.localeCompare(b.email)));
  });

  it('returns only to a path of this site, and never to the log-in-again page itself', async () => {
    const c = await loggedIn(db, web.url, 'returns@example.org');
    for (const [next, to] of [
      ['//evil.example/x', '/account'],
      ['https://evil.example/', '/account'],
      ['/\\evil.example', '/account'],
      ['/account/reauthenticate?next=%2Faccount%2Freauthenticate', '/account'],
      ['/admin/', '/admin/'],
    ]) {
      expect((await c.get(`/account/reauthenticate?next=${encodeURIComponent(next)}`)).location, next).toBe(to);
    }
  });
});

describe('private lists through /admin', () => {
  it('a logged-in stranger probing /admin/lists/NAME/ gets the same 404 for a private list as for none, and no address of one', async () => {
    await createList(db.pool, { address: 'hush@lists.example.org', name: 'Hush', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'private', owners: ['hush-owner@example.org'] });
    await createList(db.pool, { address: 'twin@a.example.org', name: 'Twin A', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'private', owners: ['twin-owner@example.org'] });
    await createList(db.pool, { address: 'twin@b.example.org', name: 'Twin B', description: '', postPolicy: 'members', subscribePolicy: 'approve', archive: 'private', owners: ['twin-owner@example.org'] });
    for (const page of ['', 'held', 'settings', 'members', 'delete']) {
      const absent = await as.member!.get(`/admin/lists/nothing-here@lists.example.org/${page}`);
      const hidden = await as.member!.get(`/admin/lists/hush@lists.example.org/${page}`);
      expect(absent.status).toBe(404);
      expect(hidden.status, `${page}: ${hidden.text.slice(0, 200)}`).toBe(404);
      expect(hidden.text).not.toContain('Hush');
      expect(hidden.text.replace(/hush@lists\.example\.org/g, 'X')).toBe(absent.text.replace(/nothing-here@lists\.example\.org/g, 'X'));
      // By local part: neither a 403 nor an ambiguity naming the two private lists.
      const local = await as.member!.get(`/admin/lists/hush/${page}`);
      expect(local.status).toBe(404);
      const twins = await as.member!.get(`/admin/lists/twin/${page}`);
      expect(twins.status).toBe(404);
      expect(twins.text).not.toMatch(/[ab]\.example\.org/);
      const post = await as.member!.post(`/admin/lists/hush@lists.example.org/${page || 'held'}`, { action: 'approve' });
      expect(post.status).toBe(404);
    }
    // Those who may know of it: its owner gets in, a site administrator too, and a member of the
    // list (who reads its archive) is told that it is not theirs to administer.
    expect((await (await loggedIn(db, web.url, 'hush-owner@example.org')).get('/admin/lists/hush/')).status).toBe(200);
    expect((await as.siteAdmin!.get('/admin/lists/hush@lists.example.org/')).status).toBe(200);
    expect((await as.siteAdmin!.get('/admin/lists/twin/')).status).toBe(400);
    const hush = await db.pool.query<{ id: number }>(`select id from lists where address = 'hush@lists.example.org'`);
    await addMember(db.pool, hush.rows[0].id, 'reader@example.org', 'each');
    expect((await (await loggedIn(db, web.url, 'reader@example.org')).get('/admin/lists/hush/')).status).toBe(403);
  });
});
