/*
 * OWNER_ADDS_PER_DAY: the new addresses owners add to one list through the panel and the API in a
 * day, counted in PostgreSQL. Through real HTTP: the panel's form (session, CSRF token) on one
 * web server, and the API (admin token) on a real `listkeeper serve --web` process, so that two
 * processes share the count. The cap here is 5.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../src/core/api-tokens.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { findMember } from '../src/db/members.ts';
import { pruneRateLimits } from '../src/db/rate-limits.ts';
import { loggedIn, queuedMail, type WebClient } from './helpers/browser.ts';
import { cli, startServe, type RunningServe } from './helpers/cli.ts';
import { skewedClock } from './helpers/skewed-clock.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;
let serve: RunningServe;
let owner: WebClient;
let token: string;
let dev: ListRow;
let inv: ListRow;
let race: ListRow;
const CAP = { OWNER_ADDS_PER_DAY: '5' };

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db, CAP);
  serve = await startServe({ DATABASE_URL: db.url, ...CAP });
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  inv = await createList(db.pool, { address: 'inv@lists.example.org', name: 'Inv', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  race = await createList(db.pool, { address: 'race@lists.example.org', name: 'Race', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  owner = await loggedIn(db, web.url, 'owner@example.org');
  token = (await createApiToken(db.pool, { scope: 'admin', name: 'bulk', actor: 'test' })).token;
}, 60_000);
afterAll(async () => {
  serve?.child.kill();
  await web?.stop();
  await db?.drop();
});

function addForm(addresses: string[], invite = false): FormData {
  const form = new FormData();
  form.set('addresses', addresses.join('\n'));
  form.set('mode', 'each');
  if (invite) form.set('invite', '1');
  return form;
}

async function apiAdd(list: string, members: string[], base = serve.webUrl) {
  const res = await fetch(`${base}/api/v1/lists/${list}/members`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ members }),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() };
}

const isMember = async (list: ListRow, email: string) => (await findMember(db.pool, list.id, email))?.status === 'active';
const mailTo = async (email: string) => (await queuedMail(db, email)).length;
/** Makes a list's counted adds older by `interval`, as if they had been made that much earlier. */
async function age(list: ListRow, interval: string) {
  const key = `owner-adds:list:${list.id}`;
  await db.pool.query(`update rate_limit_hits set at = at - $2::interval where key = $1`, [key, interval]);
  // (and the fixed window the count was once kept in, so that this test can fail without the fix)
  await db.pool.query(`update rate_limits set window_start = window_start - $2::interval where key = $1`, [key, interval]);
}
const refusals = async (list: string) => (await db.pool.query(
  `select actor, action, detail from audit_log where list_address = $1 and action like '%.refused' order by id`, [list])).rows;

describe('OWNER_ADDS_PER_DAY', { timeout: 60_000 }, () => {
  it('says Retry-After by the database\'s clock from a web process whose clock is 2 h ahead', async () => {
    const skewed = await startServe({ DATABASE_URL: db.url, ...CAP, ...skewedClock('+2h') });
    try {
      const list = await createList(db.pool, { address: 'skew@lists.example.org', name: 'Skew', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
      const api = await apiAdd(list.address.split('@')[0], ['s1@example.net', 's2@example.net', 's3@example.net', 's4@example.net', 's5@example.net', 's6@example.net'], skewed.webUrl);
      expect(api.status).toBe(429);
      // A day's window just opened: nearly 24 h, not 22 h as the skewed machine's clock would say.
      expect(Number(api.retryAfter)).toBeGreaterThan(86_000);
    } finally {
      skewed.child.kill();
    }
  });

  it('counts the panel\'s adds and the API\'s (another process) together: the second request takes what is left, refuses the rest with 429 and says until when', async () => {
    const panel = await owner.postMultipart('/admin/lists/dev@lists.example.org/members/add', addForm(['a1@example.net', 'a2@example.net', 'a3@example.net']));
    expect(panel.status).toBe(200);
    expect(panel.text).toMatch(/<strong>3<\/strong> added/);

    // a1 is already a member (free); b1 and b2 take the last two; b3 and b4 are refused, not tried.
    const before = Date.now();
    const api = await apiAdd('dev', ['a1@example.net', 'b1@example.net', 'b2@example.net', 'b3@example.net', 'b4@example.net']);
    expect(api.status).toBe(429);
    expect(api.body).toMatchObject({ error: 'owner_add_limit', per_day: 5, taken: 3, added: 2, refused: 2 });
    expect(api.body.results.map((r: { result: string }) => r.result)).toEqual(['unchanged', 'added', 'added', 'refused', 'refused']);
    const retryAt = new Date(api.body.retry_at).getTime();
    expect(retryAt).toBeGreaterThan(before + 23.9 * 3600_000);
    expect(retryAt).toBeLessThan(Date.now() + 24 * 3600_000 + 1000);
    expect(Number(api.retryAfter)).toBeGreaterThan(86_000);
    expect(api.body.detail).toBe(
      'dev@lists.example.org takes at most 5 new addresses a day from its owners (OWNER_ADDS_PER_DAY), and that is reached: of the 5 addresses given, ' +
      'the first 3 were taken (2 added or subscribed again, the others already members); 2 refused, from b3@example.net on. ' +
      `More can be added from ${api.body.retry_at.slice(0, 16).replace('T', ' ')} UTC: send the refused ones then (or the same request again: those taken are left unchanged). ` +
      'The operator\'s command line (listkeeper subscribe) has no such limit.');
    expect([await isMember(dev, 'b2@example.net'), await isMember(dev, 'b3@example.net'), await isMember(dev, 'b4@example.net')]).toEqual([true, false, false]);
    // Welcomed: the five added; the refused were sent nothing.
    expect([await mailTo('b2@example.net'), await mailTo('b3@example.net'), await mailTo('b4@example.net')]).toEqual([1, 0, 0]);
    expect(await refusals('dev@lists.example.org')).toEqual([
      { actor: expect.stringMatching(/^api:/), action: 'member.add.refused', detail: { refused: 2, per_day: 5, until: api.body.retry_at, addresses: ['b3@example.net', 'b4@example.net'] } },
    ]);

    // The panel, once the cap is reached: nothing taken, the page says so and lists the refused.
    const full = await owner.postMultipart('/admin/lists/dev@lists.example.org/members/add', addForm(['c1@example.net']));
    expect(full.status).toBe(429);
    expect(full.text).toContain('of the 1 address given, none was taken; 1 refused, from c1@example.net on. More can be added from');
    expect(full.text).toMatch(/<textarea id="refused"[^>]*>c1@example.net<\/textarea>/);
    expect(await isMember(dev, 'c1@example.net')).toBe(false);
    expect((await refusals('dev@lists.example.org')).map((r) => [r.actor, r.detail.addresses])).toEqual([
      [expect.stringMatching(/^api:/), ['b3@example.net', 'b4@example.net']], ['owner@example.org', ['c1@example.net']],
    ]);

    // The operator's command line is not capped.
    const sub = await cli(['subscribe', 'dev', 'c1@example.net'], { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org', ...CAP });
    expect([sub.code, sub.stderr]).toEqual([0, '']);
    expect(await isMember(dev, 'c1@example.net')).toBe(true);

    // A day later (the counts moved back), the same request adds the rest and leaves the others.
    await age(dev, '1 day');
    const again = await apiAdd('dev', ['a1@example.net', 'b1@example.net', 'b2@example.net', 'b3@example.net', 'b4@example.net']);
    expect(again.status).toBe(200);
    expect(again.body.map((r: { result: string }) => r.result)).toEqual(['unchanged', 'unchanged', 'unchanged', 'added', 'added']);
  });

  it('caps the panel\'s invitations too (each is a mail to a stranger): the first five are asked, the other two refused', async () => {
    const addresses = ['i1', 'i2', 'i3', 'i4', 'i5', 'i6', 'i7'].map((l) => `${l}@example.net`);
    const r = await owner.postMultipart('/admin/lists/inv@lists.example.org/members/add', addForm(addresses, true));
    expect(r.status).toBe(429);
    expect(r.text).toMatch(/<strong>5<\/strong> asked to confirm by mail/);
    expect(r.text).toContain('of the 7 addresses given, the first 5 were invited; 2 refused, from i6@example.net on. More can be invited from');
    expect(await Promise.all(addresses.map(mailTo))).toEqual([1, 1, 1, 1, 1, 0, 0]);
    expect((await refusals('inv@lists.example.org')).map((x) => [x.action, x.detail.refused])).toEqual([['member.invite.refused', 2]]);
    // Nothing is left for an add the same day, through either door.
    const api = await apiAdd('inv', ['j1@example.net']);
    expect([api.status, api.body.taken, api.body.refused]).toEqual([429, 0, 1]);
    expect(await isMember(inv, 'j1@example.net')).toBe(false);
  });

  it('never lets more than the cap through in any 24 hours: adds made late in one day still count early the next', async () => {
    const list = await createList(db.pool, { address: 'slide@lists.example.org', name: 'Slide', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
    const added = async (emails: string[]) => {
      const r = await apiAdd('slide', emails);
      return r.status === 200 ? r.body.length : [r.status, r.body.added, r.body.refused];
    };
    // One add 24 h 1 min ago, four 3 minutes ago: the cap of 5 was reached 3 minutes ago.
    expect(await added(['d1@example.net'])).toBe(1);
    await age(list, '23 hours 58 minutes');
    expect(await added(['d2@example.net', 'd3@example.net', 'd4@example.net', 'd5@example.net'])).toBe(4);
    await age(list, '3 minutes');
    // Now the first is more than a day old: one more may be added, and only one (a fixed window
    // that began with the first add would have started afresh and let five through).
    const r = await apiAdd('slide', ['e1@example.net', 'e2@example.net', 'e3@example.net']);
    expect([r.status, r.body.added, r.body.refused]).toEqual([429, 1, 2]);
    // More can be added when the four are a day old: in 23 h 57 min, not a day from now.
    const retryIn = new Date(r.body.retry_at).getTime() - Date.now();
    expect(retryIn).toBeGreaterThan(23.9 * 3600_000);
    expect(retryIn).toBeLessThan(23.98 * 3600_000);
    expect(Number(r.retryAfter)).toBeLessThan(86_300);
    expect((await db.pool.query(`select count(*)::int as n from members where list_id = $1 and status = 'active'`, [list.id])).rows[0].n).toBe(6);
    // Once they are, the four places come back at once.
    await age(list, '23 hours 59 minutes');
    expect(await added(['e2@example.net', 'e3@example.net', 'e4@example.net', 'e5@example.net', 'e6@example.net'])).toEqual([429, 4, 1]);
  });

  it('keeps only the last day\'s counts: older ones are deleted when the list adds again, and by the hourly chores', async () => {
    const list = await createList(db.pool, { address: 'prune@lists.example.org', name: 'Prune', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
    const key = `owner-adds:list:${list.id}`;
    const rows = async () => (await db.pool.query(`select hits from rate_limit_hits where key = $1 order by at`, [key])).rows.map((x) => x.hits);
    expect((await apiAdd('prune', ['p1@example.net', 'p2@example.net'])).status).toBe(200);
    expect((await apiAdd('prune', ['p1@example.net'])).status).toBe(200);
    expect(await rows()).toEqual([2]);
    await age(list, '25 hours');
    expect((await apiAdd('prune', ['p3@example.net'])).status).toBe(200);
    expect(await rows()).toEqual([1]);
    await age(list, '25 hours');
    await pruneRateLimits(db.pool);
    expect(await rows()).toEqual([]);
  });

  it('lets two requests at once to two processes take no more than the cap between them', async () => {
    const first = ['r1', 'r2', 'r3', 'r4'].map((l) => `${l}@example.net`);
    const second = ['s1', 's2', 's3', 's4'].map((l) => `${l}@example.net`);
    const [a, b] = await Promise.all([apiAdd('race', first), apiAdd('race', second, web.url)]);
    const added = (r: { status: number; body: { added?: number }[] | { added: number } }) => (r.status === 200 ? (r.body as unknown[]).length : (r.body as { added: number }).added);
    expect(added(a) + added(b)).toBe(5);
    expect([a.status, b.status].sort()).toEqual([200, 429]);
    expect((await db.pool.query(`select count(*)::int as n from members where list_id = $1 and status = 'active'`, [race.id])).rows[0].n).toBe(5);
  });
});
