import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../src/core/api-tokens.ts';
import { upsertAccount } from '../src/db/accounts.ts';
import { recordAudit } from '../src/db/audit.ts';
import { insertHeld } from '../src/db/held.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { upsertSenderRule } from '../src/db/sender-rules.ts';
import { insertRequest } from '../src/db/subscription-requests.ts';
import { archive, mail } from './fixtures/archive/seed.ts';
import { axeViolations, launchChromium, loggedIn, pageWidth } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * Every admin page and the main archive pages on a 390 px phone, in headless Chromium: nothing
 * is wider than the screen, and axe-core (WCAG 2 A and AA rules) finds no violation.
 */

const PHONE = { width: 390, height: 844 };
// Long unbroken strings are what push a page wider than a phone.
const LONG_SENDER = 'a.very.long.sender.address.that.never.breaks@subdomain.of.a.long.example.org';
const LONG_ID = 'CAH+w=7x-very-long-message-identifier-0123456789abcdef0123456789abcdef@mail.gmail.example.com';

let db: TestDatabase;
let web: RunningWeb;
let browser: Browser;
let context: BrowserContext;
let dev: ListRow;
let heldId: number;
let threadId: number;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  browser = await launchChromium();
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Developers', description: 'Development of the project', postPolicy: 'moderated', subscribePolicy: 'approve', archive: 'public', owners: ['owner@example.org'] });
  await upsertAccount(db.pool, 'owner@example.org', { siteAdmin: true });
  await addListRole(db.pool, dev.id, 'mod@example.org', 'moderator');
  await addMember(db.pool, dev.id, 'reader@example.net', 'each', 'Reader Example');
  await addMember(db.pool, dev.id, LONG_SENDER, 'digest');
  await insertRequest(db.pool, { listId: dev.id, email: `waiting.${LONG_SENDER}`, name: 'Someone Waiting', mode: 'each', action: 'subscribe', via: 'web', tokenHash: 'x'.repeat(64), state: 'approval', expiresInHours: 24 });
  await upsertSenderRule(db.pool, dev.id, '@spam.example', 'ban', null, 'owner@example.org');
  await createApiToken(db.pool, { scope: 'moderate', name: 'nightly-sync-of-the-membership-database', actor: 'owner@example.org' });
  const heldRaw = mail({ id: LONG_ID, from: `Long Name <${LONG_SENDER}>`, subject: 'A question about the release of version 2.0 and its very long subject line', date: 'Mon, 2 Mar 2026 10:00:00 +0000' });
  heldId = (await insertHeld(db.pool, { listId: dev.id, messageId: LONG_ID, raw: heldRaw, fromEmail: LONG_SENDER, fromName: 'Long Name', subject: 'A question about the release of version 2.0 and its very long subject line', envelopeFrom: LONG_SENDER, reason: 'every post to this list is held for moderation', rule: 'moderated', state: 'held' }))!;
  await recordAudit(db.pool, { actor: 'owner@example.org', action: 'held.approve', list: { id: dev.id, address: dev.address }, target: LONG_ID, detail: { from: LONG_SENDER } });
  // A thread of three, one with a long Message-ID.
  await archive(db.pool, dev, mail({ id: 'root@example.org', subject: 'Branching for 2.0', date: 'Mon, 2 Mar 2026 09:00:00 +0000', body: 'Shall we branch on Monday?\n' }));
  await archive(db.pool, dev, mail({ id: LONG_ID.replace('@', '-reply@'), from: `Long Name <${LONG_SENDER}>`, subject: 'Re: Branching for 2.0', date: 'Mon, 2 Mar 2026 10:00:00 +0000', inReplyTo: 'root@example.org', references: ['root@example.org'], body: `Yes. See https://example.org/${'a-very-long-path-segment/'.repeat(6)}\n` }));
  await archive(db.pool, dev, mail({ id: 'reply-2@example.org', subject: 'Re: Branching for 2.0', date: 'Mon, 2 Mar 2026 11:00:00 +0000', inReplyTo: 'root@example.org', references: ['root@example.org'] }));
  threadId = (await db.pool.query(`select thread_id from messages where message_id = 'root@example.org'`)).rows[0].thread_id;
  // A failed delivery with a long error, for the dashboard's table.
  await db.pool.query(
    `with m as (insert into outbound_mail (raw) values (convert_to('Subject: x', 'UTF8')) returning id)
     insert into outbox (list_id, mail_id, recipient, domain, envelope_from, kind, state, attempts, last_error)
     select $1, m.id, $2, split_part($2, '@', 2), 'dev-bounces@lists.example.org', 'notice', 'failed', 7, $3 from m`,
    [dev.id, LONG_SENDER, `550 5.1.1 <${LONG_SENDER}>: Recipient address rejected: User unknown in virtual mailbox table`],
  );

  const owner = await loggedIn(db, web.url, 'owner@example.org', { siteAdmin: true });
  context = await browser.newContext({ viewport: PHONE, bypassCSP: true });
  await context.addCookies([{ name: 'lk_session', value: owner.jar.get('lk_session')!, url: web.url }]);
}, 120_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await web?.stop();
  await db?.drop();
});

async function check(path: string, opts: { status?: number; post?: Record<string, string> } = {}) {
  const page = await context.newPage();
  const res = await page.goto(`${web.url}${path}`);
  expect(res!.status(), path).toBe(opts.status ?? 200);
  const w = await pageWidth(page, PHONE.width);
  expect(w.scrollWidth, `${path} is ${w.scrollWidth} px wide: ${w.widest.join('; ')}`).toBeLessThanOrEqual(PHONE.width);
  const violations = await axeViolations(page);
  expect(violations, `${path}:\n${violations.join('\n')}`).toEqual([]);
  await page.close();
}

const list = '/admin/lists/dev@lists.example.org';

describe('the admin pages on a 390 px phone, with axe-core', () => {
  it.each([
    ['/admin/'],
    [`${list}/`],
    [`${list}/settings`],
    [`${list}/held`],
    [`${list}/held/HELD`],
    [`${list}/members`],
    [`${list}/members/${encodeURIComponent(LONG_SENDER)}`],
    [`${list}/requests`],
    [`${list}/messages`],
    [`${list}/audit`],
    ['/admin/audit'],
    ['/admin/dashboard'],
    ['/admin/tokens'],
    ['/admin/lists/new'],
    ['/account'],
  ])('%s', async (path) => {
    await check(path.replace('HELD', String(heldId)));
  });

  it('shows a new API token once, fitting the phone', async () => {
    const page = await context.newPage();
    await page.goto(`${web.url}/admin/tokens`);
    await page.fill('input[name=name]', 'phone-made');
    await page.click('form[action="/admin/tokens"] button[type=submit]');
    await page.waitForLoadState();
    expect(await page.textContent('#new-token')).toMatch(/^lkt_[A-Za-z0-9_-]{43}$/);
    expect((await pageWidth(page, PHONE.width)).scrollWidth).toBeLessThanOrEqual(PHONE.width);
    expect(await axeViolations(page)).toEqual([]);
    await page.close();
  });

  it('marks a settings error on its field', async () => {
    const page = await context.newPage();
    await page.goto(`${web.url}${list}/settings`);
    await page.fill('input[name=name]', '');
    await page.evaluate(() => document.querySelector('input[name=name]')!.removeAttribute('required'));
    await page.fill('input[name=digest_interval_hours]', '0');
    await page.evaluate(() => document.querySelector('input[name=digest_interval_hours]')!.removeAttribute('min'));
    await page.click('form.settings button[type=submit]');
    await page.waitForLoadState();
    expect(await page.textContent('[role=alert]')).toContain('a list needs a name');
    for (const name of ['name', 'digest_interval_hours']) {
      const input = page.locator(`input[name=${name}]`);
      expect(await input.getAttribute('aria-invalid'), name).toBe('true');
      const described = await input.getAttribute('aria-describedby');
      expect(described, name).toBeTruthy();
      expect(await page.textContent(`#${described}`)).toMatch(name === 'name' ? /a list needs a name/ : /Digest interval: enter a whole number from 1/);
    }
    expect(await page.locator('[aria-invalid=true]').count()).toBe(2);
    expect(await axeViolations(page)).toEqual([]);
    expect((await pageWidth(page, PHONE.width)).scrollWidth).toBeLessThanOrEqual(PHONE.width);
    await page.close();
  });
});

describe('the archive pages on a 390 px phone, with axe-core', () => {
  it.each([
    ['/'],
    ['/lists/dev'],
    ['/lists/dev/2026-03'],
    ['/lists/dev/thread/THREAD'],
    [`/message-id/${encodeURIComponent(LONG_ID.replace('@', '-reply@'))}`],
    ['/search?q=branch'],
    ['/login'],
  ])('%s', async (path) => {
    await check(path.replace('THREAD', String(threadId)));
  });
});

describe('every page', () => {
  it('starts with a skip link to the content', async () => {
    const page = await context.newPage();
    await page.goto(`${web.url}${list}/held`);
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('href'))).toBe('#content');
    expect(await page.locator('main#content').count()).toBe(1);
    await page.close();
  });
});
