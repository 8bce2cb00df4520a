import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BIG, bigId, bigThreadShape, seedBigThread } from './fixtures/archive/big-thread.ts';
import { newList } from './fixtures/archive/seed.ts';
import { expectFitsAndAccessible, launchChromium, VIEWPORTS } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/** The outline of a 300-message thread on a desktop and a 390 px phone, in headless Chromium, with axe-core. */

let db: TestDatabase;
let web: RunningWeb;
let browser: Browser;
let threadId: number;

// A browser and several pages per test on a shared two-core machine: more than the default 30 s.
vi.setConfig({ testTimeout: 120_000 });

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  browser = await launchChromium();
  await seedBigThread(db.pool, await newList(db.pool, 'big@lists.example.org', 'public', { name: 'Big' }));
  threadId = (await db.pool.query(`select thread_id from messages where message_id = $1`, [bigId(0)])).rows[0].thread_id;
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.stop();
  await db?.drop();
});

describe.each(VIEWPORTS)('a 300-message thread on a $name', ({ viewport }) => {
  it('fits the screen, is axe-clean, outlines every message, and its links lead to the messages and their parents', async () => {
    const { parent } = bigThreadShape();
    const context = await browser.newContext({ viewport, bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${web.url}/lists/big/thread/${threadId}`);
    // Nothing wider than the screen, however deep the replies; no axe-core violation.
    await expectFitsAndAccessible(page);
    const items = page.locator('ol.outline > li');
    expect(await items.count()).toBe(BIG);
    // The deepest entry is indented no more than the 8th level's: its depth is written instead.
    const lefts = await items.evaluateAll((els) => els.map((e) => e.getBoundingClientRect().left));
    // A level is 1rem wide, half that below 40rem (public/style.css).
    const level = viewport.width > 640 ? 16 : 8;
    expect(Math.max(...lefts) - Math.min(...lefts)).toBeLessThanOrEqual(8 * level + 1);
    expect(await page.locator('ol.outline .depth').count()).toBeGreaterThan(0);
    // Only 50 bodies on the page: far shorter than the whole thread's 58,000 px.
    expect(await page.locator('ol.tree > li.msg').count()).toBe(50);

    // An outline link to a message on a later page opens that page at that message.
    const last = items.last();
    const lastId = (await last.getAttribute('id'))!.slice(1);
    await last.locator('a').click();
    await page.waitForURL(new RegExp(`\\?page=\\d+#m${lastId}$`));
    const target = page.locator(`#m${lastId}`);
    expect(await target.isVisible()).toBe(true);
    const box = (await target.boundingBox())!;
    expect(box.y).toBeGreaterThanOrEqual(-1);
    expect(box.y).toBeLessThan(viewport.height);
    const lastMsgid = decodeURIComponent((await target.locator('a.subject').getAttribute('href'))!.replace('/message-id/', ''));

    // Its "in reply to" link leads to its parent's body.
    await target.locator('a.in-reply-to').click();
    await page.waitForURL(/#m\d+$/);
    const parentId = new URL(page.url()).hash.slice(1);
    const parentHref = await page.locator(`#${parentId} a.subject`).getAttribute('href');
    const n = Number(/^big-(\d+)@/.exec(lastMsgid)![1]);
    expect(decodeURIComponent(parentHref!.replace('/message-id/', ''))).toBe(bigId(parent[n]));
    await context.close();
  });
});
