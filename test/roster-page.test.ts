import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, updateDeliverySettings, type ListRow } from '../src/db/lists.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { addMember } from '../src/db/members.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
let hive: ListRow;
let anonymous: WebClient;
let member: WebClient;
let owner: WebClient;
let stranger: WebClient;
const PAGE = '/lists/hive/members';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  hive = await createList(db.pool, { address: 'hive@lists.example.org', name: 'Hive', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['queen@example.org'] });
  await addMember(db.pool, hive.id, 'worker@example.org', 'each', 'Worker Bee');
  await addMember(db.pool, hive.id, 'drone@example.net', 'digest');
  anonymous = new WebClient(web.url);
  member = await loggedIn(db, web.url, 'worker@example.org');
  owner = await loggedIn(db, web.url, 'queen@example.org');
  stranger = await loggedIn(db, web.url, 'someone@example.com');
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

const visibility = (v: 'owners' | 'members' | 'anyone') => updateDeliverySettings(db.pool, hive.id, { roster_visibility: v });

describe('the member list page (/lists/LIST/members)', () => {
  it('is for owners and moderators only by default: 404 to everyone else', async () => {
    expect((await db.pool.query('select roster_visibility from lists where id = $1', [hive.id])).rows[0].roster_visibility).toBe('owners');
    for (const c of [anonymous, member, stranger]) {
      const r = await c.get(PAGE);
      expect(r.status).toBe(404);
      expect(r.text).not.toContain('drone@');
    }
    const r = await owner.get(PAGE);
    expect(r.status).toBe(200);
    expect(r.text).toContain('worker@example.org');
    expect(r.text).toContain('Worker Bee');
    expect(r.text).toContain('drone@example.net');
    expect(r.text).toMatch(/2 members/);
    await addListRole(db.pool, hive.id, 'keeper@example.org', 'moderator');
    expect((await (await loggedIn(db, web.url, 'keeper@example.org')).get(PAGE)).status).toBe(200);
  });

  it('with roster_visibility=members: logged-in members see it, the anonymous and non-members get 403', async () => {
    await visibility('members');
    const anon = await anonymous.get(PAGE);
    expect(anon.status).toBe(403);
    expect(anon.text).toContain('log in');
    expect(anon.text).not.toContain('drone@');
    const other = await stranger.get(PAGE);
    expect(other.status).toBe(403);
    expect(other.text).not.toContain('drone@');
    for (const c of [member, owner]) {
      const r = await c.get(PAGE);
      expect(r.status).toBe(200);
      expect(r.text).toContain('drone@example.net');
      expect(r.headers.get('cache-control')).toBe('private, no-store');
    }
  });

  it('with roster_visibility=anyone: anonymous readers see it with addresses obfuscated, logged-in readers whole', async () => {
    await visibility('anyone');
    const anon = await anonymous.get(PAGE);
    expect(anon.status).toBe(200);
    expect(anon.text).toContain('worker@…');
    expect(anon.text).toContain('Worker Bee');
    expect(anon.text).not.toContain('example.org');
    expect(anon.text).not.toContain('example.net');
    expect((await member.get(PAGE)).text).toContain('worker@example.org');
    // Not for a shared cache: nothing purges it when a member leaves or the setting changes.
    expect(anon.headers.get('cache-control')).toBe('private, no-cache');
    // Someone who unsubscribed is not shown.
    await db.pool.query(`update members set status = 'unsubscribed' where email = 'drone@example.net'`);
    expect((await anonymous.get(PAGE)).text).not.toContain('drone@');
  });

  it('obfuscates an address in a member\'s name for anonymous readers, as archive pages do', async () => {
    // Names come from the subscribe form, an owner's paste or a Mailman import, where a display
    // name is often an address (another of the member's own): shown whole, the roster handed it out.
    await addMember(db.pool, hive.id, 'pat@example.org', 'each', 'Pat (pat.home@personal.example)');
    await addMember(db.pool, hive.id, 'lee@example.org', 'each', 'lee.private@elsewhere.example');
    await visibility('anyone');
    const anon = await anonymous.get(PAGE);
    expect(anon.status).toBe(200);
    expect(anon.text).toContain('Pat (pat.home@…)');
    expect(anon.text).toContain('lee.private@…');
    expect(anon.text).not.toContain('personal.example');
    expect(anon.text).not.toContain('elsewhere.example');
    const seen = (await member.get(PAGE)).text;
    expect(seen).toContain('Pat (pat.home@personal.example)');
    expect(seen).toContain('lee.private@elsewhere.example');
  });

  it('does not name a private list to those who may not read it, whatever the roster setting', async () => {
    await db.pool.query(`update lists set archive = 'private' where id = $1`, [hive.id]);
    expect((await anonymous.get(PAGE)).status).toBe(404);
    expect((await stranger.get(PAGE)).status).toBe(404);
    expect((await member.get(PAGE)).status).toBe(200);
    await db.pool.query(`update lists set archive = 'public' where id = $1`, [hive.id]);
  });

  it('is a setting by name for list set, list show and the settings form', async () => {
    const form = await owner.get('/admin/lists/hive@lists.example.org/settings');
    expect(form.text).toContain('name="roster_visibility"');
    expect(form.text).toMatch(/<option value="anyone" selected>/);
  });
});

describe('a private list that shares its name with another', () => {
  it('is not counted against the name for those who may not read it: the other list answers, the private one is 404', async () => {
    const pub = await createList(db.pool, { address: 'team@a.example.org', name: 'Team A', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await updateDeliverySettings(db.pool, pub.id, { roster_visibility: 'anyone' });
    await createList(db.pool, { address: 'team@b.example.org', name: 'Team B', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'private', owners: [] });
    const anonymous = new WebClient(web.url);
    for (const path of ['/lists/team', '/lists/team/members', '/lists/team/subscribe', '/lists/team/feed.atom']) {
      const r = await anonymous.get(path);
      expect(r.status, path).toBe(200);
      expect(r.text, path).not.toContain('more than one list');
    }
    // By its address, the private list is what a list that does not exist is.
    const hidden = await anonymous.get('/lists/team@b.example.org');
    const none = await anonymous.get('/lists/nobody@b.example.org');
    expect([hidden.status, none.status]).toEqual([404, 404]);
    expect(hidden.text.replaceAll('team@b.example.org', 'X')).toBe(none.text.replaceAll('nobody@b.example.org', 'X'));
    // Who may read both is told the name is ambiguous.
    const admin = await loggedIn(db, web.url, 'admin@example.org', { siteAdmin: true });
    expect((await admin.get('/lists/team')).status).toBe(400);
  });
});
