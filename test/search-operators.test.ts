import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBatch } from '../src/db/archive-import.ts';
import type { ListRow } from '../src/db/lists.ts';
import { hideMessage } from '../src/db/messages.ts';
import { parse } from '../src/mail/parse.ts';
import { searchMessages } from '../src/db/search.ts';
import { parseSearchQuery } from '../src/web/archive/search-operators.ts';
import { countText } from '../src/web/archive/search-page.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let web: RunningWeb;

const get = (path: string) => fetch(`${web.url}${path}`, { redirect: 'manual' });
const search = (q: string, extra = '') => get(`/search?q=${encodeURIComponent(q)}${extra}`);
/** Message-IDs of the hits, in the order shown. */
async function hits(q: string, extra = ''): Promise<string[]> {
  const res = await search(q, extra);
  expect(res.status, q).toBe(200);
  const html = await res.text();
  return html.includes('<ol class="hits">') ? [...html.matchAll(/<a class="subject" href="\/message-id\/([^"]+)"/g)].map((m) => decodeURIComponent(m[1])) : [];
}
async function countLine(q: string, extra = ''): Promise<string> {
  const html = await (await search(q, extra)).text();
  return /<p class="small count">([^<]*)/.exec(html)?.[1] ?? '';
}
const sorted = (a: string[]) => [...a].sort();

let dev: ListRow;
beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList(db.pool, 'dev@lists.example.org');
  const ops = await newList(db.pool, 'ops@lists.example.org');
  const staff = await newList(db.pool, 'staff@lists.example.org', 'members');
  const put = (list: ListRow, id: string, subject: string, body: string, date: string, from: string) =>
    archive(db.pool, list, mail({ id, subject, body, date, from }));
  const jane = 'Jane Doe <jane@example.net>';
  const bob = 'Bob Builder <bob@example.com>';
  await put(dev, 'a-1@example.org', 'Autovacuum tuning', 'Lower the scale factor for big tables.\n', 'Mon, 02 Mar 2026 10:00:00 +0000', jane);
  await put(dev, 'a-2@example.org', 'Re: Autovacuum tuning', 'The scale factor matters less than the cost limit. Vacuum twice.\n', 'Tue, 03 Mar 2026 10:00:00 +0000', bob);
  await put(dev, 'a-3@example.org', 'Index bloat', 'After vacuum the index is still large: autovacuum never shrinks it.\n', 'Wed, 04 Mar 2026 10:00:00 +0000', jane);
  await put(ops, 'o-1@example.org', 'Backups', 'Nightly autovacuum and backups.\n', 'Thu, 05 Mar 2026 10:00:00 +0000', bob);
  await put(dev, 'c-1@example.org', '日本語のテキスト検索', 'これは本文です。\n', 'Fri, 06 Mar 2026 10:00:00 +0000', 'Kenji <kenji@example.jp>');
  await put(dev, 'c-2@example.org', 'Chinese search', '中文的全文检索很重要。\n', 'Sat, 07 Mar 2026 10:00:00 +0000', 'Li <li@example.cn>');
  await put(dev, 'c-3@example.org', 'Thai', 'ภาษาไทยไม่มีช่องว่าง\n', 'Sun, 08 Mar 2026 10:00:00 +0000', 'Som <som@example.th>');
  // Its Message-ID looks like an operator: bare, it is the operator; in brackets, the message.
  await put(dev, 'from:carol@example.net', 'Odd id', 'Zebra crossing.\n', 'Mon, 09 Mar 2026 10:00:00 +0000', 'Carol <carol@example.net>');
  await put(dev, 'z-1@example.org', 'Zebra one', 'zebra\n', 'Tue, 10 Mar 2026 10:00:00 +0000', bob);
  await put(dev, 'z-2@example.org', 'Zebra two', 'zebra\n', 'Wed, 11 Mar 2026 10:00:00 +0000', bob);
  await put(staff, 's-1@example.org', 'Zebra budget', 'zebra money, autovacuum\n', 'Thu, 12 Mar 2026 10:00:00 +0000', jane);
  await hideMessage(db.pool, dev.id, 'z-2@example.org', 'spam', 'owner@example.org');
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('parseSearchQuery', () => {
  it('takes operators with bare and quoted values out of the words, and leaves the rest', () => {
    const p = parseSearchQuery('vacuum FROM:"Jane Doe" subject:"two words" list:dev after:2026-01-01 before:2026-12-31 "a from:phrase" url:x');
    expect(p.words).toBe('vacuum "a from:phrase" url:x');
    expect(p.ops).toEqual({ from: ['Jane Doe'], subject: ['two words'], list: ['dev'], after: ['2026-01-01'], before: ['2026-12-31'] });
    expect(parseSearchQuery('subject: x').ops.subject).toEqual(['x']);
    expect(parseSearchQuery('x from: ').empty).toEqual(['from']);
    expect(parseSearchQuery('notfrom:x').ops.from).toEqual([]);
  });
});

describe('search operators', () => {
  it('from: takes an address, part of a name, or a quoted name', async () => {
    expect(sorted(await hits('autovacuum from:jane@example.net'))).toEqual(['a-1@example.org', 'a-3@example.org']);
    expect(sorted(await hits('from:Builder'))).toEqual(['a-2@example.org', 'o-1@example.org', 'z-1@example.org']);
    expect(sorted(await hits('autovacuum from:"Jane Doe"'))).toEqual(['a-1@example.org', 'a-3@example.org']);
    expect(await hits('vacuum from:"Doe Jane"')).toEqual([]);
  });

  it('from: or the from field with an address finds its mailbox under either spelling of an international domain', async () => {
    const put = (id: string, date: string, from: string) => archive(db.pool, dev, mail({ id, subject: 'Partition pruning', body: 'Pruning partitions at plan time.\n', date, from }));
    await put('idn-1@example.org', 'Mon, 16 Mar 2026 09:00:00 +0000', 'Joerg <joerg@xn--mnchen-3ya.example>');
    await put('idn-2@example.org', 'Tue, 17 Mar 2026 09:00:00 +0000', 'Joerg <joerg@münchen.example>');
    await put('idn-3@example.org', 'Wed, 18 Mar 2026 09:00:00 +0000', 'Ann <ann@münchen.example>');
    // Archived as sent: one mailbox, its domain in A-labels in one message and in U-labels in the other.
    const { rows } = await db.pool.query<{ from_email: string }>("select from_email from messages where message_id in ('idn-1@example.org', 'idn-2@example.org') order by message_id");
    expect(rows.map((r) => r.from_email)).toEqual(['joerg@xn--mnchen-3ya.example', 'joerg@münchen.example']);
    const both = ['idn-2@example.org', 'idn-1@example.org'];
    for (const address of ['joerg@münchen.example', 'joerg@xn--mnchen-3ya.example', 'Joerg@XN--MNCHEN-3YA.example']) {
      expect(await hits(`from:${address}`), address).toEqual(both);
      expect(sorted(await hits(`pruning from:${address}`)), address).toEqual(sorted(both));
      expect(await hits('', `&from=${encodeURIComponent(address)}`), address).toEqual(both);
    }
    // Another mailbox of the domain is not the author's.
    expect(await hits('from:ann@xn--mnchen-3ya.example')).toEqual(['idn-3@example.org']);
  });

  it('from:x@y is the operator, not a Message-ID; a Message-ID alone still opens the message', async () => {
    const res = await search('from:carol@example.net');
    expect(res.status).toBe(200);
    expect(await hits('from:carol@example.net')).toEqual(['from:carol@example.net']);
    for (const q of ['a-3@example.org', '<a-3@example.org>', '<from:carol@example.net>']) {
      const r = await search(q);
      expect(r.status, q).toBe(302);
      expect(decodeURIComponent(r.headers.get('location')!), q).toBe(`/message-id/${q.replace(/[<>]/g, '')}`);
    }
  });

  it('subject: matches the subject only, a quoted value as a phrase', async () => {
    expect(sorted(await hits('subject:autovacuum'))).toEqual(['a-1@example.org', 'a-2@example.org']);
    expect(await hits('subject:"index bloat"')).toEqual(['a-3@example.org']);
    expect(await hits('subject:"bloat index"')).toEqual([]);
    expect(sorted(await hits('autovacuum subject:tuning'))).toEqual(['a-1@example.org', 'a-2@example.org']);
  });

  it('list:, after: and before: narrow, and combine with the form fields', async () => {
    expect(await hits('autovacuum list:ops')).toEqual(['o-1@example.org']);
    expect(await hits('autovacuum', '&list=ops')).toEqual(['o-1@example.org']);
    expect(await hits('autovacuum list:ops', '&list=dev')).toEqual([]);
    expect(sorted(await hits('autovacuum after:2026-03-03'))).toEqual(['a-2@example.org', 'a-3@example.org', 'o-1@example.org']);
    expect(await hits('autovacuum after:2026-03-03 before:2026-03-03')).toEqual(['a-2@example.org']);
    expect(await hits('autovacuum before:2026-03-03', '&after=2026-03-03')).toEqual(['a-2@example.org']);
    expect(await hits('autovacuum from:jane@example.net', '&after=2026-03-03')).toEqual(['a-3@example.org']);
    expect(await hits('autovacuum from:bob@example.com', '&from=Builder&list=ops')).toEqual(['o-1@example.org']);
  });

  it('answers a bad operator value with a 400 that names it', async () => {
    for (const [q, message] of [['vacuum after:2026-02-30', '"after:" must be a date'], ['vacuum before:yesterday', '"before:" must be a date'], ['vacuum from:', '"from:" needs a value'], ['list:nosuchlist', 'There is no list "nosuchlist"']]) {
      const res = await search(q);
      expect(res.status, q).toBe(400);
      expect(await res.text(), q).toContain(message.replace(/"/g, '&quot;'));
    }
    expect((await get('/search?q=vacuum&sort=sideways')).status).toBe(400);
    expect((await search('list:staff')).status).toBe(403);
  });

  it('answers a part of a name too short for the author index with a 400, and takes three letters or an address', async () => {
    // Without three letters or digits in a row the trigram index cannot help: every message was
    // read for each (0.35 s on 300,000 messages for from:zq, 0.7 s for nineteen of them).
    for (const q of ['vacuum from:jd', 'from:"j d"', 'from:%%', 'from:a.b']) {
      const res = await search(q);
      expect(res.status, q).toBe(400);
      expect(await res.text(), q).toContain('is too short to look for among authors: give three letters of a name in a row, or a whole address.');
    }
    expect((await get('/search?from=jd')).status).toBe(400);
    expect(sorted(await hits('from:jan'))).toEqual(['a-1@example.org', 'a-3@example.org']);
    expect(await hits('autovacuum from:jane@example.net', '&after=2026-03-03')).toEqual(['a-3@example.org']);
  });

  it('keeps an unknown word: as text', async () => {
    expect(await hits('colour:autovacuum')).toEqual([]);
    expect(sorted(await hits('tuning:autovacuum'))).toEqual(['a-1@example.org', 'a-2@example.org']);
  });
});

describe('search words', () => {
  it('finds an author by name', async () => {
    expect(sorted(await hits('jane doe'))).toEqual(['a-1@example.org', 'a-3@example.org']);
    expect(await hits('kenji')).toEqual(['c-1@example.org']);
    // Addresses are not words: jane's address finds nothing but by from:.
    expect(await hits('example.net')).toEqual([]);
  });

  it('finds Chinese, Japanese and Thai words inside text without spaces, in subjects and bodies', async () => {
    expect(await hits('日本語')).toEqual(['c-1@example.org']);
    expect(await hits('テキスト検索')).toEqual(['c-1@example.org']);
    expect(await hits('本文')).toEqual(['c-1@example.org']);
    expect(await hits('全文检索')).toEqual(['c-2@example.org']);
    expect(await hits('"检索"')).toEqual(['c-2@example.org']);
    expect(await hits('ภาษาไทย')).toEqual(['c-3@example.org']);
    expect(await hits('日本人')).toEqual([]);
    expect(await hits('检索中文')).toEqual([]);
  });

  it('sorts by relevance when there are words, by date on request', async () => {
    // relevance: the subject matches (A) above the body ones (D)
    const byRank = await hits('autovacuum');
    expect(sorted(byRank.slice(0, 2))).toEqual(['a-1@example.org', 'a-2@example.org']);
    expect(byRank).toHaveLength(4);
    expect(await hits('autovacuum', '&sort=date')).toEqual(['o-1@example.org', 'a-3@example.org', 'a-2@example.org', 'a-1@example.org']);
    expect(await hits('autovacuum', '&sort=relevance')).toEqual(byRank);
    const html = await (await search('autovacuum', '&sort=date')).text();
    expect(html).toContain('<option value="date" selected>');
  });

  it('never finds or counts a hidden message or one in a list the reader may not read', async () => {
    expect(await hits('zebra')).toEqual(['z-1@example.org', 'from:carol@example.net']);
    expect(await countLine('zebra')).toBe('2 messages found.');
    expect(await countLine('zebra', '&sort=date')).toBe('2 messages found, newest first.');
    expect(await hits('budget')).toEqual([]);
  });

  it('answers hostile input with a page or a clear 400, never an error', async () => {
    const cases = [
      'x'.repeat(5000), 'a '.repeat(400), `${'from:a '.repeat(30)}vacuum`, 'from:% vacuum', 'from:_ vacuum', 'from:\\',
      `'); drop table messages; --`, `subject:"unterminated`, '"""', '-'.repeat(80) + 'vacuum', 'subject:-', 'list:%', `from:"${'%'.repeat(300)}"`,
      '(((( a | b ))) & !c <-> d:*', 'after:9999-12-31', 'before:0001-01-01',
    ];
    for (const q of cases) {
      const res = await search(q);
      expect([200, 400], q.slice(0, 40)).toContain(res.status);
      const html = await res.text();
      if (res.status === 400) expect(html, q.slice(0, 40)).toMatch(/class="error"/);
    }
    expect((await search(`${'from:a '.repeat(30)}vacuum`)).status).toBe(400);
    // '%' and '_' are plain characters (alone they are too short to look for: 400 above).
    expect(await hits('from:jan% vacuum')).toEqual([]);
    expect(await hits('from:jan_ vacuum')).toEqual([]);
  });
});

describe('the count', () => {
  it('counts a ranked search that read every match exactly, and estimates a listing by date past what it sorted', async () => {
    const list = await newList(db.pool, 'many@lists.example.org');
    const batch = [];
    for (let i = 0; i < 450; i++) {
      const raw = mail({ id: `m-${i}@example.org`, subject: `Item ${i}`, body: 'abundant words\n', date: new Date(Date.UTC(2025, 0, 1, 0, i)).toUTCString() });
      batch.push({ raw, message: await parse(raw) });
    }
    await importBatch(db.pool, list.id, batch);
    await db.pool.query('analyze messages, list_messages');
    // A word the statistics did not list when the search read them: the index shape reads, sorts
    // and counts all 450 matches (search-scan.ts), and says so.
    expect(await countLine('abundant')).toMatch(/^450 messages found: the 100 most recent are ranked/);
    // By date, 128 matches are sorted and the rest walked: past those, a reader who may read every
    // archive gets an estimate; an anonymous one here (staff@ is members-only) a count of what it
    // may read, since the estimates count every list's messages.
    const everything = await searchMessages(db, { q: 'abundant', subject: null, listIds: null, reader: { emails: [], siteAdmin: true }, from: [], after: null, before: null, sort: 'date', limit: 20, offset: 0, cap: 100 });
    expect(everything.exact).toBe(false);
    expect(everything.total).toBeGreaterThanOrEqual(400);
    expect(everything.total).toBeLessThanOrEqual(500);
    expect(countText(everything.total, false)).toMatch(/^About [\d,]+ messages match$/);
    expect(await countLine('abundant', '&sort=date')).toMatch(/^450 messages found/);
    expect(await countLine('abundant', '&page=3')).toMatch(/^450 messages found/);
    expect(await countLine('"item 7"')).toBe('1 message found.');
    // The last ranked page links on to the matches by date that follow it.
    const fifth = await (await search('abundant', '&page=5')).text();
    expect(fifth).toContain('rel="next" href="/search?q=abundant&amp;page=6"');
    expect(await hits('abundant', '&page=6')).toHaveLength(20);
  });

  it('never counts, nor estimates from, messages of a list the reader may not read', async () => {
    const pub = await newList(db.pool, 'walrus-pub@lists.example.org');
    const secret = await newList(db.pool, 'walrus-priv@lists.example.org', 'private');
    const put = async (list: ListRow, n: number, prefix: string) => {
      const batch = [];
      for (let i = 0; i < n; i++) {
        const raw = mail({ id: `${prefix}-${i}@example.org`, subject: `Walrus ${i}`, body: 'a walrus on the beach\n', date: new Date(Date.UTC(2025, 1, 1, 0, i)).toUTCString() });
        batch.push({ raw, message: await parse(raw) });
      }
      await importBatch(db.pool, list.id, batch);
    };
    await put(pub, 130, 'wp');
    await put(secret, 400, 'ws');
    await db.pool.query('analyze messages, list_messages');
    // Statistics and the planner count 530; an anonymous reader may read 130.
    expect(await countLine('walrus')).toMatch(/^130 messages found/);
    expect(await countLine('walrus', '&sort=date')).toMatch(/^130 messages found/);
    expect(await countLine('list:walrus-pub walrus')).toMatch(/^130 messages found/);
    expect(await countLine('walrus or nosuchwordatall')).toMatch(/^130 messages found/);
  });

  it('finds a word typed with a combining accent as the archive holds it, and says so when subject: has only common words', async () => {
    await archive(db.pool, dev, mail({ id: 'cafe-1@example.org', subject: 'Coffee', body: 'Meet at the café near the station.\n', date: 'Tue, 17 Mar 2026 10:00:00 +0000', from: 'Ann <ann@example.org>' }));
    expect(await hits('cafe\u0301')).toEqual(['cafe-1@example.org']);
    expect(await hits('café')).toEqual(['cafe-1@example.org']);
    const res = await search('autovacuum subject:the');
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('There is nothing to search for in &quot;subject:the&quot;');
    expect(sorted(await hits('autovacuum subject:tuning'))).toEqual(['a-1@example.org', 'a-2@example.org']);
  });

  it('makes <mark> only of the matched words, never of a body\'s own control characters', async () => {
    await archive(db.pool, dev, mail({ id: 'ctl-1@example.org', subject: 'Marks', body: 'hello \u0001fake highlight\u0002 and pangolin \u0001 unclosed\n', date: 'Mon, 16 Mar 2026 10:00:00 +0000', from: 'Ctl <ctl@example.org>' }));
    for (const path of ['/search?q=pangolin', '/search?from=Ctl']) {
      const html = await (await get(path)).text();
      expect(html, path).toContain('fake highlight');
      expect(html, path).not.toContain('<mark>fake');
      expect(html.match(/<mark>/g) ?? [], path).toHaveLength(path.includes('pangolin') ? 1 : 0);
    }
  });
});

describe('deep pages (last: it adds 10,001 messages)', () => {
  it('goes 500 pages deep, says so on the last, and answers 400 past it', async () => {
    // Each page past the ranked set steps over every match before it: pages 15,000 and 100,000
    // of a word in 300,000 messages took 0.4 and 0.25 s, each another URL past the page cache.
    const deep = await newList(db.pool, 'deep@lists.example.org');
    await db.pool.query(
      `with m as (
         insert into messages (message_id, raw, size, subject, from_email, date, body, thread_id)
         select 'deep-' || g || '@example.org', r, length(r), 'multitudinous ' || g, 'deep@example.org', timestamptz '2026-06-01' - g * interval '1 minute', 'multitudinous', nextval('thread_ids')
           from generate_series(1, 10001) g,
                lateral (select convert_to('Message-ID: <deep-' || g || E'@example.org>\\r\\n\\r\\nmultitudinous\\r\\n', 'UTF8') as r) x
         returning id, date)
       insert into list_messages (list_id, message_id, date) select $1, id, date from m`, [deep.id]);
    const before = await (await search('multitudinous', '&sort=date&page=499')).text();
    expect(before).toContain('rel="next" href="/search?q=multitudinous&amp;sort=date&amp;page=500"');
    const last = await search('multitudinous', '&sort=date&page=500');
    expect(last.status).toBe(200);
    const html = await last.text();
    expect(html.match(/<a class="subject"/g)).toHaveLength(20);
    expect(html).toContain("This is as deep as a search's pages go");
    expect(html).not.toContain('rel="next"');
    const past = await search('multitudinous', '&sort=date&page=501');
    expect(past.status).toBe(400);
    expect(await past.text()).toContain('Search results go 500 pages deep. To see older matches, narrow the search: before:, after:, a list or an author.');
    expect(await hits('multitudinous', '&sort=date&before=2026-05-25')).toHaveLength(20);
  });
});
