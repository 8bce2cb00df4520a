import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { escapeDnValue, escapeFilterValue } from '../src/auth/ldap.ts';
import { parseConfig } from '../src/config.ts';
import { upsertAccount } from '../src/db/accounts.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { WebClient } from './helpers/browser.ts';
import { makeCertificates } from './helpers/certificates.ts';
import { ADMINS_GROUP, BASE, MALLORY, PEOPLE, PEOPLE_ENTRIES, POSIX_ADMINS_GROUP, SERVICE_DN, SERVICE_PASSWORD, startSlapd, type RunningSlapd } from './helpers/slapd.ts';

let db: TestDatabase;
let slapd: RunningSlapd;
/** DN template (bind directly as uid={user},ou=people,...) */
let direct: RunningWeb;
/** search as the service account, then bind as the entry found */
let searching: RunningWeb;

beforeAll(async () => {
  db = await testDatabase();
  slapd = await startSlapd();
  direct = await startWeb(db, { LDAP_URL: slapd.url, LDAP_BIND_DN: `uid={user},${PEOPLE}`, LDAP_ADMIN_GROUP: ADMINS_GROUP, LDAP_TIMEOUT: '1' });
  searching = await startWeb(db, {
    LDAP_URL: slapd.url, LDAP_SEARCH_BASE: BASE, LDAP_SEARCH_FILTER: '(&(objectClass=inetOrgPerson)(uid={user}))',
    LDAP_BIND_USER: SERVICE_DN, LDAP_BIND_PASSWORD: SERVICE_PASSWORD, LDAP_TIMEOUT: '1', LDAP_LABEL: 'Example directory',
  });
});
afterAll(async () => {
  await direct?.stop();
  await searching?.stop();
  await slapd?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from rate_limits');
});

let ip = 10;
const client = (web: RunningWeb) => new WebClient(web.url, { 'x-forwarded-for': `198.51.100.${ip++}` });
const login = (c: WebClient, user: string, password: string, next = '') => c.post('/login/ldap', { user, password, ...(next ? { next } : {}) });
const pw = (uid: string) => PEOPLE_ENTRIES[uid].password;

async function accountOf(email: string) {
  const { rows } = await db.pool.query('select a.* from accounts a join account_addresses aa on aa.account_id = a.id where aa.email = $1 and aa.verified_at is not null', [email]);
  return rows[0] ?? null;
}

async function sessions(): Promise<number> {
  const { rows } = await db.pool.query('select count(*)::int as n from sessions');
  return rows[0].n;
}

describe('logging in with a directory account (LDAP)', () => {
  it('offers the directory form on the login page', async () => {
    const page = await client(searching).get('/login');
    expect(page.text).toContain('action="/login/ldap"');
    expect(page.text).toContain('User name (Example directory)');
  });

  it('logs in with the right password, as the account of the entry\'s mail attribute, created at the first login', async () => {
    const c = client(direct);
    const r = await login(c, 'ann', pw('ann'));
    expect(r.status).toBe(303);
    expect(r.location).toBe('/account');
    expect(c.jar.get('lk_session')).toBeTruthy();
    expect(await accountOf('ann@example.org')).toMatchObject({ email: 'ann@example.org', is_site_admin: false });
    expect((await c.get('/account')).text).toContain('ann@example.org');
    const { rows } = await db.pool.query(`select detail from audit_log where action = 'account.create' and target = 'ann@example.org'`);
    expect(rows[0].detail).toMatchObject({ via: 'ldap', subject: `uid=ann,${PEOPLE}` });
  });

  it('logs in by search-then-bind, as the service account finds the entry', async () => {
    const c = client(searching);
    const r = await login(c, 'ann', pw('ann'), '/account?from=ldap');
    expect(r.status).toBe(303);
    expect(r.location).toBe('/account?from=ldap');
    expect((await c.get('/account')).status).toBe(200);
  });

  it('finds a user whose name needs escaping in a DN (RFC 4514) and in a filter (RFC 4515)', async () => {
    for (const web of [direct, searching]) {
      const c = client(web);
      const r = await login(c, 'smith, jr', pw('smith, jr'));
      expect(r.status).toBe(303);
    }
    expect(await accountOf('smith@example.org')).not.toBeNull();
  });

  it('refuses a wrong password and an unknown user alike, with 401 and no session', async () => {
    const before = await sessions();
    for (const web of [direct, searching]) {
      for (const [user, password] of [['ann', 'not-the-password'], ['nobody', 'whatever-it-is']]) {
        const c = client(web);
        const r = await login(c, user, password);
        expect(r.status).toBe(401);
        expect(r.text).toContain('do not match a directory account');
        expect(c.jar.get('lk_session')).toBeUndefined();
      }
    }
    expect(await sessions()).toBe(before);
  });

  it('never binds with an empty password, which this directory would take as an unauthenticated (anonymous) bind', async () => {
    const mark = slapd.output().length;
    for (const web of [direct, searching]) {
      const c = client(web);
      const r = await login(c, 'bob', '');
      expect(r.status).toBe(400);
      expect(r.text).toContain('Enter your password');
      expect(c.jar.get('lk_session')).toBeUndefined();
    }
    expect(await accountOf('bob@example.org')).toBeNull();
    // The directory was not even asked; slapd's log shows binds (this one, once it is made).
    expect((await login(client(direct), 'smith, jr', pw('smith, jr'))).status).toBe(303);
    await expect.poll(() => slapd.output().slice(mark)).toMatch(/BIND dn="uid=smith\\2C jr,/);
    expect(slapd.output().slice(mark)).not.toContain('uid=bob');
  });

  it('refuses filter and DN injections: wildcards and filter syntax in a user name are only characters', async () => {
    const attempts = ['*', 'bo*', '*)(uid=*', '*)(|(uid=*', 'bob)(uid=*', 'bob,ou=people', `bob,${PEOPLE}`, 'bob\\2a', '\u0000bob', '#bob', 'bo\nb'];
    for (const web of [direct, searching]) {
      for (const user of attempts) {
        const c = client(web);
        const r = await login(c, user, pw('bob'));
        expect([400, 401], `${user} on ${web === direct ? 'DN template' : 'search'}`).toContain(r.status);
        expect(c.jar.get('lk_session')).toBeUndefined();
      }
    }
    expect(await accountOf('bob@example.org')).toBeNull();
  });

  it('makes a member of LDAP_ADMIN_GROUP a site administrator, and nobody else', async () => {
    const c = client(direct);
    const r = await login(c, 'bob', pw('bob'));
    expect(r.location).toBe('/admin/');
    expect((await accountOf('bob@example.org')).is_site_admin).toBe(true);
    expect((await c.get('/admin/')).status).toBe(200);
    expect((await accountOf('ann@example.org')).is_site_admin).toBe(false);
    expect(await accountOf('bob@example.org')).toMatchObject({ site_admin_via: 'ldap' });
  });

  it('leaves a site administrator made by the command line one, though not in the group', async () => {
    await upsertAccount(db.pool, 'ann@example.org', { siteAdmin: true });
    const c = client(direct);
    expect((await login(c, 'ann', pw('ann'))).location).toBe('/admin/');
    expect(await accountOf('ann@example.org')).toMatchObject({ is_site_admin: true, site_admin_via: null });
    await db.pool.query(`update accounts set is_site_admin = false where email = 'ann@example.org'`);
  });

  it('reads memberUid of a posixGroup as the entry\'s uid, not the name typed: a login by address whose mail also holds "bob" is not bob', async () => {
    // Logging in by address, as many directories are set up: the name typed is a mail value, not a uid.
    const byMail = await startWeb(db, {
      LDAP_URL: slapd.url, LDAP_SEARCH_BASE: BASE, LDAP_SEARCH_FILTER: '(&(objectClass=inetOrgPerson)(mail={user}))',
      LDAP_BIND_USER: SERVICE_DN, LDAP_BIND_PASSWORD: SERVICE_PASSWORD, LDAP_ADMIN_GROUP: POSIX_ADMINS_GROUP, LDAP_TIMEOUT: '1',
    });
    try {
      // mallory types "bob" (a value of her own mail attribute) and her own password: she is mallory, not in the group.
      const m = client(byMail);
      expect((await login(m, 'bob', MALLORY.password)).status).toBe(303);
      expect(await accountOf(MALLORY.mail)).toMatchObject({ is_site_admin: false });
      expect((await m.get('/admin/')).status).not.toBe(200);
      // bob, named by memberUid, logs in by his address and is a site administrator.
      await db.pool.query(`update accounts set is_site_admin = false, site_admin_via = null where email = 'bob@example.org'`);
      expect((await login(client(byMail), 'bob@example.org', pw('bob'))).location).toBe('/admin/');
      expect(await accountOf('bob@example.org')).toMatchObject({ is_site_admin: true, site_admin_via: 'ldap' });
    } finally {
      await byMail.stop();
    }
  });

  it('refuses an entry without an address, saying why', async () => {
    const r = await login(client(direct), 'nomail', pw('nomail'));
    expect(r.status).toBe(400);
    expect(r.text).toContain('has no address (mail)');
  });

  it('counts directory attempts against the login limits: ten failures close the name to that network', async () => {
    const c = client(direct);
    for (let i = 0; i < 10; i++) expect((await login(c, 'ann', `wrong-${i}`)).status).toBe(401);
    const r = await login(c, 'ann', pw('ann'));
    expect(r.status).toBe(429);
    expect(c.jar.get('lk_session')).toBeUndefined();
    // The owner from another network is not locked out.
    expect((await login(client(direct), 'ann', pw('ann'))).status).toBe(303);
  });

  it('counts every spelling the directory takes for one name as that name: fullwidth letters, zero-width characters, case', async () => {
    const c = client(direct);
    // The directory matches these as "bob" (RFC 4518): they must not be new names to the limits.
    const spellings = ['ｂob', 'bｏb', 'BOB', 'bob\u200b', '\u200bbob', 'ｂｏｂ', 'b\u00adob', 'bob', 'Bob', 'ｂoｂ'];
    for (const [i, user] of spellings.entries()) expect((await login(c, user, `wrong-${i}`)).status).toBe(401);
    expect((await login(c, 'ｂｏｂ', pw('bob'))).status).toBe(429);
    // Another network, any spelling, the right password: in, as bob.
    const other = client(direct);
    expect((await login(other, 'ｂob\u200b', pw('bob'))).status).toBe(303);
  });

  it('counts a name with more spaces inside as that name: the directory binds "smith,   jr" as "smith, jr"', async () => {
    const c = client(direct);
    // RFC 4518 2.6.1: a run of spaces matches one. Each run length was a new name with limits of its own.
    for (let i = 0; i < 10; i++) expect((await login(c, `smith,${' '.repeat(i + 2)}jr`, `wrong-${i}`)).status).toBe(401);
    expect((await login(c, 'smith, jr', pw('smith, jr'))).status).toBe(429);
    expect((await login(c, 'smith,            jr', pw('smith, jr'))).status).toBe(429);
    expect((await db.pool.query(`select hits from rate_limits where key = 'login:fail:ldap:smith, jr'`)).rows).toEqual([{ hits: 10 }]);
    const other = client(direct);
    expect((await login(other, 'smith,  jr', pw('smith, jr'))).status).toBe(303);
  });

  it('answers 503 with a clear message within LDAP_TIMEOUT when the directory stops answering', async () => {
    await slapd.freeze();
    try {
      const c = client(direct);
      const t0 = Date.now();
      const r = await login(c, 'ann', pw('ann'));
      expect(r.status).toBe(503);
      expect(r.text).toContain('The directory did not answer within 1 s');
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(c.jar.get('lk_session')).toBeUndefined();
    } finally {
      slapd.thaw();
    }
    expect((await login(client(direct), 'ann', pw('ann'))).status).toBe(303);
  });

  it('answers 503 when nothing listens at LDAP_URL', async () => {
    const gone = await startWeb(db, { LDAP_URL: 'ldap://127.0.0.1:1', LDAP_BIND_DN: `uid={user},${PEOPLE}`, LDAP_TIMEOUT: '1' });
    try {
      const r = await login(client(gone), 'ann', pw('ann'));
      expect(r.status).toBe(503);
      expect(r.text).toContain('The directory could not be reached; try again later.');
    } finally {
      await gone.stop();
    }
  });
});

describe('passwords only over TLS to a directory elsewhere', () => {
  it('upgrades ldap:// with StartTLS (or speaks ldaps://), checks the certificate against LDAP_TLS_CA, and sends no password when it cannot be trusted', async () => {
    const certs = makeCertificates();
    // 127.0.0.2 is a loopback address to the kernel, but not one listkeeper treats as this machine.
    const remote = await startSlapd({ host: '127.0.0.2', tls: certs.good });
    const env = { LDAP_URL: remote.url, LDAP_BIND_DN: `uid={user},${PEOPLE}`, LDAP_TIMEOUT: '2' };
    const trusting = await startWeb(db, { ...env, LDAP_TLS_CA: certs.caFile });
    const untrusting = await startWeb(db, env);
    try {
      const r = await login(client(trusting), 'ann', pw('ann'));
      expect(r.status, `${/<p class="error"[^>]*>([^<]*)/.exec(r.text)?.[1]}\n${remote.output()}`).toBe(303);
      await expect.poll(() => remote.output()).toMatch(/STARTTLS/);
      // The directory refuses simple binds without encryption (simple_bind=64): the bind was over TLS.
      expect(remote.output()).toMatch(/BIND dn="uid=ann,ou=people,dc=example,dc=org" mech=SIMPLE bind_ssf=0 ssf=(?!0\b)\d+/);

      const mark = remote.output().length;
      const refused = await login(client(untrusting), 'ann', pw('ann'));
      expect(refused.status).toBe(503);
      expect(refused.text).toContain('The directory could not be reached; try again later.');
      await new Promise((resolve) => setTimeout(resolve, 200));
      // A bind operation, not the earlier connection's UNBIND, which slapd may log after the mark.
      expect(remote.output().slice(mark)).not.toMatch(/op=\d+ BIND /);

      // ldaps:// speaks TLS from the first byte, with the same certificate check.
      const ldaps = await startWeb(db, { ...env, LDAP_URL: remote.ldapsUrl!, LDAP_TLS_CA: certs.caFile });
      try {
        expect((await login(client(ldaps), 'ann', pw('ann'))).status).toBe(303);
      } finally {
        await ldaps.stop();
      }
    } finally {
      await trusting.stop();
      await untrusting.stop();
      await remote.stop();
      certs.remove();
    }
  });
});

describe('LDAP escaping', () => {
  it('escapes every filter metacharacter (RFC 4515) and nothing that needs none', () => {
    expect(escapeFilterValue('*)(uid=*')).toBe('\\2a\\29\\28uid=\\2a');
    expect(escapeFilterValue('a\\b\u0000')).toBe('a\\5cb\\00');
    expect(escapeFilterValue('Zoë Smith')).toBe('Zoë Smith');
    fc.assert(fc.property(fc.string(), (s) => {
      const out = escapeFilterValue(s);
      // No unescaped metacharacter survives, and unescaping gives the input back.
      expect(out).not.toMatch(/[*()\u0000]/);
      expect(out.replace(/\\([0-9a-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))).toBe(s);
    }));
  });

  it('escapes DN values (RFC 4514): separators, a leading # or space, a trailing space', () => {
    expect(escapeDnValue('smith, jr')).toBe('smith\\, jr');
    expect(escapeDnValue('a+b=c;d<e>f"g\\h')).toBe('a\\+b\\=c\\;d\\<e\\>f\\"g\\\\h');
    expect(escapeDnValue('#x ')).toBe('\\#x\\ ');
    expect(escapeDnValue(' x')).toBe('\\ x');
    fc.assert(fc.property(fc.string(), (s) => {
      const out = escapeDnValue(s);
      // Every separator is escaped: splitting on an unescaped , + ; finds one piece.
      expect(out.replace(/\\./g, '')).not.toMatch(/[,+;="<>]/);
    }));
  });

  it('refuses an LDAP configuration that is half there', () => {
    expect(() => parseConfig({ LDAP_URL: 'ldap://127.0.0.1' })).toThrow(/LDAP_BIND_DN .* or LDAP_SEARCH_BASE/);
    expect(() => parseConfig({ LDAP_URL: 'ldap://127.0.0.1', LDAP_BIND_DN: 'uid=x,dc=example,dc=org' })).toThrow(/must contain \{user\}/);
    expect(() => parseConfig({ LDAP_BIND_DN: 'uid={user},dc=example,dc=org' })).toThrow(/need LDAP_URL/);
    let message = '';
    try {
      parseConfig({ LDAP_URL: 'ldap://127.0.0.1', LDAP_SEARCH_BASE: BASE, LDAP_BIND_PASSWORD: 'never-print-this-either' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/LDAP_BIND_USER and LDAP_BIND_PASSWORD go together/);
    expect(message).not.toContain('never-print-this-either');
  });
});
