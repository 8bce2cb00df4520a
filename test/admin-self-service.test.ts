import os from 'node:os';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { WebServer } from '../src/web/server.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, queuedMail, WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let qa: ListRow;
let member: WebClient;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  qa = await createList(db.pool, { address: 'qa@lists.example.org', name: 'QA', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, dev.id, 'me@example.org', 'each');
  await addMember(db.pool, qa.id, 'me@example.org', 'digest');
  await addMember(db.pool, qa.id, 'someone@example.org', 'each');
  member = await loggedIn(db, web.url, 'me@example.org');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('delete from rate_limits');
  await db.pool.query('delete from outbox');
});

const idOf = async (list: ListRow, email: string) => (await findMember(db.pool, list.id, email))!.id;

describe('a member manages their own subscriptions', () => {
  it('sees each subscription with its delivery mode', async () => {
    const r = await member.get('/account');
    expect(r.status).toBe(200);
    expect(r.text).toContain('dev@lists.example.org');
    expect(r.text).toContain('qa@lists.example.org');
    expect(r.text).not.toContain('someone@example.org');
    expect(r.text).not.toContain('href="/admin/"');
  });

  it('changes the delivery mode', async () => {
    const r = await member.post(`/account/subscriptions/${await idOf(dev, 'me@example.org')}`, { action: 'mode', mode: 'digest' });
    expect(r.status).toBe(303);
    expect((await findMember(db.pool, dev.id, 'me@example.org'))!.mode).toBe('digest');
    expect((await member.get('/account')).text).toContain('delivery is now &quot;digest&quot;');
  });

  it('chooses plain-text digests', async () => {
    await member.post(`/account/subscriptions/${await idOf(dev, 'me@example.org')}`, { action: 'mode', mode: 'digest', digest_format: 'plain' });
    expect(await findMember(db.pool, dev.id, 'me@example.org')).toMatchObject({ mode: 'digest', digest_format: 'plain' });
  });

  it('re-enables delivery after bounces', async () => {
    await db.pool.query(`update members set status = 'disabled', bounce_score = 5 where list_id = $1 and email = 'me@example.org'`, [qa.id]);
    expect((await member.get('/account')).text).toContain('Re-enable delivery');
    await member.post(`/account/subscriptions/${await idOf(qa, 'me@example.org')}`, { action: 'reenable' });
    expect(await findMember(db.pool, qa.id, 'me@example.org')).toMatchObject({ status: 'active', bounce_score: 0 });
  });

  it('unsubscribes', async () => {
    const id = await idOf(qa, 'me@example.org');
    const ask = await member.post(`/account/subscriptions/${id}`, { action: 'unsubscribe' });
    expect(ask.status).toBe(200);
    expect(ask.text).toContain('Leave QA (qa@lists.example.org)?');
    expect(ask.text).toContain(`action="/account/subscriptions/${id}"`);
    expect((await findMember(db.pool, qa.id, 'me@example.org'))!.status).toBe('active');
    expect((await member.post(`/account/subscriptions/${id}`, { action: 'unsubscribe', confirm: '1' }, { csrf: false })).status).toBe(403);
    expect((await findMember(db.pool, qa.id, 'me@example.org'))!.status).toBe('active');
    expect((await member.post(`/account/subscriptions/${id}`, { action: 'unsubscribe', confirm: '1' })).status).toBe(303);
    expect((await findMember(db.pool, qa.id, 'me@example.org'))!.status).toBe('unsubscribed');
    const audit = await db.pool.query(`select actor, action from audit_log where action = 'self.unsubscribe' and list_id = $1`, [qa.id]);
    expect(audit.rows).toEqual([{ actor: 'me@example.org', action: 'self.unsubscribe' }]);
    expect((await member.get('/account')).text).not.toContain('href="/lists/qa@lists.example.org/"');
  });

  it("cannot touch someone else's subscription, and is answered as for an id nobody has", async () => {
    const theirs = await idOf(qa, 'someone@example.org');
    const nobodys = 987654321;
    const ask = async (id: number) => {
      const r = await member.post(`/account/subscriptions/${id}`, { action: 'unsubscribe' });
      return [r.status, r.headers.get('location'), (await member.get('/account')).text.match(/You are not subscribed there \(any more\)\./g)?.length ?? 0];
    };
    expect(await ask(theirs)).toEqual([303, '/account', 1]);
    expect(await ask(nobodys)).toEqual([303, '/account', 1]);
    for (const form of [{ action: 'unsubscribe', confirm: '1' } as Record<string, string>, { action: 'mode', mode: 'digest' }, { action: 'reenable' }, { action: 'address', email: 'me@example.org' }]) {
      const [a, b] = [await member.post(`/account/subscriptions/${theirs}`, form), await member.post(`/account/subscriptions/${nobodys}`, form)];
      expect([a.status, b.status], JSON.stringify(form)).toEqual([404, 404]);
      expect(a.text, JSON.stringify(form)).toBe(b.text);
    }
    expect((await findMember(db.pool, qa.id, 'someone@example.org'))).toMatchObject({ status: 'active', mode: 'each' });
  });

  it('sets a password, then needs the current one to change it', async () => {
    const c = await loggedIn(db, web.url, 'pw@example.org');
    await c.post('/account/password', { password: 'first password', confirm: 'first password' });
    const login = await new WebClient(web.url).post('/login', { email: 'pw@example.org', password: 'first password' });
    expect(login.status).toBe(303);
    await c.post('/account/password', { current: 'wrong', password: 'second password', confirm: 'second password' });
    expect((await c.get('/account')).text).toContain('current password was not right');
    expect((await new WebClient(web.url).post('/login', { email: 'pw@example.org', password: 'second password' })).status).toBe(401);
    // Setting and changing it are told to the primary address: one notice each, none for the refused try.
    await c.post('/account/password', { current: 'first password', password: 'second password', confirm: 'second password' });
    const told = (await queuedMail(db, 'pw@example.org')).map((m) => m.subject).filter((s) => /password/i.test(s)).sort();
    expect(told).toEqual(['A password was set for your account', 'Your password was changed']);
    const audit = await db.pool.query(`select action from audit_log where target = 'pw@example.org' and action like 'account.password%' order by id`);
    expect(audit.rows.map((r) => r.action)).toEqual(['account.password_set', 'account.password_changed']);
  });

  it('tells a site administrator, in a password notice, to revoke API tokens they did not make; others are not told of tokens', async () => {
    // A token made from a stolen session outlives a new password and "Log out everywhere else".
    const admin = await loggedIn(db, web.url, 'pw-admin@example.org', { siteAdmin: true });
    const member = await loggedIn(db, web.url, 'pw-member@example.org');
    for (const c of [admin, member]) await c.post('/account/password', { password: 'a password here', confirm: 'a password here' });
    const [toAdmin] = (await queuedMail(db, 'pw-admin@example.org')).filter((m) => m.subject === 'A password was set for your account');
    const [toMember] = (await queuedMail(db, 'pw-member@example.org')).filter((m) => m.subject === 'A password was set for your account');
    expect(toAdmin.text).toMatch(/As a site administrator, also revoke the API tokens you did not make \(http[^)]*\/admin\/tokens\)/);
    expect(toMember.text).toContain('Log out everywhere else');
    expect(toMember.text).not.toMatch(/token/i);
  });

  it('counts wrong current passwords against the login limits: a session is no way to guess the password', async () => {
    const c = await loggedIn(db, web.url, 'guess@example.org');
    await c.post('/account/password', { password: 'the real password', confirm: 'the real password' });
    for (let i = 0; i < 10; i++) await c.post('/account/password', { current: `guess ${i}`, password: 'taken over now', confirm: 'taken over now' });
    // The eleventh, though right, is refused until the quarter of an hour has passed.
    await c.post('/account/password', { current: 'the real password', password: 'taken over now', confirm: 'taken over now' });
    expect((await c.get('/account')).text).toContain('Too many attempts');
    // The password is unchanged: its owner logs in from another network (this one is closed to the name too).
    expect((await new WebClient(web.url).post('/login', { email: 'guess@example.org', password: 'the real password' })).status).toBe(429);
    expect((await new WebClient(web.url, { 'x-forwarded-for': '198.51.100.99' }).post('/login', { email: 'guess@example.org', password: 'the real password' })).status).toBe(303);
    const { rows } = await db.pool.query(`select hits from rate_limits where key = 'login:fail:guess@example.org'`);
    expect(rows).toEqual([{ hits: 10 }]);
  });
});

describe('subscribing on the web', () => {
  const subscribe = (email: string, ip = '198.51.100.20', extra: Record<string, string> = {}) =>
    new WebClient(web.url, { 'x-forwarded-for': ip }).post('/lists/dev/subscribe', { email, mode: 'each', ...extra });

  it('shows a form and answers with "check your mail", sending a confirmation and subscribing nobody yet', async () => {
    const form = await new WebClient(web.url).get('/lists/dev/subscribe');
    expect(form.status).toBe(200);
    expect(form.text).toContain('name="email"');
    const r = await subscribe('new@example.org');
    expect(r.status).toBe(200);
    expect(r.text).toContain('Check your mail');
    expect(await findMember(db.pool, dev.id, 'new@example.org')).toBeNull();
    expect(await queuedMail(db, 'new@example.org')).toHaveLength(1);
  });

  it('asks for confirmation even on a list whose policy is open', async () => {
    await db.pool.query(`update lists set subscribe_policy = 'open' where id = $1`, [dev.id]);
    try {
      const r = await subscribe('open-list@example.org');
      expect(r.status).toBe(200);
      expect(await findMember(db.pool, dev.id, 'open-list@example.org')).toBeNull();
      const mail = await queuedMail(db, 'open-list@example.org');
      expect(mail).toHaveLength(1);
      const link = /https?:\/\/\S+\/confirm\/\S+/.exec(mail[0].text)![0];
      const confirmed = await new WebClient(web.url).post(new URL(link).pathname);
      expect(confirmed.status).toBeLessThan(400);
      expect((await findMember(db.pool, dev.id, 'open-list@example.org'))?.status).toBe('active');
    } finally {
      await db.pool.query(`update lists set subscribe_policy = 'confirm' where id = $1`, [dev.id]);
    }
  });

  it('gives the same answer whether or not the address is already subscribed', async () => {
    const strip = (t: string, email: string) => t.replaceAll(email, 'X').replace(/value="[^"]*"/g, '');
    const fresh = await subscribe('fresh@example.org');
    const existing = await subscribe('me@example.org');
    expect(existing.status).toBe(fresh.status);
    expect(strip(existing.text, 'me@example.org')).toBe(strip(fresh.text, 'fresh@example.org'));
  });

  it('sends at most a few confirmations to one address, however many requests come from however many IPs', async () => {
    for (let i = 0; i < 8; i++) expect((await subscribe('victim@example.org', `203.0.113.${i}`)).status).toBe(200);
    expect((await queuedMail(db, 'victim@example.org')).length).toBeLessThanOrEqual(3);
  });

  it('limits requests per IP', async () => {
    let last = 0;
    for (let i = 0; i < 11; i++) last = (await subscribe(`many${i}@example.org`, '192.0.2.55')).status;
    expect(last).toBe(429);
  });

  it('limits requests per IPv6 network (/64), not per address of it', async () => {
    // Each host of a /64 may take any of 2^64 addresses: 13 requests from ::1 to ::13 of one
    // network all passed the limit of 10 per IP.
    const statuses = [];
    for (let i = 1; i <= 11; i++) statuses.push((await subscribe(`v6-${i}@example.org`, `2001:db8:5:6::${i.toString(16)}`)).status);
    expect(statuses).toEqual([...Array(10).fill(200), 429]);
    expect((await subscribe('v6-other@example.org', '2001:db8:5:7::1')).status).toBe(200);
    expect((await subscribe('v6-mapped@example.org', '::ffff:192.0.2.56')).status).toBe(200);
    const { rows } = await db.pool.query(`select key, hits from rate_limits where key like 'subscribe:ip:%' and (key like '%2001%' or key like '%192.0.2.56%') order by key`);
    expect(rows).toEqual([{ key: 'subscribe:ip:192.0.2.56', hits: 1 }, { key: 'subscribe:ip:2001:db8:5:6::/64', hits: 11 }, { key: 'subscribe:ip:2001:db8:5:7::/64', hits: 1 }]);
  });

  it('sends nothing for a filled-in honeypot field, with the same answer', async () => {
    const r = await subscribe('bot-target@example.org', '198.51.100.21', { website: 'http://spam.example' });
    expect(r.status).toBe(200);
    expect(await queuedMail(db, 'bot-target@example.org')).toHaveLength(0);
  });

  it('refuses an invalid address with the form again', async () => {
    const r = await subscribe('not an address');
    expect(r.status).toBe(400);
    expect(r.text).toContain('valid e-mail address');
  });

  it('keeps a private list out of sight: its form and its POST are a 404 to outsiders, like a list that does not exist', async () => {
    const hidden = await createList(db.pool, { address: 'hidden@lists.example.org', name: 'Hidden circle', description: 'not for you', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'private', owners: ['boss@example.org'] });
    await addMember(db.pool, hidden.id, 'insider@example.org', 'each');
    const strip = (t: string) => t.replace(/value="[^"]*"/g, '');
    const stranger = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.30' });
    const none = await stranger.get('/lists/nothing-here/subscribe');
    expect(none.status).toBe(404);
    for (const ref of ['hidden', 'hidden@lists.example.org', 'HIDDEN']) {
      const form = await stranger.get(`/lists/${ref}/subscribe`);
      expect(form.status, ref).toBe(404);
      expect(strip(form.text)).toBe(strip(none.text));
      expect(form.text).not.toContain('Hidden circle');
    }
    // The POST neither subscribes nor mails, and says no more than for a list that does not exist,
    // whether or not the address is a member.
    for (const email of ['insider@example.org', 'outsider@example.org']) {
      const r = await stranger.post('/lists/hidden/subscribe', { email, mode: 'each' });
      expect(r.status).toBe(404);
      expect(strip(r.text)).toBe(strip((await stranger.post('/lists/nothing-here/subscribe', { email, mode: 'each' })).text));
    }
    expect(await queuedMail(db, 'outsider@example.org')).toHaveLength(0);
    expect(await queuedMail(db, 'insider@example.org')).toHaveLength(0);
    expect((await db.pool.query('select count(*)::int as n from subscription_requests where list_id = $1', [hidden.id])).rows[0].n).toBe(0);

    // Logged-in outsiders see nothing either; those who may read the list see its form.
    expect((await member.get('/lists/hidden/subscribe')).status).toBe(404);
    const insider = await loggedIn(db, web.url, 'insider@example.org');
    expect((await insider.get('/lists/hidden/subscribe')).status).toBe(200);
    const owner = await loggedIn(db, web.url, 'boss@example.org');
    expect((await owner.get('/lists/hidden/subscribe')).text).toContain('Hidden circle');
  });

  it('still offers the form of a list whose archive is for members only', async () => {
    await createList(db.pool, { address: 'club@lists.example.org', name: 'Club', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'members', owners: [] });
    const form = await new WebClient(web.url).get('/lists/club/subscribe');
    expect(form.status).toBe(200);
    expect(form.text).toContain('Subscribe to Club');
  });
});

describe('the proxy whose X-Forwarded-For is believed (WEB_TRUST_PROXY)', () => {
  // A request that reaches the web from this machine's own non-loopback address, as one from a
  // proxy on another machine would.
  const external = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

  async function keysThrough(env: Record<string, string>, forwardedFor: string) {
    const server = new WebServer(db, parseConfig({ MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'silent', ...env }), { host: external!, port: 0 });
    const { port } = await server.start();
    try {
      const r = await new WebClient(`http://${external}:${port}`, { 'x-forwarded-for': forwardedFor }).post('/lists/dev/subscribe', { email: `p-${forwardedFor}@example.org`, mode: 'each' });
      expect(r.status).toBe(200);
    } finally {
      await server.stop();
    }
    const { rows } = await db.pool.query<{ key: string }>(`select key from rate_limits where key like 'subscribe:ip:%' order by key`);
    await db.pool.query('delete from rate_limits');
    return rows.map((r) => r.key);
  }

  it.skipIf(!external)('counts a client by the proxy\'s own address unless the proxy is named, and by the client the proxy names once it is', async () => {
    // By default only a proxy on loopback is believed: anyone could claim any address otherwise.
    expect(await keysThrough({}, '198.51.100.41')).toEqual([`subscribe:ip:${external}`]);
    // A proxy on another machine, named: each client is counted on its own, not all as the proxy.
    expect(await keysThrough({ WEB_TRUST_PROXY: `loopback, ${external}/32` }, '198.51.100.42')).toEqual(['subscribe:ip:198.51.100.42']);
  });

  it('refuses a WEB_TRUST_PROXY that names no proxy', () => {
    for (const bad of [' , ', 'everyone', '10.0.0.0/33', '10.0.0.1/8/8', 'fe80::/129']) {
      expect(() => parseConfig({ WEB_TRUST_PROXY: bad }), bad).toThrow(/WEB_TRUST_PROXY/);
    }
    expect(parseConfig({ WEB_TRUST_PROXY: '10.0.0.0/8, fd00::/8, uniquelocal' }).web.trustProxy).toEqual(['10.0.0.0/8', 'fd00::/8', 'uniquelocal']);
  });
});
