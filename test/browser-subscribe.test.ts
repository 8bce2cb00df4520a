import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { newList } from './fixtures/archive/seed.ts';
import { expectFitsAndAccessible, launchChromium } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * Subscribing from a list's archive page in headless Chromium (the pages have no script). The page is the
 * same for every anonymous reader (a shared cache keeps it), so its form has no CSRF token: the
 * browser's word that the post comes from this site's page (Sec-Fetch-Site) lets it subscribe at
 * once; a post from another site's page comes back filled in with the visitor's token, and sent
 * again it subscribes.
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

it('subscribes from the list page with one press: the browser says the form is this site\'s own', async () => {
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
  expect(await page.locator('h1').textContent()).toBe('Check your mail');
  expect(await requests('browser@example.net')).toBe(1);
  await context.close();
});

it("answers another site's form with the form again and the visitor's token, and subscribes only when that one is sent", async () => {
  // A page on another origin (localhost against 127.0.0.1: another site) whose form posts here.
  const other = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>Elsewhere</title><form method="post" action="${web.url}/lists/dev/subscribe">`
      + '<input name="email" value="elsewhere@example.net"><input name="name" value="Else Where"><button type="submit">Go</button></form>');
  });
  await new Promise<void>((resolve) => other.listen(0, 'localhost', resolve));
  try {
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`http://localhost:${(other.address() as AddressInfo).port}/`);
    await page.locator('button[type="submit"]').click();
    await page.waitForURL(`${web.url}/lists/dev/subscribe`);

    // Nothing was asked of anyone yet: the form again, filled in, with a token for this browser.
    expect(await page.locator('[role="status"]').textContent()).toContain('Check your address and press Subscribe once more');
    expect(await page.locator('input[name="email"]').inputValue()).toBe('elsewhere@example.net');
    expect(await page.locator('input[name="name"]').inputValue()).toBe('Else Where');
    expect((await context.cookies()).map((c) => c.name)).toContain('lk_csrf');
    expect(await requests('elsewhere@example.net')).toBe(0);
    await expectFitsAndAccessible(page);

    await page.locator('button[type="submit"]').click();
    await page.waitForLoadState();
    expect(await page.locator('h1').textContent()).toBe('Check your mail');
    expect(await requests('elsewhere@example.net')).toBe(1);
    await context.close();
  } finally {
    await new Promise((resolve) => other.close(resolve));
  }
});

const requests = async (email: string) => (await db.pool.query(`select count(*)::int as n from subscription_requests where email = $1`, [email])).rows[0].n;
