import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { newList } from './fixtures/archive/seed.ts';
import { expectFitsAndAccessible, launchChromium } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * Subscribing from a list's archive page in headless Chromium (the pages have no script). The page is the
 * same for every anonymous reader (a shared cache keeps it), so its form has no CSRF token: sent,
 * it comes back filled in with the visitor's token, and sent again it subscribes.
 */

let db: TestDatabase;
let web: RunningWeb;
let browser: Browser;

vi.setConfig({ testTimeout: 120_000 });

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  browser = await launchChromium();
  await newList(db.pool, 'dev@lists.example.org', 'public', { name: 'Developers' });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.stop();
  await db?.drop();
});

it('subscribes from the list page in two steps: the shared form, then the same form with the visitor\'s token', async () => {
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  const listPage = await page.goto(`${web.url}/lists/dev/`);
  expect(listPage!.headers()['cache-control']).toBe('public, max-age=60');
  expect(await listPage!.headerValue('set-cookie')).toBeNull();
  expect(await page.locator('form.subscribe input[name="_csrf"]').count()).toBe(0);
  const form = page.locator('form.subscribe');
  await form.locator('input[name="email"]').fill('browser@example.net');
  await form.locator('input[name="name"]').fill('Brow Ser');
  await form.locator('button[type="submit"]').click();
  await page.waitForLoadState();

  // Nothing was asked of anyone yet: the form again, filled in, with a token for this browser.
  expect(await page.locator('[role="status"]').textContent()).toContain('Check your address and press Subscribe once more');
  expect(await page.locator('input[name="email"]').inputValue()).toBe('browser@example.net');
  expect(await page.locator('input[name="name"]').inputValue()).toBe('Brow Ser');
  expect((await context.cookies()).map((c) => c.name)).toContain('lk_csrf');
  const requests = async () => (await db.pool.query(`select count(*)::int as n from subscription_requests where email = 'browser@example.net'`)).rows[0].n;
  expect(await requests()).toBe(0);
  await expectFitsAndAccessible(page);

  await page.locator('button[type="submit"]').click();
  await page.waitForLoadState();
  expect(await page.locator('h1').textContent()).toBe('Check your mail');
  expect(await requests()).toBe(1);
  await context.close();
});
