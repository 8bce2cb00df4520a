import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import { expectFitsAndAccessible, launchChromium, loggedIn, VIEWPORTS } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/** The addresses section of /account in headless Chromium on a 390 px phone, with axe-core. */

const PHONE = VIEWPORTS[1].viewport;
const LONG = 'a.very.long.second.address.that.never.breaks@subdomain.of.a.long.example.org';

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
  await db.pool.query(
    `insert into account_addresses (account_id, email, verified_at)
     select id, $1, now() from accounts where email = 'me@example.org'`, [LONG]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.stop();
  await db?.drop();
});

describe('the addresses of an account on a 390 px phone', () => {
  it('adds an address, removes it after the confirmation page, and switches a subscription', async () => {
    const context = await browser.newContext({ viewport: PHONE, bypassCSP: true });
    await context.addCookies([{ name: 'lk_session', value: session, url: web.url }]);
    const page = await context.newPage();
    await page.goto(`${web.url}/account`);
    await expectFitsAndAccessible(page);
    expect(await page.textContent(`tr[data-address="me@example.org"]`)).toContain('primary');

    await page.fill('form.add-address input[name=email]', 'new@example.org');
    await page.click('form.add-address button[type=submit]');
    await page.waitForURL(`${web.url}/account`);
    expect(await page.textContent('[role=status], .flash')).toContain('A link is on its way to new@example.org');
    expect(await page.textContent('tr[data-address="new@example.org"]')).toContain('awaiting confirmation');
    await expectFitsAndAccessible(page);

    await page.click('tr[data-address="new@example.org"] button.danger');
    await page.waitForLoadState();
    expect(await page.textContent('h2')).toContain('Remove new@example.org from your account?');
    await expectFitsAndAccessible(page);
    await page.click('form.confirm-form button[type=submit]');
    await page.waitForURL(`${web.url}/account`);
    expect(await page.locator('tr[data-address="new@example.org"]').count()).toBe(0);

    await page.selectOption(`tr[data-list="dev@lists.example.org"] select[name=email]`, LONG);
    await page.click(`tr[data-list="dev@lists.example.org"] form:has(select[name=email]) button`);
    await page.waitForURL(`${web.url}/account`);
    expect(await page.textContent('[role=status], .flash')).toContain(`dev@lists.example.org now sends to ${LONG}.`);
    expect((await findMember(db.pool, dev.id, LONG))?.status).toBe('active');
    await expectFitsAndAccessible(page);
    await context.close();
  }, 120_000);

  it('sends an old session to log in again before making an address primary, and mails it a link', async () => {
    await db.pool.query(`update sessions set created_at = now() - interval '1 hour'`);
    const context = await browser.newContext({ viewport: PHONE, bypassCSP: true });
    await context.addCookies([{ name: 'lk_session', value: session, url: web.url }]);
    const page = await context.newPage();
    await page.goto(`${web.url}/account`);
    await page.click(`tr[data-address="${LONG}"] button:has-text("Make primary")`);
    await page.waitForURL(`${web.url}/account/reauthenticate`);
    expect(await page.textContent('h1')).toBe('Log in again');
    await expectFitsAndAccessible(page);
    await page.click('form[action="/account/reauthenticate/link"] button');
    await page.waitForLoadState();
    expect(await page.textContent('[role=status]')).toContain('A login link is on its way to me@example.org');
    await expectFitsAndAccessible(page);
    // Still the primary address: nothing was changed.
    const { rows } = await db.pool.query(`select email from accounts where email = 'me@example.org'`);
    expect(rows).toHaveLength(1);
    await context.close();
  }, 120_000);
});
