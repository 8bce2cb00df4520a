import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { upsertAccount } from '../src/db/accounts.ts';
import { addPendingAddress, verifyAddress } from '../src/db/account-addresses.ts';
import { hashPassword } from '../src/auth/credentials.ts';
import { verifiedEmail } from '../src/auth/oidc.ts';
import { parseConfig } from '../src/config.ts';
import { log, redactPath } from '../src/log.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';
import { ADMIN_GROUP, CLIENT_ID, CLIENT_SECRET, OIDC_USERS, providerPort, signIn, startProvider, type RunningProvider } from './helpers/oidc-provider.ts';

let db: TestDatabase;
let web: RunningWeb;
let provider: RunningProvider;
let oidcEnv: Record<string, string>;

beforeAll(async () => {
  db = await testDatabase();
  const port = await providerPort();
  oidcEnv = {
    OIDC_ISSUER: `http://127.0.0.1:${port}`, OIDC_CLIENT_ID: CLIENT_ID, OIDC_CLIENT_SECRET: CLIENT_SECRET,
    OIDC_SCOPES: 'openid email groups', OIDC_ADMIN_GROUP: ADMIN_GROUP, OIDC_LABEL: 'Example SSO', OIDC_TIMEOUT: '1',
  };
  // listkeeper first (its port is the redirect URI); it asks the provider only at the first login.
  web = await startWeb(db, oidcEnv);
  provider = await startProvider(port, `${web.url}/login/oidc/callback`);
});
afterAll(async () => {
  await web?.stop();
  await provider?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from rate_limits');
});

const client = () => new WebClient(web.url, { 'x-forwarded-for': '198.51.100.20' });

/** Starts a login at listkeeper: the provider's authorization URL it redirects to. */
async function startLogin(c: WebClient, next = ''): Promise<URL> {
  const r = await c.get(`/login/oidc${next ? `?next=${encodeURIComponent(next)}` : ''}`);
  expect(r.status).toBe(303);
  return new URL(r.location!);
}

async function accountOf(email: string) {
  const { rows } = await db.pool.query('select a.* from accounts a join account_addresses aa on aa.account_id = a.id where aa.email = $1 and aa.verified_at is not null', [email]);
  return rows[0] ?? null;
}

/** What the app logs (at warn and above) while `fn` runs. */
async function logged<T>(fn: () => Promise<T>): Promise<{ reply: T; lines: string[] }> {
  const lines: string[] = [];
  const level = log.level;
  log.level = 'warn';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  });
  try {
    return { reply: await fn(), lines };
  } finally {
    spy.mockRestore();
    log.level = level;
  }
}

describe('logging in with OpenID Connect', () => {
  it('offers the provider on the login page by its label', async () => {
    const page = await client().get('/login');
    expect(page.text).toContain('href="/login/oidc"');
    expect(page.text).toContain('Log in with Example SSO');
  });

  it('sends the browser to the provider with PKCE (S256), a state and a nonce, and never the client secret', async () => {
    const c = client();
    const url = await startLogin(c);
    expect(url.origin).toBe(provider.issuer);
    const p = url.searchParams;
    expect(p.get('client_id')).toBe(CLIENT_ID);
    expect(p.get('redirect_uri')).toBe(`${web.url}/login/oidc/callback`);
    expect(p.get('code_challenge_method')).toBe('S256');
    expect(p.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.get('state')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(p.get('nonce')).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(url.href).not.toContain(CLIENT_SECRET);
    expect(c.jar.get('lk_oidc')).toBeTruthy();
  });

  it('creates the account of a verified address at the first login, logs into it, and into the same one the next time', async () => {
    const c = client();
    const callback = await signIn(c, (await startLogin(c)).href, 'carol');
    const r = await c.get(callback);
    expect(r.status).toBe(303);
    expect(r.location).toBe('/account');
    expect(c.jar.get('lk_oidc')).toBeUndefined();
    const account = await accountOf('carol@example.org');
    expect(account).toMatchObject({ email: 'carol@example.org', is_site_admin: false, password_hash: null });
    expect((await c.get('/account')).text).toContain('carol@example.org');
    const { rows: audit } = await db.pool.query(`select detail from audit_log where action = 'account.create' and target = 'carol@example.org'`);
    expect(audit).toHaveLength(1);
    expect(audit[0].detail).toMatchObject({ via: 'oidc', subject: `${provider.issuer} carol` });

    const again = client();
    expect((await again.get(await signIn(again, (await startLogin(again)).href, 'carol'))).status).toBe(303);
    const { rows } = await db.pool.query(`select count(*)::int as n from accounts where email = 'carol@example.org'`);
    expect(rows[0].n).toBe(1);
    expect((await again.get('/account')).status).toBe(200);
  });

  it('logs into the account that has the address verified as a secondary one, and not into one that only added it', async () => {
    const { account: holder } = await upsertAccount(db.pool, 'carol.holder@example.org');
    const { account: claimant } = await upsertAccount(db.pool, 'claimant@example.org');
    await addPendingAddress(db.pool, claimant.id, 'root@example.org');
    const c = client();
    await c.get(await signIn(c, (await startLogin(c)).href, 'root'));
    const root = await accountOf('root@example.org');
    expect(root.id).not.toBe(claimant.id);
    expect(root.email).toBe('root@example.org');

    // Carol's address moves to another account as a verified secondary address: SSO follows it.
    await db.pool.query(`delete from accounts where email = 'carol@example.org'`);
    await addPendingAddress(db.pool, holder.id, 'carol@example.org');
    expect(await verifyAddress(db.pool, holder.id, 'carol@example.org')).toBe('verified');
    const d = client();
    await d.get(await signIn(d, (await startLogin(d)).href, 'carol'));
    expect((await d.get('/account')).text).toContain('carol.holder@example.org');
    // The session remembers the address the provider vouched for: removing it from the account ends the session.
    const { rows } = await db.pool.query('select login_email from sessions where account_id = $1', [holder.id]);
    expect(rows).toEqual([{ login_email: 'carol@example.org' }]);
  });

  it('makes a member of the admin group a site administrator, and lands on the panel', async () => {
    await db.pool.query(`delete from accounts where email = 'root@example.org'`);
    const c = client();
    const r = await c.get(await signIn(c, (await startLogin(c)).href, 'root'));
    expect(r.location).toBe('/admin/');
    expect((await accountOf('root@example.org')).is_site_admin).toBe(true);
    expect((await c.get('/admin/')).status).toBe(200);
    const { rows } = await db.pool.query(`select detail from audit_log where action = 'account.site_admin' and target = 'root@example.org'`);
    expect(rows[0].detail).toMatchObject({ via: 'oidc' });
    // Carol is not in the group: no rights.
    const d = client();
    await d.get(await signIn(d, (await startLogin(d)).href, 'carol'));
    expect((await d.get('/admin/audit')).status).toBe(403);
  });

  it('takes back the rights the group gave once the user has left it, and never those given by the command line', async () => {
    const saved = OIDC_USERS.root.groups;
    try {
      const c = client();
      await c.get(await signIn(c, (await startLogin(c)).href, 'root'));
      expect(await accountOf('root@example.org')).toMatchObject({ is_site_admin: true, site_admin_via: 'oidc' });
      OIDC_USERS.root.groups = ['staff'];
      const d = client();
      const r = await d.get(await signIn(d, (await startLogin(d)).href, 'root'));
      expect(r.location).toBe('/account');
      expect(await accountOf('root@example.org')).toMatchObject({ is_site_admin: false, site_admin_via: null });
      expect((await d.get('/admin/audit')).status).toBe(403);
      const { rows } = await db.pool.query(`select detail from audit_log where action = 'account.site_admin_revoke' and target = 'root@example.org'`);
      expect(rows[0].detail).toMatchObject({ via: 'oidc' });
    } finally {
      OIDC_USERS.root.groups = saved;
    }
    // Carol, made a site administrator by the command line, is not in the group: she stays one.
    await upsertAccount(db.pool, 'carol.holder@example.org', { siteAdmin: true });
    const e = client();
    await e.get(await signIn(e, (await startLogin(e)).href, 'carol'));
    expect(await accountOf('carol@example.org')).toMatchObject({ email: 'carol.holder@example.org', is_site_admin: true, site_admin_via: null });
    expect((await e.get('/admin/audit')).status).toBe(200);
    await db.pool.query(`update accounts set is_site_admin = false where email = 'carol.holder@example.org'`);
  });

  it('keeps the return path across the provider', async () => {
    const c = client();
    const r = await c.get(await signIn(c, (await startLogin(c, '/account?tab=lists')).href, 'carol'));
    expect(r.location).toBe('/account?tab=lists');
  });

  it('refuses a callback whose state was changed, and starts no session; the refusal is logged without the code or secret', async () => {
    const c = client();
    const callback = new URL(await signIn(c, (await startLogin(c)).href, 'carol'));
    callback.searchParams.set('state', `${callback.searchParams.get('state')}x`);
    const { reply: r, lines } = await logged(() => c.get(callback.href));
    const refusal = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'single sign-on refused');
    expect(refusal).toMatchObject({ level: 40, method: 'oidc', code: 'oidc_state', ip: '198.51.100.20' });
    expect(lines.join('')).not.toContain(callback.searchParams.get('code')!);
    expect(lines.join('')).not.toContain(CLIENT_SECRET);
    expect(r.status).toBe(400);
    expect(r.text).toContain('does not match the one this browser started');
    expect(c.jar.get('lk_session')).toBeUndefined();
    expect((await c.get('/account')).status).toBe(303);
  });

  it('refuses a callback in a browser that did not start the login (no state cookie): a login forced on someone else', async () => {
    const attacker = client();
    const callback = await signIn(attacker, (await startLogin(attacker)).href, 'carol');
    const victim = client();
    const r = await victim.get(callback);
    expect(r.status).toBe(400);
    expect(r.text).toContain('not started in this browser');
    expect(victim.jar.get('lk_session')).toBeUndefined();
  });

  it('refuses an ID token whose nonce is not the one this login asked for', async () => {
    const c = client();
    const url = await startLogin(c);
    url.searchParams.set('nonce', 'a-nonce-someone-else-chose-1234567890');
    const r = await c.get(await signIn(c, url.href, 'carol'));
    expect(r.status).toBe(400);
    expect(r.text).toMatch(/nonce/i);
    expect(c.jar.get('lk_session')).toBeUndefined();
  });

  it('refuses an address the provider has not verified, and creates no account', async () => {
    const c = client();
    const r = await c.get(await signIn(c, (await startLogin(c)).href, 'eve'));
    expect(r.status).toBe(403);
    expect(r.text).toContain('has not verified eve@example.org');
    expect(await accountOf('eve@example.org')).toBeNull();
    const { rows } = await db.pool.query(`select count(*)::int as n from accounts where email = 'eve@example.org'`);
    expect(rows[0].n).toBe(0);
  });

  it('refuses a user without an address', async () => {
    const c = client();
    const r = await c.get(await signIn(c, (await startLogin(c)).href, 'nomail'));
    expect(r.status).toBe(403);
    expect(r.text).toContain('gave no e-mail address');
  });

  it('reads the address and its verification from one source, never the flag of the ID token with the address of userinfo', () => {
    expect(verifiedEmail({ sub: 's', email: 'a@example.org', email_verified: true }, null)).toBe('a@example.org');
    expect(verifiedEmail({ sub: 's' }, { email: 'a@example.org', email_verified: 'true' })).toBe('a@example.org');
    // The token's flag, about no address, vouches for nothing userinfo names.
    expect(() => verifiedEmail({ sub: 's', email_verified: true }, { email: 'victim@example.org', email_verified: false })).toThrow(/has not verified victim@example.org/);
    expect(() => verifiedEmail({ sub: 's', email_verified: true }, { email: 'victim@example.org' })).toThrow(/has not verified/);
    // Userinfo completes the token's flag only for the token's own address.
    expect(verifiedEmail({ sub: 's', email: 'a@example.org' }, { email: 'a@example.org', email_verified: true })).toBe('a@example.org');
    expect(() => verifiedEmail({ sub: 's', email: 'a@example.org' }, { email: 'b@example.org', email_verified: true })).toThrow(/has not verified a@example.org/);
    expect(() => verifiedEmail({ sub: 's', email_verified: true }, null)).toThrow(/gave no e-mail address/);
  });

  it('answers 503 within OIDC_TIMEOUT when the provider stops answering before the code is exchanged', async () => {
    const c = client();
    const callback = await signIn(c, (await startLogin(c)).href, 'carol');
    provider.hang();
    try {
      const t0 = Date.now();
      const r = await c.get(callback);
      expect(r.status).toBe(503);
      expect(r.text).toContain('could not be reached');
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(c.jar.get('lk_session')).toBeUndefined();
    } finally {
      provider.release();
    }
  });

  it('answers 503 within OIDC_TIMEOUT when discovery does not answer, and discovers again at the next login', async () => {
    const fresh = await startWeb(db, oidcEnv);
    try {
      provider.hang();
      const t0 = Date.now();
      const r = await fetch(`${fresh.url}/login/oidc`, { redirect: 'manual' });
      expect(r.status).toBe(503);
      expect(await r.text()).toContain('OpenID provider could not be reached');
      expect(Date.now() - t0).toBeLessThan(4000);
      provider.release();
      // The failure is not cached: the provider answers again, so does the login.
      const again = await fetch(`${fresh.url}/login/oidc`, { redirect: 'manual' });
      expect(again.status).toBe(303);
      expect(again.headers.get('location')).toContain(provider.issuer);
    } finally {
      provider.release();
      await fresh.stop();
    }
  });

  it('masks the callback\'s code and state in logged request paths', () => {
    expect(redactPath('/login/oidc/callback?code=abc&state=def&iss=x')).toBe('/login/oidc/callback?***');
  });
});

describe('which ways of logging in are on', () => {
  it('offers no single sign-on by default, and password and mailed link', async () => {
    const plain = await startWeb(db);
    try {
      const page = await (await fetch(`${plain.url}/login`)).text();
      expect(page).not.toContain('/login/oidc');
      expect(page).not.toContain('/login/ldap');
      expect(page).toContain('action="/login"');
      expect(page).toContain('action="/login/link"');
      expect((await fetch(`${plain.url}/login/oidc`, { redirect: 'manual' })).status).toBe(404);
    } finally {
      await plain.stop();
    }
  });

  it('takes away the password form, resets and mailed links when PASSWORD_LOGIN and MAGIC_LINK_LOGIN are off', async () => {
    await upsertAccount(db.pool, 'pw@example.org', { passwordHash: await hashPassword('a long password') });
    const sso = await startWeb(db, { ...oidcEnv, PASSWORD_LOGIN: 'off', MAGIC_LINK_LOGIN: 'off' });
    try {
      const c = new WebClient(sso.url, { 'x-forwarded-for': '198.51.100.21' });
      const page = await c.get('/login');
      expect(page.text).toContain('Log in with Example SSO');
      expect(page.text).not.toContain('action="/login"');
      expect(page.text).not.toContain('action="/login/link"');
      expect((await c.post('/login', { email: 'pw@example.org', password: 'a long password' })).status).toBe(404);
      expect((await c.post('/login/link', { email: 'pw@example.org' })).status).toBe(404);
      expect((await c.get('/login/reset')).status).toBe(404);
      expect(c.jar.get('lk_session')).toBeUndefined();
      // Logged in (by single sign-on), there is no password to set either.
      const member = await loggedIn(db, sso.url, 'pw@example.org');
      const account = await member.get('/account');
      expect(account.text).toContain('Sessions');
      expect(account.text).not.toContain('action="/account/password"');
      expect((await member.post('/account/password', { password: 'another long one', confirm: 'another long one' })).status).toBe(404);
    } finally {
      await sso.stop();
    }
  });

  it('refuses a configuration that leaves no way in, an incomplete provider, and a plain-http issuer elsewhere than loopback', () => {
    expect(() => parseConfig({ PASSWORD_LOGIN: 'off', MAGIC_LINK_LOGIN: 'off' })).toThrow(/no way to log in/);
    expect(() => parseConfig({ OIDC_ISSUER: 'https://idp.example.org' })).toThrow(/OIDC_CLIENT_ID/);
    let message = '';
    try {
      parseConfig({ OIDC_ISSUER: 'http://idp.example.org', OIDC_CLIENT_ID: 'x', OIDC_CLIENT_SECRET: 'never-print-this-secret' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/must be an https URL/);
    expect(message).not.toContain('never-print-this-secret');
    expect(() => parseConfig({ OIDC_SCOPES: 'email', OIDC_CLIENT_SECRET: 'never-print-this-secret' })).toThrow(/OIDC_SCOPES="email" must include openid/);
    expect(parseConfig({ OIDC_ISSUER: 'https://idp.example.org', OIDC_CLIENT_ID: 'x' }).login.oidc).toMatchObject({ scopes: 'openid email profile', groupsClaim: 'groups' });
  });
});
