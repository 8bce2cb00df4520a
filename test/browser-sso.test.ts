import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectFitsAndAccessible, launchChromium, VIEWPORTS } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { CLIENT_ID, CLIENT_SECRET, ADMIN_GROUP, providerPort, startProvider, type RunningProvider } from './helpers/oidc-provider.ts';
import { PEOPLE, PEOPLE_ENTRIES, startSlapd, type RunningSlapd } from './helpers/slapd.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * Single sign-on in headless Chromium, with the site's Content-Security-Policy enforced (no
 * bypassCSP): the OpenID login leaves by a link and comes back by the provider's redirect, with
 * the SameSite=Lax state cookie; the directory form posts to the site itself.
 */

let db: TestDatabase;
let web: RunningWeb;
let provider: RunningProvider;
let slapd: RunningSlapd;
let browser: Browser;

beforeAll(async () => {
  db = await testDatabase();
  const port = await providerPort();
  slapd = await startSlapd();
  web = await startWeb(db, {
    OIDC_ISSUER: `http://127.0.0.1:${port}`, OIDC_CLIENT_ID: CLIENT_ID, OIDC_CLIENT_SECRET: CLIENT_SECRET,
    OIDC_SCOPES: 'openid email groups', OIDC_ADMIN_GROUP: ADMIN_GROUP, OIDC_LABEL: 'Example SSO',
    LDAP_URL: slapd.url, LDAP_BIND_DN: `uid={user},${PEOPLE}`, LDAP_LABEL: 'Example directory account',
  });
  provider = await startProvider(port, `${web.url}/login/oidc/callback`);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await web?.stop();
  await provider?.stop();
  await slapd?.stop();
  await db?.drop();
});

describe('single sign-on in a browser', () => {
  it('logs in through the OpenID provider and back, with the CSP on, and lands on the panel for an admin-group member', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${web.url}/login?next=/admin/`);
    await page.click('text=Log in with Example SSO');
    await page.waitForURL((u) => u.href.startsWith(provider.issuer));
    await page.fill('input[name=login]', 'root');
    await page.fill('input[name=password]', 'anything');
    await page.click('button[type=submit]');
    await page.click('button:has-text("Continue")');
    await page.waitForURL(`${web.url}/admin/`);
    expect(await page.textContent('body')).toContain('root@example.org');
    const cookies = await context.cookies(web.url);
    expect(cookies.find((c) => c.name === 'lk_session')).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
    expect(cookies.find((c) => c.name === 'lk_oidc')).toBeUndefined();
    await context.close();
  });

  it('logs in with a directory account from the login page', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${web.url}/login`);
    await page.fill('input[name=user]', 'ann');
    await page.fill('form[action="/login/ldap"] input[name=password]', PEOPLE_ENTRIES.ann.password);
    await page.click('text=Log in with your Example directory account');
    await page.waitForURL(`${web.url}/account`);
    expect(await page.textContent('body')).toContain('ann@example.org');
    await context.close();
  });

  it('shows every way in on a login page that fits a phone and passes axe-core', async () => {
    for (const { viewport } of VIEWPORTS) {
      const context = await browser.newContext({ viewport, bypassCSP: true });
      const page = await context.newPage();
      await page.goto(`${web.url}/login`);
      for (const text of ['Log in with Example SSO', 'User name (Example directory account)', 'With a password of this site', 'Get a login link by mail']) {
        expect(await page.textContent('main')).toContain(text);
      }
      await expectFitsAndAccessible(page);
      await context.close();
    }
  });
});
