import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBatch } from '../src/db/archive-import.ts';
import type { ListRow } from '../src/db/lists.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { searchHitsOf } from '../bench/listkeeper-archive.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let web: RunningWeb;

const get = (path: string) => fetch(`${web.url}${path}`, { redirect: 'manual' });
/** Message-IDs of the hits, in the order shown. */
async function hits(query: string): Promise<string[]> {
  const html = await (await get(`/search?${query}`)).text();
  const list = html.slice(html.indexOf('<ol class="hits">'));
  return html.includes('<ol class="hits">') ? [...list.matchAll(/<a class="subject" href="\/message-id\/([^"]+)"/g)].map((m) => decodeURIComponent(m[1])) : [];
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  const dev = await newList(db.pool, 'dev@lists.example.org');
  const ops = await newList(db.pool, 'ops@lists.example.org');
  const staff = await newList(db.pool, 'staff@lists.example.org', 'members');
  const put = (list: ListRow, id: string, subject: string, body: string, date = 'Mon, 02 Nov 2026 10:00:00 +0000', from?: string) =>
    archive(db.pool, list, mail({ id, subject, body, date, from }));
  await put(dev, 'pg-1@example.org', 'Vacuum freezing explained', 'Autovacuum freezes old tuples. The wraparound horizon matters.\n');
  await put(dev, 'pg-2@example.org', 'Planner question', 'Why does the planner choose a sequential scan? Vacuum ran yesterday.\n', 'Tue, 03 Nov 2026 10:00:00 +0000');
  await put(dev, 'pg-3@example.org', 'Bloat after updates', 'Indexes grow after heavy updates; reindex concurrently helps.\n');
  await put(dev, 'pg-4@example.org', 'Logical replication', 'Logical decoding with a replication slot. Physical replication differs.\n');
  await put(dev, 'pg-5@example.org', 'Checkpoint tuning', 'Checkpoint timeout and max wal size. Ask bob@tuning.example or see https://wiki.tuning.example/page\n', undefined, 'Bob Builder <bob@example.com>');
  await put(dev, 'pg-6@example.org', 'Old vacuum story', 'vacuum full locks the table\n', 'Wed, 10 Jun 2025 10:00:00 +0000');
  await put(ops, 'ops-1@example.org', 'Vacuum on the ops cluster', 'It ran for hours.\n');
  await put(staff, 'staff-1@example.org', 'Vacuum budget', 'Money for vacuum.\n');
  // A word far into a body, capitalised, after text of two-byte characters.
  await put(dev, 'pg-7@example.org', 'Notes', `${'Große Übung für Köche. '.repeat(45)}\nThe Zebraquirk setting matters.\n`);
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('full-text search', () => {
  it('finds a word in subjects and bodies and ranks subject matches above body matches', async () => {
    const found = await hits('q=vacuum');
    expect(found.sort()).toEqual(['ops-1@example.org', 'pg-1@example.org', 'pg-2@example.org', 'pg-6@example.org'].sort());
    const ranked = await hits('q=vacuum');
    expect(ranked[ranked.length - 1]).toBe('pg-2@example.org');
  });

  it('matches other forms of a word', async () => {
    expect(await hits('q=index')).toEqual(['pg-3@example.org']);
    expect(await hits('q=freeze')).toEqual(['pg-1@example.org']);
  });

  it('matches a quoted phrase only where its words stand together', async () => {
    expect(await hits(`q=${encodeURIComponent('"logical decoding"')}`)).toEqual(['pg-4@example.org']);
    expect(await hits(`q=${encodeURIComponent('"physical decoding"')}`)).toEqual([]);
    expect(await hits('q=physical+decoding')).toEqual(['pg-4@example.org']);
  });

  it('finds either word with or, and leaves out words after a minus', async () => {
    expect((await hits('q=checkpoint+or+wraparound')).sort()).toEqual(['pg-1@example.org', 'pg-5@example.org']);
    expect((await hits('q=vacuum+-freezing')).sort()).toEqual(['ops-1@example.org', 'pg-2@example.org', 'pg-6@example.org']);
  });

  it('highlights the matching words in excerpts', async () => {
    const html = await (await get('/search?q=wraparound')).text();
    expect(html).toContain('<mark>wraparound</mark>');
  });

  it('starts an excerpt at the first match, whatever its case, past characters of several bytes', async () => {
    // 1,000 characters before the word: an excerpt from the start would not reach it, and one
    // placed by bytes instead of characters would start after it.
    const html = await (await get('/search?q=zebraquirk')).text();
    expect(html).toContain('<mark>Zebraquirk</mark> setting matters');
  });

  it('filters by list, by author address or name, and by date', async () => {
    expect(await hits('q=vacuum&list=ops')).toEqual(['ops-1@example.org']);
    expect(await hits('q=checkpoint&from=bob@example.com')).toEqual(['pg-5@example.org']);
    expect(await hits('q=checkpoint&from=alice@example.org')).toEqual([]);
    expect(await hits('from=Builder')).toEqual(['pg-5@example.org']);
    expect((await hits('q=vacuum&after=2026-01-01')).sort()).toEqual(['ops-1@example.org', 'pg-1@example.org', 'pg-2@example.org']);
    expect(await hits('q=vacuum&before=2025-12-31')).toEqual(['pg-6@example.org']);
    expect(await hits('q=vacuum&after=2026-11-03&before=2026-11-03')).toEqual(['pg-2@example.org']);
    expect(await (await get('/search?q=vacuum&after=yesterday')).text()).toContain('must be a date');
  });

  it('opens the message when the query is its Message-ID, with or without brackets', async () => {
    for (const q of ['pg-3@example.org', '<pg-3@example.org>', ' <pg-3@example.org> ']) {
      const res = await get(`/search?q=${encodeURIComponent(q)}`);
      expect(res.status, q).toBe(302);
      expect(res.headers.get('location')).toBe('/message-id/pg-3@example.org');
    }
    expect((await get('/search?q=staff-1@example.org')).status).toBe(200);
  });

  it('does not search addresses, host names and URLs as words', async () => {
    expect(await hits('q=wiki')).toEqual([]);
    expect(await hits('q=tuning.example')).toEqual([]);
    expect(await hits('q=tuning')).toEqual(['pg-5@example.org']);
  });

  it('says so when a query has only stop words', async () => {
    expect(await (await get('/search?q=the+and+of')).text()).toContain('nothing to search for');
  });

  it('searches a members-only list for its members only', async () => {
    expect(await hits('q=budget')).toEqual([]);
    expect((await get('/search?q=budget&list=staff')).status).toBe(403);
  });

  it('ranks only the most recent matches of a very common word, says so, and lists older ones by date after them', async () => {
    const list = await newList(db.pool, 'busy@lists.example.org');
    const batch = [];
    for (let i = 0; i < 1005; i++) {
      const raw = mail({ id: `busy-${i}@example.org`, subject: i === 1004 ? 'plentiful plentiful' : `Note ${i}`, body: 'plentiful words here\n', date: new Date(Date.UTC(2026, 0, 1, 0, i)).toUTCString() });
      batch.push({ raw, message: await parse(raw) });
    }
    await importBatch(db.pool, list.id, batch);
    await db.pool.query('analyze messages, list_messages');
    const html = await (await get('/search?q=plentiful')).text();
    // The statement that ranks the newest 100 counts every match it read: exact, not an estimate.
    expect(html).toContain('1,005 messages found: the 100 most recent are ranked');
    expect(searchHitsOf(html)).toEqual({ hits: 1005, estimated: false });
    expect(html.match(/<a class="subject"/g)!.length).toBe(20);
    expect((await hits('q=plentiful'))[0]).toBe('busy-1004@example.org');
    // The ranked set is the 100 most recent; then the older ones follow by date, none twice.
    const seen = new Set<string>();
    for (let page = 1; page <= 51; page++) for (const id of await hits(`q=plentiful&page=${page}`)) seen.add(id);
    expect(seen.size).toBe(1005);
    const later = await (await get('/search?q=plentiful&page=6')).text();
    expect(later).toContain('older matches here, newest first');
    expect((await hits('q=plentiful&page=6'))[0]).toBe('busy-904@example.org');
    expect(later).toContain('href="/search?q=plentiful&amp;page=7"');
  });

  it('states its count in the words bench/search-compare.ts reads for recall', async () => {
    expect(searchHitsOf(await (await get('/search?q=vacuum')).text())).toEqual({ hits: 4, estimated: false });
    expect(searchHitsOf(await (await get('/search?q=index')).text())).toEqual({ hits: 1, estimated: false });
    expect(searchHitsOf(await (await get('/search?q=nosuchwordanywhere')).text())).toEqual({ hits: 0, estimated: false });
  });
});
