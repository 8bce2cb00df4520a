import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashPassword } from '../src/auth/credentials.ts';
import { upsertAccount } from '../src/db/accounts.ts';
import { expectFitsAndAccessible, launchChromium, VIEWPORTS } from './helpers/browser.ts';
import { cli, ROOT, type CliResult } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/*
 * The Mailman import, then the panel (issue 13): `listkeeper import-mailman` runs as a real process
 * on the Mailman 3 and Mailman 2 fixtures, and a site administrator logged in with headless
 * Chromium sees what was imported on the settings, members and held-messages (sender rules)
 * pages, at 1280 and 390 px, axe-clean and no wider than the screen.
 */

const F = path.join(ROOT, 'test/fixtures/mailman');
const MM3 = ['config.json', 'members.json', 'owners.json', 'moderators.json', 'bans.json'].map((f) => path.join(F, 'mm3', f));
const MM2 = ['bees.config', 'bees-regular.txt', 'bees-digest.txt', 'bees-nomail.txt'].map((f) => path.join(F, 'mm2', f));
const ADMIN = 'admin@example.org';
const PASSWORD = 'imported from mailman';

/** What each import should show in the panel, from the fixtures (test/mailman-import.test.ts checks the same through the CLI). */
const LISTS = [
  {
    address: 'ant@example.com', files: MM3, from: 'Mailman 3',
    fields: { name: 'Ant', description: 'Talk about ants', subject_prefix: '[Ant]', post_policy: 'members', subscribe_policy: 'confirm', archive: 'members', reply_to: 'list', max_message_kb: '40', dmarc_mitigation: 'munge_from', notify_held_sender: '1' },
    members: ['anne@example.com Anne Person each', 'bart@example.com Bart Person digest', 'cris@example.org digest', 'dave@example.org Dave nomail'],
    roles: ['queen@example.com owner', 'worker@example.com moderator'],
    rules: ['@junk.example banned', '@spam.example banned', 'partner@example.net always accepted', 'troll@example.net banned'],
  },
  {
    address: 'bees@lists.example.com', files: MM2, from: 'Mailman 2',
    fields: { name: 'Bees', description: "Bees and their keepers' list", subject_prefix: '[Bees]', post_policy: 'members', subscribe_policy: 'approve', archive: 'members', reply_to: 'address', reply_to_address: 'hive@example.com', max_message_kb: '100', dmarc_mitigation: 'munge_from', notify_held_sender: '1' },
    members: ['amy@example.com Amy Apiarist each', 'ben@example.com each', 'carl@example.org Carl nomail', 'dora@example.com Dora digest'],
    roles: ['drone@example.com moderator', 'keeper@example.com owner', 'second.keeper@example.com owner'],
    rules: ['@bad.example banned', 'friend@example.org always accepted', 'spammer@example.net banned'],
  },
] as const;

let db: TestDatabase;
let web: RunningWeb;
let browser: Browser;
const reports = new Map<string, CliResult>();

// A browser and several pages per test on a shared two-core machine: more than the default 30 s.
vi.setConfig({ testTimeout: 120_000 });

beforeAll(async () => {
  db = await testDatabase();
  const env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' };
  for (const l of LISTS) reports.set(l.address, await cli(['import-mailman', ...l.files], env));
  web = await startWeb(db);
  browser = await launchChromium();
  await upsertAccount(db.pool, ADMIN, { passwordHash: await hashPassword(PASSWORD), siteAdmin: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.stop();
  await db?.drop();
});

describe('listkeeper import-mailman', () => {
  it.each(LISTS.map((l) => [l.from, l] as const))('creates the list from the %s export and prints each setting it has no equivalent for', async (_, l) => {
    const r = reports.get(l.address)!;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^created list ${l.address.replace(/\./g, '\\.')} \\(from ${l.from}\\)`));
    // The machine-readable report of the same files names what had no equivalent; the text said each.
    const json = JSON.parse((await cli(['import-mailman', '--json', ...l.files], { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org' })).stdout);
    const unmapped = json.unmapped as { setting: string; value: string; note: string }[];
    expect(unmapped.length).toBeGreaterThan(3);
    const lines = r.stdout.split('\n');
    for (const u of unmapped) {
      expect(lines.some((line) => line.startsWith(`  ${u.setting} = `) && line.endsWith(`: ${u.note}`)), `${u.setting}: ${u.note}`).toBe(true);
    }
    expect(unmapped.some((u) => u.note === 'no equivalent')).toBe(true);
  });
});

describe.each(VIEWPORTS)('the imported lists in the panel on a $name', ({ viewport }) => {
  let context: BrowserContext;
  let page: Page;
  beforeAll(async () => {
    context = await browser.newContext({ viewport, bypassCSP: true });
    page = await context.newPage();
    await page.goto(`${web.url}/login`);
    await page.fill('form[action="/login"] input[name=email]', ADMIN);
    await page.fill('form[action="/login"] input[name=password]', PASSWORD);
    await Promise.all([page.waitForURL(`${web.url}/admin/`), page.click('form[action="/login"] button[type=submit]')]);
    for (const l of LISTS) expect(await page.locator('main').textContent()).toContain(l.address);
  });
  afterAll(async () => {
    await context?.close();
  });

  describe.each(LISTS.map((l) => [l.address, l] as const))('%s', (address, l) => {
    const base = `/admin/lists/${address}`;

    it('the settings page shows the imported settings, owners and moderators', async () => {
      await page.goto(`${web.url}${base}/settings`);
      const values = await page.locator('form.settings').evaluate((form, names) => Object.fromEntries(names.map((n) => [n, (form.querySelector(`[name="${n}"]`) as HTMLInputElement | HTMLSelectElement).value])), Object.keys(l.fields));
      expect(values).toEqual(l.fields);
      const roles = await page.locator('#roles + p + table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(0, 2).map((td) => td.textContent!.trim()).join(' ')));
      expect(roles.sort()).toEqual([...l.roles]);
      await expectFitsAndAccessible(page);
    });

    it('the members page shows the members with their delivery modes', async () => {
      await page.goto(`${web.url}${base}/members`);
      const rows = await page.locator('table.members tbody tr').evaluateAll((trs) => trs.map((tr) => {
        const cell = (label: string) => tr.querySelector(`td[data-label="${label}"]`)!.textContent!.trim();
        return [cell('Address'), cell('Name'), cell('Delivery')].filter(Boolean).join(' ');
      }));
      expect(rows.sort()).toEqual([...l.members]);
      await expectFitsAndAccessible(page);
    });

    it('the held-messages page lists the bans and allowed senders among its sender rules', async () => {
      await page.goto(`${web.url}${base}/held`);
      const rules = await page.locator('table.rules tbody tr').evaluateAll((trs) => trs.map((tr) => `${tr.querySelector('td[data-label="Sender"]')!.textContent!.trim()} ${tr.querySelector('td[data-label="Rule"]')!.textContent!.trim()}`));
      expect(rules.sort()).toEqual([...l.rules]);
      await expectFitsAndAccessible(page);
    });
  });
});
