import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { upsertAccount } from '../src/db/accounts.ts';
import { hashPassword } from '../src/auth/credentials.ts';
import { addMember } from '../src/db/members.ts';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { cli } from './helpers/cli.ts';
import { afterResponseDone, afterResponseSettled, mailArrives, queuedMail, WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
const PASSWORD = 'correct horse battery';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  await upsertAccount(db.pool, 'admin@example.org', { passwordHash: await hashPassword(PASSWORD), siteAdmin: true });
  const list = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'private', owners: [] });
  await addMember(db.pool, list.id, 'member@example.org', 'each');
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

const client = (ip = '198.51.100.7') => new WebClient(web.url, { 'x-forwarded-for': ip });
const linkIn = (mail: { text: string }) => new URL(/https?:\/\/\S+\/login\/\S+/.exec(mail.text)![0]);

describe('logging in with a password', () => {
  it('starts a session stored hashed in PostgreSQL, with an HttpOnly SameSite=Lax cookie, and goes to the return path', async () => {
    const c = client();
    await c.get('/login');
    const r = await c.post('/login', { email: 'Admin@Example.org', password: PASSWORD, next: '/admin/lists/new' });
    expect(r.status).toBe(303);
    expect(r.location).toBe('/admin/lists/new');
    const cookie = r.headers.getSetCookie().find((l) => l.startsWith('lk_session='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).not.toMatch(/Secure/i);
    const id = c.jar.get('lk_session')!;
    const { rows } = await db.pool.query('select id_hash from sessions');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.map((x) => x.id_hash)).not.toContain(id);
    expect((await c.get('/admin/lists/new')).status).toBe(200);
  });

  it('marks the session and CSRF cookies Secure when PUBLIC_URL is https', async () => {
    const secure = await startWeb(db, { PUBLIC_URL: 'https://lists.example.org' });
    try {
      const form = await fetch(`${secure.url}/login`);
      // Over https the anonymous CSRF cookie takes the __Host- prefix: only this host can set it.
      const csrfCookie = form.headers.getSetCookie().find((l) => l.startsWith('__Host-lk_csrf='));
      expect(csrfCookie).toMatch(/;\s*Secure/i);
      expect(csrfCookie).toMatch(/;\s*Path=\//i);
      expect(csrfCookie).not.toMatch(/Domain=/i);
      expect(form.headers.getSetCookie().find((l) => l.startsWith('lk_csrf='))).toBeUndefined();
      const c = new WebClient(secure.url, { 'x-forwarded-for': '198.51.100.8' });
      const r = await c.post('/login', { email: 'admin@example.org', password: PASSWORD });
      expect(r.status).toBe(303);
      // The session cookie too: a sibling host cannot log this browser into its own account.
      const sessionCookie = r.headers.getSetCookie().find((l) => l.startsWith('__Host-lk_session='));
      expect(sessionCookie).toMatch(/;\s*Secure/i);
      expect(sessionCookie).toMatch(/;\s*Path=\//i);
      expect(r.headers.getSetCookie().find((l) => l.startsWith('lk_session='))).toBeUndefined();
      expect((await c.get('/admin/lists/new')).status).toBe(200);
      // A live session's id under the bare name, as a planted cookie would carry it, logs no one in.
      const planted = new WebClient(secure.url);
      planted.jar.set('lk_session', c.jar.get('__Host-lk_session')!);
      expect((await planted.get('/admin/lists/new')).status).toBe(303);
    } finally {
      await secure.stop();
    }
  });

  it('asks browsers to upgrade to https only when PUBLIC_URL is https', async () => {
    // Over plain http on a real host name, the upgrade sent stylesheets and forms to a port that
    // speaks no TLS: every page broke.
    const plain = await startWeb(db, { PUBLIC_URL: 'http://lists.example.org:8080' });
    const secure = await startWeb(db, { PUBLIC_URL: 'https://lists.example.org' });
    try {
      for (const path of ['/login', '/', '/lists/dev/subscribe']) {
        const csp = (await fetch(`${plain.url}${path}`)).headers.get('content-security-policy') ?? '';
        expect(csp, path).toMatch(/default-src 'self'/);
        expect(csp, path).not.toMatch(/upgrade-insecure-requests/);
        expect((await fetch(`${secure.url}${path}`)).headers.get('content-security-policy'), path).toMatch(/upgrade-insecure-requests/);
      }
    } finally {
      await plain.stop();
      await secure.stop();
    }
  });

  it('logs out: the session row is gone and the old cookie no longer works', async () => {
    const c = client();
    await c.post('/login', { email: 'admin@example.org', password: PASSWORD });
    const id = c.jar.get('lk_session')!;
    const out = await c.post('/logout');
    expect(out.status).toBe(303);
    expect(c.jar.has('lk_session')).toBe(false);
    const stale = new WebClient(web.url);
    stale.jar.set('lk_session', id);
    expect((await stale.get('/admin/')).status).toBe(303);
  });

  it('logs out from a page left open after its session ended elsewhere, without a CSRF refusal', async () => {
    const c = client();
    await c.post('/login', { email: 'admin@example.org', password: PASSWORD });
    const page = await c.get('/admin/');
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1];
    const tab = new WebClient(web.url);
    for (const [k, v] of c.jar) tab.jar.set(k, v);
    expect((await c.post('/logout')).status).toBe(303);
    const late = await tab.post('/logout', {}, { csrf: token });
    expect(late.status).toBe(303);
    expect(late.location).toBe('/');
  });

  it('answers a wrong password and an unknown address with the same page, status and similar time', async () => {
    const time = async (email: string) => {
      const t = performance.now();
      const r = await client().post('/login', { email, password: 'not the password' });
      return { ms: performance.now() - t, status: r.status, text: r.text.replaceAll(email, 'X').replaceAll(encodeURIComponent(email), 'X').replace(/value="[^"]*"/g, '') };
    };
    await time('nobody@example.org'); // warm the dummy hash
    const known: number[] = [];
    const unknown: number[] = [];
    let a, b;
    // Eight interleaved pairs (under the per-address limit of 10): the suite runs files in
    // parallel, and a median of four samples taken on a busy machine once said more about the
    // machine than about the code.
    for (let i = 0; i < 8; i++) {
      a = await time('admin@example.org');
      b = await time('nobody@example.org');
      known.push(a.ms);
      unknown.push(b.ms);
    }
    expect(a!.status).toBe(401);
    expect(b!.status).toBe(401);
    expect(a!.text).toBe(b!.text);
    const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    // Both pay for an argon2 verification: the unknown address is not answered much faster.
    expect(median(unknown)).toBeGreaterThan(median(known) * 0.5);
  });

  it('does not lock the owner out after ten wrong passwords from anywhere: the right one from another network works', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await client(`203.0.113.${i}`).post('/login', { email: 'admin@example.org', password: `wrong-${i}` });
      expect(r.status).toBe(401);
    }
    // Even from a network that guessed: failures close an address to one network only when they
    // come from it, ten of them.
    expect((await client('203.0.113.99').post('/login', { email: 'admin@example.org', password: PASSWORD })).status).toBe(303);
    expect((await client('203.0.113.1').post('/login', { email: 'admin@example.org', password: PASSWORD })).status).toBe(303);
  });

  it('stops a guesser on one network: after ten failures for an address from there, even the right password is refused there', async () => {
    for (let i = 0; i < 10; i++) expect((await client('198.51.100.66').post('/login', { email: 'admin@example.org', password: `guess-${i}` })).status).toBe(401);
    const blocked = await client('198.51.100.66').post('/login', { email: 'admin@example.org', password: PASSWORD });
    expect(blocked.status).toBe(429);
    expect(blocked.text).toMatch(/Too many login attempts/);
    // The owner elsewhere is not affected.
    expect((await client('198.51.100.67').post('/login', { email: 'admin@example.org', password: PASSWORD })).status).toBe(303);
  });

  it('closes an address to passwords after 100 failures from many networks, while a mailed link still works', async () => {
    // Ten networks, ten guesses each: under every per-network limit.
    await Promise.all(Array.from({ length: 10 }, async (_, n) => {
      for (let i = 0; i < 10; i++) expect((await client(`192.0.2.${100 + n}`).post('/login', { email: 'admin@example.org', password: `spray-${i}` })).status).toBe(401);
    }));
    expect((await client('192.0.2.200').post('/login', { email: 'admin@example.org', password: PASSWORD })).status).toBe(429);
    const before = await afterResponseDone(web.url);
    expect((await client('192.0.2.200').post('/login/link', { email: 'admin@example.org' })).status).toBe(200);
    await afterResponseSettled(web.url, before, 1);
    const link = linkIn((await queuedMail(db, 'admin@example.org'))[0]);
    const c = client('192.0.2.200');
    expect((await c.post(link.pathname)).status).toBe(303);
    expect((await c.get('/admin/')).status).toBe(200);
  });

  it('throttles many attempts from one IP across addresses', async () => {
    let last = 0;
    for (let i = 0; i < 31; i++) last = (await client('192.0.2.1').post('/login', { email: `user${i}@example.org`, password: 'x' })).status;
    expect(last).toBe(429);
  });

  it('never redirects off-site after login', async () => {
    for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example']) {
      const c = client();
      const r = await c.post('/login', { email: 'admin@example.org', password: PASSWORD, next });
      expect(r.status).toBe(303);
      expect(r.location).toBe('/admin/');
    }
  });
});

describe('one-time login links', () => {
  it('mails a link to a member, which logs in once (after a confirming click) and lands on the account page', async () => {
    const c = client();
    const r = await c.post('/login/link', { email: 'member@example.org' });
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/a login link is on its way/);
    const mails = await mailArrives(db, 'member@example.org');
    expect(mails).toHaveLength(1);
    expect(mails[0].to).toBe('member@example.org');
    expect(mails[0].subject).toBe('Your login link');
    const link = linkIn(mails[0]);
    // A mail scanner fetching the link does not use it up.
    expect((await client().get(link.pathname)).status).toBe(200);
    const page = await c.get(link.pathname);
    expect(page.text).toContain('member@example.org');
    const used = await c.post(link.pathname);
    expect(used.status).toBe(303);
    expect(used.location).toBe('/account');
    expect((await c.get('/account')).text).toContain('dev@lists.example.org');
    // Single use.
    expect((await client().post(link.pathname)).status).toBe(410);
  });

  it('says the same for an unknown address and sends nothing', async () => {
    const before = await afterResponseDone(web.url);
    const known = await client().post('/login/link', { email: 'member@example.org' });
    const unknown = await client().post('/login/link', { email: 'stranger@example.org' });
    await afterResponseSettled(web.url, before, 2);
    expect(unknown.status).toBe(known.status);
    expect(unknown.text.replace(/stranger@example.org/g, 'X').replace(/value="[^"]*"/g, '')).toBe(known.text.replace(/member@example.org/g, 'X').replace(/value="[^"]*"/g, ''));
    expect((await queuedMail(db)).map((m) => m.to)).toEqual(['member@example.org']);
  });

  it("mails no link to a list's own address, even one subscribed to another list: it would wait in that list's queue", async () => {
    // An umbrella list has a list among its members: the address is known, yet nobody's mailbox.
    const inner = await createList(db.pool, { address: 'inner@lists.example.org', name: 'Inner', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const umbrella = await createList(db.pool, { address: 'umbrella@lists.example.org', name: 'Umbrella', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await addMember(db.pool, umbrella.id, inner.address, 'each');
    const before = await afterResponseDone(web.url);
    for (const email of [inner.address, 'inner-request@lists.example.org', 'member@example.org']) {
      expect((await client().post('/login/link', { email })).status).toBe(200);
    }
    expect((await client().post('/login/reset', { email: inner.address })).status).toBe(200);
    await afterResponseSettled(web.url, before, 4);
    expect((await queuedMail(db)).map((m) => m.to)).toEqual(['member@example.org']);
    expect((await db.pool.query(`select count(*)::int as n from login_tokens where email like 'inner%'`)).rows[0].n).toBe(0);
  });

  it('sends at most three links an hour to one address, silently', async () => {
    const before = await afterResponseDone(web.url);
    for (let i = 0; i < 5; i++) expect((await client(`203.0.113.${50 + i}`).post('/login/link', { email: 'member@example.org' })).status).toBe(200);
    await afterResponseSettled(web.url, before, 3);
    expect(await queuedMail(db)).toHaveLength(3);
  });

  it('answers before it looks the address up, makes a token or queues mail: known and unknown addresses take the same path', async () => {
    // Whatever would tell a known address from an unknown one waits behind these locks; the
    // answers must not. (Before, they waited for the lock: a deadlock until it was released, which
    // the 10 s bound below turns into a failure. It is no measure of speed.)
    const locker = await db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table accounts, members, list_roles, login_tokens, outbox in access exclusive mode');
      const count = async () => (await locker.query('select (select count(*) from login_tokens)::int as tokens, (select count(*) from outbox)::int as mails')).rows[0];
      const before = await count();
      const replies = Promise.all(['member@example.org', 'stranger@example.org'].map((email) => client().post('/login/link', { email })));
      const outcome = await Promise.race([replies, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 10_000))]);
      expect(outcome).not.toBe('stuck');
      if (outcome === 'stuck') return;
      expect(outcome.map((r) => r.status)).toEqual([200, 200]);
      expect(outcome[1].text.replace(/stranger@example.org/g, 'X').replace(/value="[^"]*"/g, '')).toBe(outcome[0].text.replace(/member@example.org/g, 'X').replace(/value="[^"]*"/g, ''));
      // Nothing was made or queued yet: that work waits behind the locks, after the answers.
      expect(await count()).toEqual(before);
    } finally {
      await locker.query('commit').catch(() => undefined);
      locker.release();
    }
    const mails = await mailArrives(db, 'member@example.org');
    expect(mails.map((m) => m.subject)).toEqual(['Your login link']);
    expect(await queuedMail(db, 'stranger@example.org')).toHaveLength(0);
  });

  it('refuses a forged or expired token', async () => {
    expect((await client().get(`/login/link/${'A'.repeat(43)}`)).status).toBe(410);
    expect((await client().get('/login/link/short')).status).toBe(410);
  });
});

describe('password reset by mail', () => {
  it('mails a reset link; the new password works, the old one and other sessions do not', async () => {
    await upsertAccount(db.pool, 'reset@example.org', { passwordHash: await hashPassword('old password 123') });
    const other = client();
    expect((await other.post('/login', { email: 'reset@example.org', password: 'old password 123' })).status).toBe(303);

    expect((await client().post('/login/reset', { email: 'reset@example.org' })).status).toBe(200);
    const mails = await mailArrives(db, 'reset@example.org');
    expect(mails).toHaveLength(1);
    const link = linkIn(mails[0]);
    const c = client();
    expect((await c.get(link.pathname)).status).toBe(200);
    const short = await c.post(link.pathname, { password: 'short', confirm: 'short' });
    expect(short.status).toBe(400);
    const done = await c.post(link.pathname, { password: 'new password 456', confirm: 'new password 456' });
    expect(done.status).toBe(303);
    expect((await c.get('/account')).status).toBe(200);
    expect((await other.get('/account')).status).toBe(303);
    expect((await client().post('/login', { email: 'reset@example.org', password: 'old password 123' })).status).toBe(401);
    expect((await client().post('/login', { email: 'reset@example.org', password: 'new password 456' })).status).toBe(303);
    expect((await client().post(link.pathname, { password: 'another one 789', confirm: 'another one 789' })).status).toBe(410);
    // The primary address is told, in the change's transaction, and the audit log has it.
    const told = (await queuedMail(db, 'reset@example.org')).filter((m) => m.subject === 'Your password was changed');
    expect(told).toHaveLength(1);
    expect(told[0].text).toMatch(/The password was reset, by a link mailed to one of its addresses, for your account on .* \(reset@example\.org, this address\) on \d{4}-\d\d-\d\d \d\d:\d\d UTC/);
    expect(told[0].text).toContain('/login/reset)');
    const audit = await db.pool.query(`select actor from audit_log where action = 'account.password_reset' and target = 'reset@example.org'`);
    expect(audit.rows).toEqual([{ actor: 'reset@example.org' }]);
  });

  it('answers a reset request for an unknown address like a known one, without mail', async () => {
    const before = await afterResponseDone(web.url);
    const r = await client().post('/login/reset', { email: 'ghost@example.org' });
    await afterResponseSettled(web.url, before, 1);
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/If <strong>ghost@example.org<\/strong> has an account here/);
    expect(await queuedMail(db)).toHaveLength(0);
  });
});

describe('listkeeper admin create', () => {
  it('creates a site administrator with a password, recorded in the audit log', async () => {
    const r = await cli(['admin', 'create', 'Boss@Example.org', '--password', 'a long password'], { DATABASE_URL: db.url });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('created site administrator boss@example.org');
    expect((await client().post('/login', { email: 'boss@example.org', password: 'a long password' })).location).toBe('/admin/');
    const { rows } = await db.pool.query(`select actor, action, target from audit_log where target = 'boss@example.org'`);
    expect(rows).toEqual([{ actor: 'cli', action: 'account.create', target: 'boss@example.org' }]);
  });

  it('prints a one-time login link without --password', async () => {
    const r = await cli(['admin', 'create', 'ops@example.org'], { DATABASE_URL: db.url, PUBLIC_URL: web.url });
    expect(r.code).toBe(0);
    const link = new URL(/https?:\/\/\S+/.exec(r.stdout)![0]);
    const c = client();
    const used = await c.post(link.pathname, { next: link.searchParams.get('next')! });
    expect(used.status).toBe(303);
    expect(used.location).toBe('/admin/');
    expect((await c.get('/admin/dashboard')).status).toBe(200);
  });

  it('refuses a short password with one line and a non-zero exit', async () => {
    const r = await cli(['admin', 'create', 'x@example.org', '--password', 'short'], { DATABASE_URL: db.url });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/at least 8 characters/);
  });
});

describe('listkeeper admin ls and admin remove', () => {
  it('lists the site administrators and who made each', async () => {
    await upsertAccount(db.pool, 'sso-made@example.org', { siteAdmin: true });
    await db.pool.query(`update accounts set site_admin_via = 'oidc' where email = 'sso-made@example.org'`);
    const r = await cli(['admin', 'ls', '--json'], { DATABASE_URL: db.url });
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { email: string; via: string; has_password: boolean }[];
    expect(rows.find((x) => x.email === 'admin@example.org')).toMatchObject({ via: 'cli', has_password: true });
    expect(rows.find((x) => x.email === 'sso-made@example.org')).toMatchObject({ via: 'oidc', has_password: false });
    expect(rows.map((x) => x.email)).not.toContain('member@example.org');
    const table = await cli(['admin', 'ls'], { DATABASE_URL: db.url });
    expect(table.stdout).toMatch(/^EMAIL\s+VIA\s+HAS_PASSWORD/);
    expect(table.stdout).toMatch(/sso-made@example\.org\s+oidc\s+false/);
  });

  it('takes the rights away at the next request, stops the API tokens the account made, and records it', async () => {
    await upsertAccount(db.pool, 'leaver@example.org', { passwordHash: await hashPassword(PASSWORD), siteAdmin: true });
    const { createApiToken } = await import('../src/core/api-tokens.ts');
    const leaverId = (await db.pool.query(`select id from accounts where email = 'leaver@example.org'`)).rows[0].id as number;
    const { token } = await createApiToken(db.pool, { scope: 'read', actor: 'leaver@example.org', account: leaverId });
    const c = client('198.51.100.60');
    await c.get('/login');
    expect((await c.post('/login', { email: 'leaver@example.org', password: PASSWORD })).location).toBe('/admin/');
    expect((await c.get('/admin/audit')).status).toBe(200);
    const api = () => fetch(`${web.url}/api/v1/lists`, { headers: { authorization: `Bearer ${token}` } });
    expect((await api()).status).toBe(200);

    const r = await cli(['admin', 'remove', 'Leaver@Example.org'], { DATABASE_URL: db.url });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('leaver@example.org is no longer a site administrator');
    expect(r.stdout).toContain('1 API token made by leaver@example.org stopped working');
    // The session is kept (the account may own lists), without the site-wide pages.
    expect((await c.get('/admin/audit')).status).toBe(403);
    expect((await api()).status).toBe(401);
    const { rows } = await db.pool.query(`select actor, detail from audit_log where action = 'account.site_admin_revoke' and target = 'leaver@example.org'`);
    expect(rows).toEqual([{ actor: 'cli', detail: { via: 'cli', api_tokens_stopped: 1 } }]);
    const again = await cli(['admin', 'remove', 'leaver@example.org'], { DATABASE_URL: db.url });
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/leaver@example\.org is not a site administrator/);
  });

  it('warns that a single sign-on group gives the rights back', async () => {
    await upsertAccount(db.pool, 'grouped@example.org', { siteAdmin: true });
    await db.pool.query(`update accounts set site_admin_via = 'ldap' where email = 'grouped@example.org'`);
    const r = await cli(['admin', 'remove', 'grouped@example.org'], { DATABASE_URL: db.url });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/LDAP directory's admin group, which gives the rights back/);
  });

  it('warns, when a provider\'s admin group is configured, that it gives the rights back to an account made one here too', async () => {
    await upsertAccount(db.pool, 'also-grouped@example.org', { siteAdmin: true });
    const oidc = { OIDC_ISSUER: 'https://idp.example.org', OIDC_CLIENT_ID: 'listkeeper', OIDC_ADMIN_GROUP: 'list-admins' };
    const r = await cli(['admin', 'remove', 'also-grouped@example.org'], { DATABASE_URL: db.url, ...oidc });
    expect(r.code, r.stderr).toBe(0);
    // Made one on the command line, but in the group all the same: its next login through the provider makes it one again.
    expect(r.stderr).toMatch(/OpenID Connect provider's admin group makes its members site administrators when they log in: if also-grouped@example\.org is in it/);
  });

  it('refuses to remove the last site administrator, and an address that is not one', async () => {
    const others = (await db.pool.query(`select email from accounts where is_site_admin and email <> 'admin@example.org'`)).rows.map((x) => x.email as string);
    for (const email of others) expect((await cli(['admin', 'remove', email], { DATABASE_URL: db.url })).code).toBe(0);
    const r = await cli(['admin', 'remove', 'admin@example.org'], { DATABASE_URL: db.url });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/admin@example\.org is the last site administrator: make another first/);
    expect((await db.pool.query(`select is_site_admin from accounts where email = 'admin@example.org'`)).rows[0].is_site_admin).toBe(true);
    const member = await cli(['admin', 'remove', 'member@example.org'], { DATABASE_URL: db.url });
    expect(member.code).toBe(3);
    const bad = await cli(['admin', 'remove', 'not an address'], { DATABASE_URL: db.url });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/is not an e-mail address/);
  });
});
