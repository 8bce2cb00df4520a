import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: 'd', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('smoke', () => {
  it('renders every admin page for a site admin', async () => {
    const c = await loggedIn(db, web.url, 'admin@example.org', { siteAdmin: true });
    for (const p of ['/admin/', '/admin/dashboard', '/admin/audit', '/admin/lists/new', '/admin/lists/dev@lists.example.org/', '/admin/lists/dev/held', '/admin/lists/dev/requests', '/admin/lists/dev/messages', '/admin/lists/dev/members', '/admin/lists/dev/members.csv', '/admin/lists/dev/settings', '/admin/lists/dev/audit', '/admin/lists/dev/delete', '/account', '/lists/dev/subscribe', '/login']) {
      const r = await c.get(p);
      expect(r.status, `${p}: ${r.text.slice(0, 500)}`).toBeLessThan(400);
    }
  });
  it('anonymous goes to login', async () => {
    const r = await new WebClient(web.url).get('/admin/');
    expect(r.status).toBe(303);
    expect(r.location).toBe('/login?next=%2Fadmin%2F');
  });
});
