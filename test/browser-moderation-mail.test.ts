import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashPassword } from '../src/auth/credentials.ts';
import { upsertAccount } from '../src/db/accounts.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, updateDeliverySettings, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { setResolvers } from '../src/dns.ts';
import { parse } from '../src/mail/parse.ts';
import { messageUrl } from '../src/mail/urls.ts';
import { expectFitsAndAccessible, launchChromium, loggedIn, VIEWPORTS } from './helpers/browser.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { LOOPBACK_SPF, stubResolvers } from './helpers/stub-dns.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/*
 * Moderation by mail end to end, with a browser (issue 13): posts to a moderated list are held
 * through the real SMTP ingest; the moderator's notices reach a capture relay through the real
 * delivery worker; their links are opened in headless Chromium (log in, the queue, the post) at
 * a desktop and a 390 px width; the moderator's replies by mail decide the posts, a forged reply
 * decides nothing, and the panel and the archive show the outcome.
 */

const PASSWORD = 'moderate by mail, check by browser';
const MODERATOR = 'mod@example.org';
const OWNER = 'owner@example.org';
const MEMBER = 'ann@x.example';
const LIST = 'dev@lists.example.org';
const POSTS = [
  { key: 'approve', done: 'approved', from: 'first@elsewhere.example', id: 'held-approve@elsewhere.example', subject: 'A question about the release' },
  { key: 'reject', done: 'rejected', from: 'second@elsewhere.example', id: 'held-reject@elsewhere.example', subject: 'Cheap watches' },
  { key: 'discard', done: 'discarded', from: 'third@elsewhere.example', id: 'held-discard@elsewhere.example', subject: 'Out of the blue' },
] as const;

let db: TestDatabase;
let web: RunningWeb;
let relay: CaptureRelay;
let smtp: RunningIngest;
let worker: DeliveryWorker;
let browser: Browser;
let list: ListRow;
/** each held post's notice to the moderator: its text and its Reply-To */
const notices = new Map<string, { text: string; replyTo: string }>();

async function send(to: string, from: string, opts: { id?: string; subject: string; body?: string }) {
  const res = await sendRaw(smtp.port, { from, to: [to] }, message({ id: opts.id, from, to, subject: opts.subject, body: opts.body }));
  expect(res.ok, res.response).toBe(true);
}

/** Mail the relay took for an address, once at least `n` have come (or after 10 s). */
async function mailTo(address: string, n: number) {
  const deadline = Date.now() + 10_000;
  while (relay.to(address).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return Promise.all(relay.to(address).map(async (m) => ({ raw: m.raw.toString(), parsed: await parse(m.raw) })));
}

const heldState = async (messageId: string) =>
  (await db.pool.query('select state, decided_by, decision_reason from held_messages where message_id = $1', [messageId])).rows[0];

// A browser and several pages per test on a shared two-core machine: more than the default 30 s.
vi.setConfig({ testTimeout: 120_000 });

beforeAll(async () => {
  setResolvers(stubResolvers(new Map(), { defaultSpf: LOOPBACK_SPF }));
  db = await testDatabase();
  web = await startWeb(db);
  relay = await startCaptureRelay();
  // The links in notices point at the web server the browser opens.
  const cfg = workerConfig(relay, { PUBLIC_URL: web.url });
  smtp = await startIngest(db.pool, { settings: { ...cfg, authCheckTimeoutMs: 1500 } });
  worker = await startWorker(db, cfg);
  browser = await launchChromium();
  list = await createList(db.pool, { address: LIST, name: 'Developers', description: 'Development of the project', postPolicy: 'moderated', subscribePolicy: 'confirm', archive: 'public', owners: [OWNER] });
  await addListRole(db.pool, list.id, MODERATOR, 'moderator');
  await upsertAccount(db.pool, MODERATOR, { passwordHash: await hashPassword(PASSWORD) });
  // Each held post is announced at once, in a notice of its own whose Reply-To moderates it.
  await updateDeliverySettings(db.pool, list.id, { held_notice_minutes: 0 });
  await addMember(db.pool, list.id, MEMBER, 'each');

  for (const [i, p] of POSTS.entries()) {
    await send(LIST, p.from, { id: p.id, subject: p.subject });
    const all = await mailTo(MODERATOR, i + 1);
    expect(all).toHaveLength(i + 1);
    const notice = all[i];
    const replyTo = /^Reply-To: (\S+)\r?$/m.exec(notice.raw)?.[1];
    expect(notice.parsed.subject).toBe(`1 post held for moderation on ${LIST}`);
    expect(notice.parsed.text).toContain(`${p.from}: ${p.subject}`);
    expect(replyTo).toMatch(/^dev-confirm\+mod-[a-f0-9]{32}@lists\.example\.org$/);
    notices.set(p.key, { text: notice.parsed.text!, replyTo: replyTo! });
  }
}, 120_000);

afterAll(async () => {
  setResolvers();
  await browser?.close();
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await web?.stop();
  await db?.drop();
});

/** The links of a notice: the held post's page and the queue. */
function links(key: string): { post: string; queue: string } {
  const text = notices.get(key)!.text;
  const post = /^\s+(http\S+\/held\/\d+)$/m.exec(text)?.[1];
  const queue = /^The moderation queue: (http\S+)$/m.exec(text)?.[1];
  expect(post, text).toBeDefined();
  expect(queue, text).toBeDefined();
  return { post: post!, queue: queue! };
}

const heldRows = (page: Page) => page.locator('table.held tbody tr');

describe.each(VIEWPORTS)('the held notice\'s links on a $name', ({ viewport }) => {
  let context: BrowserContext;
  beforeAll(async () => {
    context = await browser.newContext({ viewport, bypassCSP: true });
  });
  afterAll(async () => {
    await context?.close();
  });

  it('the queue link asks the moderator to log in, then shows the three held posts', async () => {
    const { queue } = links('approve');
    expect(queue).toBe(`${web.url}/admin/lists/${LIST}/held`);
    const page = await context.newPage();
    await page.goto(queue);
    expect(new URL(page.url()).pathname).toBe('/login');
    await expectFitsAndAccessible(page);
    await page.fill('form[action="/login"] input[name=email]', MODERATOR);
    await page.fill('form[action="/login"] input[name=password]', PASSWORD);
    await Promise.all([page.waitForURL(queue), page.click('form[action="/login"] button[type=submit]')]);
    expect(await page.locator('header.list-head').textContent()).toMatch(/Your role:\s*moderator/);
    expect(await page.locator('header.site').textContent()).toContain(MODERATOR);
    expect(await heldRows(page).count()).toBe(3);
    for (const p of POSTS) expect(await page.locator('table.held').textContent()).toContain(p.subject);
    await expectFitsAndAccessible(page);
    await page.close();
  });

  it.each(POSTS.map((p) => [p.key, p] as const))('the link to the %s post opens that post, with its actions', async (key, p) => {
    const page = await context.newPage();
    await page.goto(links(key).post);
    expect(await page.locator('.panel h2').first().textContent()).toBe(p.subject);
    expect(await page.locator('dl.facts').first().textContent()).toContain(`<${p.from}>`);
    expect(await page.getByRole('button', { name: /approve/i }).count()).toBeGreaterThan(0);
    // One template: axe and the width once per viewport are enough.
    if (key === 'approve') await expectFitsAndAccessible(page);
    await page.close();
  });
});

describe('replies to the notices', () => {
  it('a forged reply, or one with a wrong token, changes nothing: the post is still held in the panel', async () => {
    const { replyTo } = notices.get('approve')!;
    await send(replyTo, 'eve@elsewhere.example', { subject: 'approve' });
    await send(replyTo, POSTS[0].from, { subject: 'approve' });
    await send(`dev-confirm+mod-${'0'.repeat(32)}@lists.example.org`, MODERATOR, { subject: 'approve' });
    expect(await heldState(POSTS[0].id)).toMatchObject({ state: 'held', decided_by: null });
    const context = await browser.newContext({ viewport: VIEWPORTS[0].viewport, bypassCSP: true });
    const session = (await loggedIn(db, web.url, MODERATOR)).jar.get('lk_session')!;
    await context.addCookies([{ name: 'lk_session', value: session, url: web.url }]);
    const page = await context.newPage();
    await page.goto(links('approve').queue);
    expect(await heldRows(page).count()).toBe(3);
    expect(await page.locator('table.held').textContent()).toContain(POSTS[0].subject);
    await page.goto(links('approve').post);
    expect(await page.getByRole('button', { name: /approve/i }).count()).toBeGreaterThan(0);
    await context.close();
    // Nobody was answered: the From of such mail may be forged.
    expect(relay.to('eve@elsewhere.example')).toHaveLength(0);
    expect(relay.to(MODERATOR)).toHaveLength(3);
  });

  it('approve, reject with a reason and discard by mail: the queue empties, the approved post is archived, the audit log names the moderator', async () => {
    await send(notices.get('approve')!.replyTo, MODERATOR, { subject: `Re: 1 post held for moderation on ${LIST}`, body: 'approve\n\n> A post is waiting\n' });
    await send(notices.get('reject')!.replyTo, MODERATOR, { subject: 'Re: held', body: 'reject Off topic\n' });
    await send(notices.get('discard')!.replyTo, MODERATOR, { subject: 'discard' });
    expect(await heldState(POSTS[0].id)).toMatchObject({ state: 'approved', decided_by: `mail:${MODERATOR}` });
    expect(await heldState(POSTS[1].id)).toMatchObject({ state: 'rejected', decided_by: `mail:${MODERATOR}`, decision_reason: 'Off topic' });
    expect(await heldState(POSTS[2].id)).toMatchObject({ state: 'discarded', decided_by: `mail:${MODERATOR}` });

    // The moderator is answered for each; the rejected sender is told the reason; the member gets the approved post.
    const answers = (await mailTo(MODERATOR, 6)).slice(3).map((m) => m.parsed);
    for (const p of POSTS) {
      const answer = answers.find((a) => a.subject === `Held post ${p.done} on ${LIST}`);
      expect(answer?.text, p.key).toContain(`"${p.subject}" from ${p.from} was`);
      // Its link is the post's page (opened below), as in the notice.
      expect(answer?.text).toContain(`The held post: ${links(p.key).post}`);
    }
    const rejection = (await mailTo(POSTS[1].from, 1)).map((m) => m.parsed).find((m) => m.subject === `Your message to ${LIST} was rejected`);
    expect(rejection?.text).toContain('Reason: Off topic');
    const copies = await mailTo(MEMBER, 1);
    expect(copies.map((c) => c.parsed.messageId)).toEqual([POSTS[0].id]);

    const moderator = (await loggedIn(db, web.url, MODERATOR)).jar.get('lk_session')!;
    const owner = (await loggedIn(db, web.url, OWNER)).jar.get('lk_session')!;
    for (const { viewport } of VIEWPORTS) {
      const context = await browser.newContext({ viewport, bypassCSP: true });
      try {
        await context.addCookies([{ name: 'lk_session', value: moderator, url: web.url }]);
        const page = await context.newPage();
        await page.goto(links('approve').queue);
        expect(await heldRows(page).count()).toBe(0);
        expect(await page.locator('p.empty').textContent()).toBe('Nothing is waiting for moderation.');
        await expectFitsAndAccessible(page);
        // The held post's link now says what became of it, by whom.
        await page.goto(links('reject').post);
        expect(await page.getByRole('button', { name: /approve/i }).count()).toBe(0);
        expect(await page.locator('p.flash').textContent()).toMatch(new RegExp(`^Already rejected by mail:${MODERATOR} on .*: “Off topic”\\.$`));
        await expectFitsAndAccessible(page);

        await page.goto(`${web.url}${messageUrl(POSTS[0].id)}`);
        expect(await page.locator('h1').textContent()).toBe(POSTS[0].subject);
        await expectFitsAndAccessible(page);
        for (const p of POSTS.slice(1)) expect((await page.request.get(`${web.url}${messageUrl(p.id)}`)).status()).toBe(404);

        // The audit log is the owners'.
        await context.clearCookies();
        await context.addCookies([{ name: 'lk_session', value: owner, url: web.url }]);
        await page.goto(`${web.url}/admin/lists/${LIST}/audit`);
        const rows = await page.locator('table.audit tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent!.trim())));
        const decisions = rows.filter((r) => r[2].startsWith('held.')).map((r) => `${r[1]} ${r[2]} ${r[3]}`).sort();
        expect(decisions).toEqual(POSTS.map((p) => `mail:${MODERATOR} held.${p.key} ${p.id}`).sort());
        await expectFitsAndAccessible(page);
      } finally {
        await context.close();
      }
    }
  });
});
