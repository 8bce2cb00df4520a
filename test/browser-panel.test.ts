import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount } from '../src/db/accounts.ts';
import { hashPassword } from '../src/auth/credentials.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, findList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { launchChromium, mailArrives } from './helpers/browser.ts';

/**
 * The panel in a real browser (headless Chromium): the flows a moderator, an owner and a member
 * go through, by clicking. With LK_SCREENSHOTS=1 the main pages are saved to docs/screenshots/.
 */
const SCREENSHOTS = process.env.LK_SCREENSHOTS === '1';
const SHOTS = path.resolve(import.meta.dirname, '../docs/screenshots');
const PASSWORD = 'moderate all the things';

let db: TestDatabase;
let web: RunningWeb;
let smtp: RunningIngest;
let relay: CaptureRelay;
let worker: DeliveryWorker;
let browser: Browser;
let dev: ListRow;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  smtp = await startIngest(db.pool);
  relay = await startCaptureRelay();
  worker = await startWorker(db, workerConfig(relay, { PUBLIC_URL: web.url }));
  browser = await launchChromium();
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Developers', description: 'Development of the project', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await upsertAccount(db.pool, 'owner@example.org', { passwordHash: await hashPassword(PASSWORD) });
  await upsertAccount(db.pool, 'admin@example.org', { passwordHash: await hashPassword(PASSWORD), siteAdmin: true });
  await addListRole(db.pool, dev.id, 'mod@example.org', 'moderator');
  for (const [email, mode] of [['reader@example.net', 'each'], ['digest-reader@example.net', 'digest'], ['member@example.net', 'each']] as const) {
    await addMember(db.pool, dev.id, email, mode);
  }
  const users = await createList(db.pool, { address: 'users@lists.example.org', name: 'Users', description: 'Questions and answers', postPolicy: 'members', subscribePolicy: 'approve', archive: 'public', owners: ['owner@example.org'] });
  for (let i = 1; i <= 12; i++) await addMember(db.pool, users.id, `user${i}@example.com`, i % 3 ? 'each' : 'digest');
  if (SCREENSHOTS) {
    // Demo history for the dashboard screenshot only: two days of hourly delivery counts.
    await db.pool.query(
      `insert into delivery_hourly (hour, sent, deferred, failed, bounced)
       select date_trunc('hour', now()) - make_interval(hours => h), 40 + (h * 37) % 90, (h * 7) % 5, (h % 11 = 0)::int, (h * 13) % 4
         from generate_series(1, 47) h`);
  }
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await worker?.stop();
  await relay?.stop();
  await smtp?.stop();
  await web?.stop();
  await db?.drop();
});

async function shot(page: Page, name: string) {
  if (SCREENSHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function logIn(email: string, next = '', opts: { javaScriptEnabled?: boolean } = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, ...opts });
  const page = await context.newPage();
  await page.goto(`${web.url}/login${next ? `?next=${encodeURIComponent(next)}` : ''}`);
  await page.fill('form[action="/login"] input[name=email]', email);
  await page.fill('form[action="/login"] input[name=password]', PASSWORD);
  await page.click('form[action="/login"] button[type=submit]');
  await page.waitForLoadState();
  return page;
}

async function post(id: string, from: string, subject: string, body = 'Hello, list.\n') {
  const r = await sendRaw(smtp.port, { from, to: ['dev@lists.example.org'] }, message({ id, from, to: 'dev@lists.example.org', subject, body }));
  expect(r.ok, r.response).toBe(true);
}

describe('the web panel in Chromium', () => {
  it('sends an anonymous visitor to the login page and back to where they were going', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${web.url}/admin/lists/dev@lists.example.org/held`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await shot(page, 'login');
    await page.fill('form[action="/login"] input[name=email]', 'owner@example.org');
    await page.fill('form[action="/login"] input[name=password]', PASSWORD);
    await page.click('form[action="/login"] button[type=submit]');
    await page.waitForURL(/\/admin\/lists\/dev@lists\.example\.org\/held$/);
    expect(await page.textContent('h2')).toContain('Held messages');
    await context.close();
  });

  it('approves a held post, which is then delivered to the members through the relay', async () => {
    await post('held-1@example.org', 'alice@example.org', 'Release planning for 2.0', 'Shall we branch on Monday?\n\n<script>alert(1)</script>\n');
    const page = await logIn('owner@example.org', '/admin/lists/dev@lists.example.org/held');
    expect(await page.textContent('table.held')).toContain('Release planning for 2.0');
    await page.click('text=Release planning for 2.0');
    expect(await page.textContent('pre.preview')).toContain('<script>alert(1)</script>');
    expect(await page.textContent('dl.facts')).toContain('<alice@example.org>');
    await shot(page, 'held-message');
    await page.click('button[value=approve]');
    await page.waitForURL(/\/held$/);
    expect(await page.textContent('[role=status]')).toContain('1 message approved');
    // The relay may already hold other mail (the owners' notice of the held post): wait for the
    // copies of this very post.
    const copies = () => relay.messages.filter((m) => m.raw.toString().includes('Message-ID: <held-1@example.org>'));
    for (const deadline = Date.now() + 30_000; copies().length < 2 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 100));
    if (copies().length < 2) console.error((await db.pool.query('select id, kind, recipient, state, attempts, last_error, run_at, locked_by from outbox')).rows);
    await new Promise((r) => setTimeout(r, 300));
    expect(copies().map((m) => m.to).sort()).toEqual(['member@example.net', 'reader@example.net']);
    await page.context().close();
  });

  it('discards several held posts at once by ticking them', async () => {
    for (let i = 1; i <= 3; i++) await post(`junk-${i}@example.org`, `spammer${i}@junk.example`, `Cheap watches ${i}`);
    await post('keep@example.org', 'bob@example.org', 'A real question');
    const page = await logIn('owner@example.org', '/admin/lists/dev@lists.example.org/held');
    const rows = page.locator('table.held tbody tr', { hasText: 'Cheap watches' });
    expect(await rows.count()).toBe(3);
    await shot(page, 'held-queue');
    for (let i = 0; i < 3; i++) await rows.nth(i).locator('input[type=checkbox]').check();
    await page.click('button[value=discard]');
    // Discarding asks first, naming the posts.
    expect(await page.textContent('.confirm h2')).toContain('Discard these messages?');
    expect(await page.locator('.confirm-items li').allTextContents()).toEqual([1, 2, 3].map((i) => `spammer${i}@junk.example — Cheap watches ${i}`));
    await page.click('.confirm-form button[type=submit]');
    expect(await page.textContent('[role=status]')).toContain('3 messages discarded');
    expect(await page.locator('table.held tbody tr').count()).toBe(1);
    expect(await page.textContent('table.held')).toContain('A real question');
    const { rows: states } = await db.pool.query(`select state from held_messages where message_id like 'junk-%' order by message_id`);
    expect(states.map((r) => r.state)).toEqual(['discarded', 'discarded', 'discarded']);
    await page.context().close();
  });

  it('selects all on a page and discards them after confirming, with JavaScript off', async () => {
    // 55 posts from a flood, all older than what is already held: the first page is 50 of them.
    const { rows: flood } = await db.pool.query<{ id: string }>(
      `insert into held_messages (list_id, message_id, raw, size, from_email, from_name, subject, reason, rule, state, received_at)
       select $1, 'wave-' || g || '@flood.example', convert_to('Subject: Wave ' || g, 'UTF8'), 20, 'bot' || g || '@flood.example', '', 'Wave ' || g,
              'moderated list', 'moderated', 'held', now() - interval '1 day' + make_interval(secs => g)
         from generate_series(1, 55) g returning id`, [dev.id]);
    const page = await logIn('owner@example.org', '/admin/lists/dev@lists.example.org/held', { javaScriptEnabled: false });
    expect(await page.textContent('p.held-count')).toContain('56 messages held; showing 1–50, page 1 of 2.');
    await page.check('input[name=all]');
    await page.click('button[value=discard]');
    expect(await page.textContent('.confirm h2')).toContain('Discard these messages?');
    expect(await page.locator('.confirm-items li').count()).toBe(50);
    // Nothing is discarded before the confirmation.
    expect((await db.pool.query(`select count(*)::int as n from held_messages where list_id = $1 and state = 'held'`, [dev.id])).rows[0].n).toBe(56);
    await page.click('.confirm-form button[type=submit]');
    expect(await page.textContent('[role=status]')).toContain('50 messages discarded');
    expect(await page.textContent('p.held-count')).toContain('6 messages held.');
    const { rows } = await db.pool.query(`select id::text, message_id from held_messages where list_id = $1 and state = 'held' order by received_at, id`, [dev.id]);
    expect(rows.map((r) => r.message_id)).toEqual(['wave-51@flood.example', 'wave-52@flood.example', 'wave-53@flood.example', 'wave-54@flood.example', 'wave-55@flood.example', 'keep@example.org']);
    expect(rows.map((r) => r.id)).toEqual([...flood.slice(50).map((r) => String(r.id)), rows[5].id]);
    await page.context().close();
  });

  it('adds members from a CSV file', async () => {
    const page = await logIn('owner@example.org', '/admin/lists/dev@lists.example.org/members');
    await shot(page, 'members');
    const form = page.locator('form:has(textarea[name=addresses])');
    await form.locator('input[name=csv]').setInputFiles(path.join(import.meta.dirname, 'fixtures/admin/new-members.csv'));
    await form.locator('button[type=submit]').click();
    await page.waitForLoadState();
    expect(await page.textContent('ul.outcomes')).toMatch(/3\s+added/);
    expect(await findMember(db.pool, dev.id, 'frank@example.net')).toMatchObject({ name: 'Frank Example', mode: 'digest', status: 'active' });
    await page.goto(`${web.url}/admin/lists/dev@lists.example.org/members?q=example.net&mode=digest`);
    const listed = await page.locator('table.members tbody td:nth-child(2)').allTextContents();
    expect(listed.map((t) => t.trim())).toEqual(['digest-reader@example.net', 'frank@example.net']);
    await page.context().close();
  });

  it('changes a list setting', async () => {
    const page = await logIn('owner@example.org', '/admin/lists/dev@lists.example.org/settings');
    await page.selectOption('select[name=post_policy]', 'members');
    await page.fill('input[name=subject_prefix]', '[dev]');
    await page.click('form.settings button[type=submit]');
    await page.waitForURL(/\/settings$/);
    expect(await page.textContent('[role=status]')).toContain('Saved: post_policy, subject_prefix');
    expect(await findList(db.pool, 'dev')).toMatchObject({ post_policy: 'members', subject_prefix: '[dev]' });
    await shot(page, 'settings');
    await page.context().close();
  });

  it('lets a member log in with a mailed link and switch to the digest', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
    const page = await context.newPage();
    await page.goto(`${web.url}/login`);
    await page.fill('form[action="/login/link"] input[name=email]', 'member@example.net');
    await page.click('form[action="/login/link"] button[type=submit]');
    expect(await page.textContent('main')).toContain('a login link is on its way');
    // The link is made and queued after the answer (same time for known and unknown addresses).
    const mail = (await mailArrives(db, 'member@example.net')).find((m) => m.subject === 'Your login link')!;
    const link = /https?:\/\/\S+\/login\/link\/\S+/.exec(mail.text)![0];
    await page.goto(link);
    await page.click('main button[type=submit]');
    await page.waitForURL(/\/account$/);
    const row = page.locator('tr[data-list="dev@lists.example.org"]');
    await row.locator('select[name=mode]').selectOption('digest');
    await row.locator('button:has-text("Save")').click();
    await page.waitForURL(/\/account$/);
    expect(await page.textContent('[role=status]')).toContain('delivery is now "digest"');
    expect((await findMember(db.pool, dev.id, 'member@example.net'))!.mode).toBe('digest');
    await shot(page, 'account');
    await context.close();
  });

  it('shows the operations dashboard and the panel home to a site administrator', async () => {
    const page = await logIn('admin@example.org');
    expect(new URL(page.url()).pathname).toBe('/admin/');
    expect(await page.textContent('main')).toContain('dev@lists.example.org');
    await shot(page, 'admin-home');
    await page.click('text=Operations dashboard');
    expect(await page.locator('svg rect.sent').count()).toBeGreaterThan(0);
    await shot(page, 'dashboard');
    await page.context().close();
  });
});
