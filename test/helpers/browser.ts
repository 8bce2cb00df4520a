/*
 * Two ways to drive the web panel in tests: WebClient, a fetch with a cookie jar (for route and
 * role tables), and a real headless Chromium through playwright-core (for end-to-end flows).
 */

import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type { Browser, Page } from 'playwright-core';
import { expect } from 'vitest';
import { upsertAccount } from '../../src/db/accounts.ts';
import { hashToken, newToken } from '../../src/auth/credentials.ts';
import type { Database } from '../../src/db/database.ts';
import { createSession } from '../../src/db/sessions.ts';
import { sessionCsrfToken } from '../../src/web/csrf.ts';

export interface Reply {
  status: number;
  location: string | null;
  text: string;
  headers: Headers;
}

export class WebClient {
  readonly jar = new Map<string, string>();

  constructor(readonly base: string, readonly headers: Record<string, string> = {}) {}

  /**
   * The token a page's forms would carry: logged in, the session's (src/web/csrf.ts); else the
   * anonymous cookie's, as a browser would have it from any page, under both of its names (the
   * one over https and the one over http).
   */
  get csrf(): string {
    const session = this.jar.get('__Host-lk_session') ?? this.jar.get('lk_session');
    if (session) return sessionCsrfToken(session);
    let token = this.jar.get('__Host-lk_csrf') ?? this.jar.get('lk_csrf');
    if (!token) {
      token = crypto.randomBytes(24).toString('base64url');
      this.jar.set('lk_csrf', token);
      this.jar.set('__Host-lk_csrf', token);
    }
    return token;
  }

  async get(path: string): Promise<Reply> {
    return this.request('GET', path);
  }

  /** Posts a form; the CSRF token is added unless `csrf: false` (or a wrong one is given). */
  async post(path: string, form: Record<string, string | string[]> | URLSearchParams = {}, opts: { csrf?: boolean | string } = {}): Promise<Reply> {
    const body = form instanceof URLSearchParams ? form : new URLSearchParams();
    if (!(form instanceof URLSearchParams)) {
      for (const [k, v] of Object.entries(form)) for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
    }
    const csrf = this.csrf;
    if (opts.csrf !== false) body.set('_csrf', typeof opts.csrf === 'string' ? opts.csrf : csrf);
    return this.request('POST', path, body, { 'content-type': 'application/x-www-form-urlencoded' });
  }

  async postMultipart(path: string, form: FormData): Promise<Reply> {
    form.set('_csrf', this.csrf);
    return this.request('POST', path, form);
  }

  async request(method: string, path: string, body?: BodyInit, headers: Record<string, string> = {}): Promise<Reply> {
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(new URL(path, this.base), { method, body, redirect: 'manual', headers: { ...this.headers, ...headers, ...(cookie ? { cookie } : {}) } });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a)) || value === '';
      if (expired) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return { status: res.status, location: res.headers.get('location'), text: await res.text(), headers: res.headers };
  }
}

/** An account with a live session, without going through /login (for role tables). */
export async function loggedIn(db: Database, base: string, email: string, opts: { siteAdmin?: boolean } = {}): Promise<WebClient> {
  const { account } = await upsertAccount(db.pool, email, { siteAdmin: opts.siteAdmin });
  const id = newToken();
  await createSession(db.pool, hashToken(id), account.id, '127.0.0.1', 'test');
  const client = new WebClient(base);
  client.jar.set('lk_session', id);
  return client;
}

/** Headless Chromium (the Debian package) driven by playwright-core. */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

const axeSource: string = (createRequire(import.meta.url)('axe-core') as { source: string }).source;

interface AxeResult {
  violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[];
}

/** axe-core's violations on the page (WCAG 2 A and AA and best practice), one line each: rule, then the elements it names. */
export async function axeViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(() => (window as unknown as { axe: { run(): Promise<AxeResult> } }).axe.run());
  return result.violations.map((v) => `${v.id} (${v.impact}: ${v.help}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** How wide the page is, and the elements reaching past `limit` px (the last five), to say what overflows. */
export async function pageWidth(page: Page, limit: number): Promise<{ scrollWidth: number; widest: string[] }> {
  return page.evaluate((lim) => {
    const widest = [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > lim + 0.5)
      .slice(-5)
      .map((e) => `${e.tagName.toLowerCase()}${e.className ? `.${String(e.className).replace(/ /g, '.')}` : ''} → ${Math.round(e.getBoundingClientRect().right)}`);
    return { scrollWidth: document.documentElement.scrollWidth, widest };
  }, limit);
}

/** The page is no wider than its viewport and axe-core finds nothing: the bar for every page a browser test opens. */
export async function expectFitsAndAccessible(page: Page): Promise<void> {
  const limit = page.viewportSize()!.width;
  const label = new URL(page.url()).pathname;
  const w = await pageWidth(page, limit);
  expect(w.scrollWidth, `${label} is ${w.scrollWidth} px wide at ${limit}: ${w.widest.join('; ')}`).toBeLessThanOrEqual(limit);
  const violations = await axeViolations(page);
  expect(violations, `${label} at ${limit} px:\n${violations.join('\n')}`).toEqual([]);
}

/** The two widths every flow is checked at: a desktop and a 390 px phone. */
export const VIEWPORTS = [
  { name: 'desktop', viewport: { width: 1280, height: 900 } },
  { name: 'phone', viewport: { width: 390, height: 844 } },
] as const;

/** Mail queued for delivery (the outbound queue), oldest first, parsed: what the panel sent. */
export async function queuedMail(db: Database, to?: string): Promise<{ to: string; subject: string; text: string }[]> {
  const { parse } = await import('../../src/mail/parse.ts');
  const { rows } = await db.pool.query<{ recipient: string; raw: Buffer }>(
    `select o.recipient, m.raw from outbox o join outbound_mail m on m.id = o.mail_id
      where ($1::text is null or o.recipient = $1) order by o.id`,
    [to ?? null],
  );
  return Promise.all(rows.map(async (r) => {
    const m = await parse(r.raw);
    return { to: r.recipient, subject: m.subject, text: m.text };
  }));
}

/**
 * Mail the web queues after answering (login links, password resets: web/after-response.ts),
 * once it is there: polls the outbound queue until `count` mails to `to` have arrived.
 */
export async function mailArrives(db: Database, to: string, count = 1): Promise<{ to: string; subject: string; text: string }[]> {
  for (let i = 0; ; i++) {
    const mails = await queuedMail(db, to);
    if (mails.length >= count || i >= 200) return mails;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How many pieces of after-response work the web processes of this test process have finished. */
export async function afterResponseDone(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return [...text.matchAll(/^listkeeper_web_after_response_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Waits until `n` more pieces of after-response work than `before` have finished. */
export async function afterResponseSettled(base: string, before: number, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await afterResponseDone(base)) >= before + n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('work after the response did not finish');
}
