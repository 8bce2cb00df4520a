import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertAccount } from '../src/db/accounts.ts';
import { hashPassword } from '../src/auth/credentials.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

/**
 * The web never answers 500 to what a visitor sends. Odd paths, queries and
 * forms get a 400 (or the page's own 404), are logged and counted, and the server goes on.
 */
let db: TestDatabase;
let web: RunningWeb;
let admin: WebClient;

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${web.url}${path}`, { redirect: 'manual', headers });

/** Percent-encodes bytes, every one of them: any byte sequence, valid UTF-8 or not. */
const percent = (bytes: Uint8Array) => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
/** Any JavaScript string as its UTF-8 bytes (a lone surrogate becomes U+FFFD, as a browser sends it). */
const utf8 = (s: string) => percent(Buffer.from(s, 'utf8'));

async function refusals(): Promise<number> {
  const text = await (await get('/metrics')).text();
  return [...text.matchAll(/^listkeeper_web_refused_requests_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  const dev = await newList(db.pool, 'dev@lists.example.org');
  await newList(db.pool, 'secret@lists.example.org', 'private');
  await archive(db.pool, dev, mail({ id: 'hello@example.org', subject: 'Hello world', body: 'Vacuum freezes old tuples.\n', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
  await upsertAccount(db.pool, 'root@example.org', { passwordHash: await hashPassword('correct horse battery'), siteAdmin: true });
  admin = await loggedIn(db, web.url, 'root@example.org', { siteAdmin: true });
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('search text that PostgreSQL cannot parse as it stands', () => {
  it('runs a search that starts with 33 or more dashes, and finds what the words ask for', async () => {
    for (const n of [33, 40, 200]) {
      const res = await get(`/search?q=${'-'.repeat(n)}`);
      expect(res.status, `${n} dashes`).toBe(200);
    }
    // An even run of NOTs is no NOT; an odd one is one.
    const even = await (await get(`/search?q=${'-'.repeat(40)}vacuum`)).text();
    expect(even).toContain('/message-id/hello@example.org');
    const odd = await (await get(`/search?q=hello+${'-'.repeat(41)}vacuum`)).text();
    expect(odd).not.toContain('/message-id/hello@example.org');
    const spaced = await (await get(`/search?q=${encodeURIComponent('- '.repeat(50))}vacuum`)).text();
    expect(spaced).toContain('/message-id/hello@example.org');
  });

  it('answers a word too long for a tsquery with 400 and a plain message', async () => {
    const res = await get(`/search?q=${encodeURIComponent('\u{1F600}'.repeat(600))}`);
    expect([200, 400]).toContain(res.status);
    expect(await res.text()).not.toMatch(/Internal error/);
  });
});

describe('NUL and broken encodings', () => {
  const urls = [
    '/search?q=%00', '/search?q=a%00b', '/search?list=%00', '/search?from=%00', '/search?from=a%00@b.c', '/search?after=%00', '/search?q=%ff', '/search?q=%e2%82',
    '/message-id/%00', '/message-id/a%00b@example.org', '/message-id/raw/%00', '/message-id/attachment/%00/1/x', '/message-id/%ff@x',
    '/lists/%00', '/lists/%00/', '/lists/dev/%00', '/lists/%00/2026-11/', '/lists/%00/subscribe', '/lists/%ff/', '/lists/dev/thread/1%00',
    '/u/%00', '/confirm/%00', '/login/link/%00', '/login?next=%00', '/?page=%00', '/search?q=hello&x=%00', '/search?%00=1',
  ];
  it.each(urls)('%s is a 400, not a 500', async (url) => {
    const res = await get(url);
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/not valid|NUL/);
  });

  const adminUrls = [
    '/admin/lists/%00/', '/admin/lists/%00/settings', '/admin/lists/dev/members?q=%00', '/admin/lists/dev/members/%00',
    '/admin/lists/dev/members/a%00b@example.org', '/admin/lists/dev/messages?q=%00', '/admin/audit?q=%00',
  ];
  it.each(adminUrls)('%s (admin) is a 400, not a 500', async (url) => {
    expect((await admin.get(url)).status).toBe(400);
  });

  it('refuses a form field holding a NUL with 400, before anything reads it', async () => {
    const c = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.40' });
    expect((await c.post('/login', { email: 'root@example.org\u0000', password: 'x' })).status).toBe(400);
    expect((await c.post('/login/link', { email: 'a\u0000@example.org' })).status).toBe(400);
    expect((await c.post('/lists/dev/subscribe', { email: 'a@example.org', name: 'A\u0000' })).status).toBe(400);
    expect((await admin.post('/admin/lists/dev/members/add', { email: 'new@example.org', name: 'N\u0000' })).status).toBe(400);
    const form = new FormData();
    form.set('text', 'x\u0000@example.org');
    expect((await admin.postMultipart('/admin/lists/dev/members/add', form)).status).toBe(400);
  });

  it('reads at most 64 KB of a form from a visitor who is not logged in (413, counted), 5 MB from one who is', async () => {
    const before = await refusals();
    const stranger = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.41' });
    const big = `email=root%40example.org&password=x&pad=${'x'.repeat(100 * 1024)}`;
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    for (const path of ['/login', '/login/link', '/lists/dev/subscribe', '/admin/lists/dev/settings']) {
      const r = await stranger.request('POST', path, big, form);
      expect(r.status, path).toBe(413);
      expect(r.text, path).toContain('This form is larger than the 64 KB this site takes from a visitor who is not logged in.');
    }
    // Refused before the password was looked at: no failed login counted.
    expect((await db.pool.query(`select 1 from rate_limits where key like 'login:fail:%'`)).rowCount).toBe(0);
    expect(await refusals()).toBe(before + 4);
    // A logged-in form of the same size is read: it gets as far as the CSRF check (no token sent here).
    const read = await admin.request('POST', '/admin/lists/dev/messages/unhide', `message_id=nothing%40example.org&pad=${'x'.repeat(100 * 1024)}`, form);
    expect(read.status).toBe(403);
    const tooBig = await admin.request('POST', '/admin/lists/dev/messages/unhide', `message_id=nothing%40example.org&pad=${'x'.repeat(5 * 1024 * 1024)}`, form);
    expect(tooBig.status).toBe(413);
    expect(tooBig.text).toContain('This form is larger than the 5 MB this site takes.');
  });

  it('refuses a multipart form of too many parts, or whose fields or CSV file are not UTF-8, with 400; a field named __proto__ is a field', async () => {
    const multipart = (parts: Buffer[]) => admin.request('POST', '/admin/lists/dev/members/add', new Uint8Array(Buffer.concat([...parts, Buffer.from('--X--\r\n')])),
      { 'content-type': 'multipart/form-data; boundary=X' });
    const field = (name: string, value: Buffer | string) => Buffer.concat([Buffer.from(`--X\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n`), Buffer.from(value), Buffer.from('\r\n')]);
    const csrf = field('_csrf', admin.csrf);
    // 20,000 parts of one name once took 16 s of the web process (an array copied for each part).
    const many = await multipart([csrf, ...Array.from({ length: 20_000 }, () => field('a', ''))]);
    expect(many.status).toBe(400);
    expect(many.text).toContain('more than 1000 parts');
    const latin1 = await multipart([csrf, field('email', 'marc@example.org'), field('name', Buffer.from('Marc \xe9\xe9', 'latin1'))]);
    expect(latin1.status).toBe(400);
    expect(latin1.text).toContain('not UTF-8');
    const csv = Buffer.concat([Buffer.from('--X\r\nContent-Disposition: form-data; name="csv"; filename="m.csv"\r\nContent-Type: text/csv\r\n\r\n'),
      Buffer.from('latin@example.org,Marc \xe9\xe9\r\n', 'latin1'), Buffer.from('\r\n')]);
    const file = await multipart([csrf, csv]);
    expect(file.status).toBe(400);
    expect(file.text).toContain('The CSV file is not UTF-8 text');
    expect((await db.pool.query(`select 1 from members where email in ('marc@example.org', 'latin@example.org')`)).rows).toEqual([]);
    // An Excel "CSV UTF-8" file starts with a byte order mark, which is not part of the address.
    const bom = Buffer.concat([Buffer.from('--X\r\nContent-Disposition: form-data; name="csv"; filename="m.csv"\r\n\r\n'), Buffer.from('\ufeffbom@example.org,Bom\r\n'), Buffer.from('\r\n')]);
    expect((await multipart([csrf, field('__proto__', 'x'), bom])).status).toBe(200);
    expect((await db.pool.query(`select name from members where email = 'bom@example.org'`)).rows).toEqual([{ name: 'Bom' }]);
    // A file name sent in Latin-1 (curl, not a browser) is not what is checked: the file is.
    const named = Buffer.concat([Buffer.from('--X\r\nContent-Disposition: form-data; name="csv"; filename="Mitglieder-M\xe4rz.csv"\r\n\r\n', 'latin1'),
      Buffer.from('maerz@example.org,M\u00e4rz\r\n'), Buffer.from('\r\n')]);
    expect((await multipart([csrf, named])).status).toBe(200);
    expect((await db.pool.query(`select name from members where email = 'maerz@example.org'`)).rows).toEqual([{ name: 'März' }]);
  });

  it('refuses a form or JSON body that is not UTF-8 with 400, rather than storing U+FFFD as an address', async () => {
    const c = new WebClient(web.url, { 'x-forwarded-for': '198.51.100.41' });
    const csrf = c.csrf;
    const form = (body: Buffer) => c.request('POST', '/lists/dev/subscribe', new Uint8Array(body), { 'content-type': 'application/x-www-form-urlencoded' });
    const raw = await form(Buffer.concat([Buffer.from('email='), Buffer.from([0xff, 0xfe]), Buffer.from(`@example.org&_csrf=${csrf}`)]));
    expect(raw.status).toBe(400);
    expect(raw.text).toContain('not UTF-8');
    const escaped = await form(Buffer.from(`email=%FFz@example.org&_csrf=${csrf}`));
    expect(escaped.status).toBe(400);
    expect((await form(Buffer.from(`email=ok%40example.org&_csrf=${csrf}`))).status).toBe(200);
    const { rows } = await db.pool.query(`select email from members union all select email from subscription_requests`);
    expect(rows.map((r) => r.email as string).filter((e) => e.includes('\ufffd'))).toEqual([]);
  });

  it('logs and counts every refusal', async () => {
    const before = await refusals();
    await get('/search?q=%00');
    await get('/lists/%ff/');
    expect(await refusals()).toBe(before + 2);
  });
});

describe('odd values on every public route', () => {
  const odd = [
    '/?page=99999999999', '/?page=100000', '/?page=-1', '/?page=1e3', '/?page=a&page=b',
    '/search?q=a&q=b', '/search?q[]=a', '/search?q[x]=a', '/search?page=100000&q=hello', '/search?page=99999999999999999999',
    `/search?q=${'x'.repeat(6000)}`, `/search?from=${'x'.repeat(6000)}`, `/search?list=${'x'.repeat(6000)}`,
    '/search?after=0000-01-01', '/search?before=9999-12-31', '/search?after=2026-02-30', '/search?after=-001-01-01', '/search?before=1969-12-31&q=hello',
    '/search?q=%', '/search?q=%zz', '/search?q=%%%', '/search?from=%5C', '/search?from=%25_%5C%25',
    '/lists/dev/?page=99999999999', '/lists/dev/2026-11/?page=100000', '/lists/dev/2026-11/?page=1e9', '/lists/dev/0000-00/', '/lists/dev/9999-12.mbox',
    '/lists/dev/thread/999999999999999', '/lists/dev/thread/99999999999999999999', '/lists/dev/thread/1.mbox?page=2',
    `/lists/${'x'.repeat(5000)}/`, `/message-id/${'x'.repeat(5000)}@example.org`, `/message-id/raw/${'x'.repeat(5000)}`,
    '/message-id/attachment/hello@example.org/99999999999999999999/x', '/message-id/attachment/hello@example.org/-1/x', '/message-id/hello@example.org?list=%25&view=%3C',
    '/message-id/%', '/message-id/%3C%3E', '/message-id/%3C', '/lists/%', '/lists/dev/%zz', '/u/x', `/u/${'x'.repeat(5000)}`, `/confirm/${'a'.repeat(5000)}`,
  ];
  it.each(odd)('%s is answered without a 500', async (url) => {
    const res = await get(url);
    expect(res.status, url.slice(0, 80)).toBeLessThan(500);
  });

  it('refuses a huge admin id with 404, not a database error', async () => {
    expect((await admin.get('/admin/lists/dev/held/99999999999999999999')).status).toBe(404);
  });
});

describe('search input, by property', () => {
  // Strings that stress websearch syntax, mixed with anything at all.
  const operators = fc.array(fc.constantFrom('-', '- ', '-!', '"', ' or ', '!', '(', ')', '<', '<->', '&', '|', ':*', '\\', "'", 'a', 'vacuum', ' ', '\t', '\u00a0', '%'), { maxLength: 120 }).map((a) => a.join(''));
  const anything = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), operators, fc.string({ unit: 'grapheme', maxLength: 40 }));
  const field = fc.constantFrom('q', 'list', 'from', 'after', 'before');

  it('answers any string as q, list, from, after or before with 200 or 400', async () => {
    await fc.assert(
      fc.asyncProperty(field, anything, fc.boolean(), async (name, value, withQ) => {
        const extra = withQ && name !== 'q' ? '&q=vacuum' : '';
        const res = await get(`/search?${name}=${utf8(value)}${extra}`);
        await res.arrayBuffer();
        return res.status === 200 || res.status === 400;
      }),
      { numRuns: 300 },
    );
  });

  it('answers any bytes at all in the query string with 200 or 400', async () => {
    await fc.assert(
      fc.asyncProperty(field, fc.uint8Array({ maxLength: 40 }), async (name, bytes) => {
        const res = await get(`/search?${name}=${percent(bytes)}`);
        await res.arrayBuffer();
        return res.status === 200 || res.status === 400;
      }),
      { numRuns: 200 },
    );
  });
});

describe('every route, by property', () => {
  const publicRoutes = [
    '/lists/{}/', '/lists/dev/{}/', '/lists/dev/{}', '/lists/dev/thread/{}', '/lists/{}/feed.atom', '/lists/dev/{}.mbox', '/message-id/{}', '/message-id/raw/{}',
    '/message-id/attachment/{}/1/x', '/message-id/attachment/hello@example.org/{}/x', '/lists/{}/subscribe', '/u/{}', '/confirm/{}', '/login/link/{}',
    '/login/reset/{}', '/?page={}', '/lists/dev/2026-11/?page={}', '/message-id/hello@example.org?view={}&images={}&list={}', '/login?next={}&email={}',
  ];
  const adminRoutes = [
    '/admin/lists/{}/', '/admin/lists/dev/members?q={}&mode={}&status={}&page={}', '/admin/lists/dev/members/{}', '/admin/lists/dev/held/{}', '/admin/lists/dev/held?page={}',
    '/admin/lists/dev/messages?q={}&page={}', '/admin/audit?page={}', '/admin/lists/dev/audit?page={}', '/admin/lists/{}/settings', '/admin/lists/dev/requests?page={}',
  ];
  const value = fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.constantFrom('0', '-1', '1e999', '99999999999999999999', '', '..', '%', 'NaN', '[]', 'dev', 'hello@example.org'));

  it('answers any value in any public route without a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...publicRoutes), value, async (route, v) => {
        const res = await get(route.replaceAll('{}', utf8(v)));
        await res.arrayBuffer();
        return res.status < 500;
      }),
      { numRuns: 300 },
    );
  });

  it('answers any value in any admin route without a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...adminRoutes), value, async (route, v) => {
        const res = await admin.get(route.replaceAll('{}', utf8(v)));
        return res.status < 500;
      }),
      { numRuns: 200 },
    );
  });
});
