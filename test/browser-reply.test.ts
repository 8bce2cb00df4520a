import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { messageUrl } from '../src/mail/urls.ts';
import { archive, mail } from './fixtures/archive/seed.ts';
import { axeViolations, launchChromium, loggedIn, VIEWPORTS } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/** Reply from the web in headless Chromium, on a desktop and a 390 px phone, with axe-core. */

let db: TestDatabase;
let web: RunningWeb;
let browser: Browser;
let dev: ListRow;
let session: string;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  browser = await launchChromium();
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, dev.id, 'me@example.org', 'each');
  session = (await loggedIn(db, web.url, 'me@example.org')).jar.get('lk_session')!;
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.stop();
  await db?.drop();
});

describe.each(VIEWPORTS)('reply from the web on a $name', ({ name, viewport }) => {
  it('a member opens the form, sends a reply, and it is archived in the thread', async () => {
    const id = `browser-${name}@example.org`;
    await archive(db.pool, dev, mail({ id, subject: `Question on ${name}`, date: 'Mon, 02 Mar 2026 10:00:00 +0000' }));
    const context = await browser.newContext({ viewport, bypassCSP: true });
    try {
      await context.addCookies([{ name: 'lk_session', value: session, url: web.url }]);
      const page = await context.newPage();
      await page.goto(`${web.url}${messageUrl(id)}`);
      await page.getByText('Reply to the list as me@example.org').click();
      expect(await axeViolations(page)).toEqual([]);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(viewport.width);
      await page.getByLabel('Your reply').fill(`Answer from the ${name}`);
      await page.getByRole('button', { name: 'Send reply' }).click();
      await page.getByRole('heading', { name: 'Reply posted' }).waitFor();
      expect(await axeViolations(page)).toEqual([]);
      await page.getByRole('link', { name: 'see it in the archive' }).click();
      await expect(page.locator('h1').textContent()).resolves.toBe(`Re: Question on ${name}`);
      expect(await page.locator('.body').textContent()).toContain(`Answer from the ${name}`);
    } finally {
      await context.close();
    }
  }, 60_000);
});
