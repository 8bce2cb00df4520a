/*
 * Plain word searches take one of two fixed plans (db/search-scan.ts), with the words' stems and
 * excerpts worked out in JavaScript (db/search-words.ts, db/search-excerpt.ts). None of that may
 * change what is found: the fixed plans give what a plan made for the values gives, the lists
 * a reader may not read stay out, and the JavaScript stemmer agrees with PostgreSQL's.
 */

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBatch } from '../src/db/archive-import.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { addMember } from '../src/db/members.ts';
import { hasSearchTerms, searchMessages, websearchText, type SearchQuery } from '../src/db/search.ts';
import { EXCERPT_CHARS, EXCERPT_LEAD, excerptWindow, markExcerpt } from '../src/db/search-excerpt.ts';
import { chooseScan, expectedMatches, scanFor, windowFor } from '../src/db/search-scan.ts';
import { queryLexemes, wordLexemes } from '../src/db/search-words.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { mail, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let devId: number;
const anonymous = { emails: [], siteAdmin: false };

// Words of mail, with the forms stemmers trip on: plurals, -ing, -ed, -y, -ies, -ly, -ness,
// apostrophes, capitals, digits, and the stop words the english configuration drops.
const WORDS = `The planner's estimates were wrong: indexes, indexing and indexed tables; vacuuming ran
  happily, daily, generously; replication slots replicate; queries queried querying; bloat bloated
  bloating; happiness, emptiness, fairly, transactional, transactions, conditional, conditionally,
  hopeful, hopefulness, relational, rationalize, organization, organizing, dying, lying, tying,
  skies, news, gas, this, is, was, has, does, doing, done, an, the, of, and, or, not, no, nor,
  SELECT, Update, WAL, pg15, 2026, x86_64, sizes, sized, analysis, analyses, analyze, analyzed,
  running, runner, runs, ran, cats, caresses, ponies, ties, tied, feed, agreed, plastered, bled,
  motoring, sing, hopping, filing, failing, tanned, falling, hissing, fizzed, hoping, communism,
  general, generate, generation, arsenal, commune, news, innings, outing, canning, proceed, exceed,
  succeed, herring, earring, atlas, cosmos, bias, andes, howe, idly, gently, ugly, early, only,
  singly, sky, dying, consign, consigned, consigning, consignment, knack, knackeries, kneel, kneels`;

/** every fiftieth message's author (and the private list's) */
const RARE_WRITER = 'Rare Writer <rare@example.org>';
/** of the rest, every third message's author, half of them with the domain in A-labels; Alice Example wrote the others */
const IDN_WRITER = (i: number) => `Joerg Writer <joerg@${i % 4 < 2 ? 'xn--mnchen-3ya.example' : 'münchen.example'}>`;
const author = (i: number) => (i % 50 === 3 ? RARE_WRITER : i % 3 === 1 ? IDN_WRITER(i) : undefined);

beforeAll(async () => {
  db = await testDatabase();
  const dev = await newList(db.pool, 'dev@lists.example.org');
  const staff = await newList(db.pool, 'staff@lists.example.org', 'private');
  devId = dev.id;
  // 600 messages: "common" in every one, "sometimes" in every tenth, "seldom" in three, and
  // a private list's message with all of them.
  const batch = [];
  for (let i = 0; i < 600; i++) {
    const extra = `${i % 10 === 0 ? ' sometimes' : ''}${i % 200 === 7 ? ' seldom' : ''}`;
    const raw = mail({
      id: `m-${i}@example.org`, subject: `Note ${i}`, body: `common words here${extra}, number ${i}\n`,
      date: new Date(Date.UTC(2026, 0, 1, 0, i)).toUTCString(), from: author(i),
    });
    batch.push({ raw, message: await parse(raw) });
  }
  await importBatch(db.pool, dev.id, batch);
  const secret = mail({ id: 'secret@example.org', subject: 'Secret', body: 'common sometimes seldom\n', date: new Date(Date.UTC(2026, 1, 1)).toUTCString(), from: RARE_WRITER });
  await importBatch(db.pool, staff.id, [{ raw: secret, message: await parse(secret) }]);
  await db.pool.query('analyze messages, list_messages');
});

afterAll(async () => {
  await db?.drop();
});

const query = (q: string, more: Partial<SearchQuery> = {}): SearchQuery => ({
  q, subject: null, listIds: null, reader: anonymous, from: [], after: null, before: null, sort: 'relevance', limit: 20, offset: 0, cap: 100, ...more,
});
const ids = (r: { hits: { message_id: string }[] }) => r.hits.map((h) => h.message_id);

describe('the two fixed plans of a word search', () => {
  it('walks the date index for a common word and asks the index for a rare one', async () => {
    expect(await chooseScan(db.readPool, 'common', 100)).toBe('walk');
    expect(await chooseScan(db.readPool, 'seldom', 100)).toBe('index');
    expect(await chooseScan(db.readPool, 'nosuchword', 100)).toBe('index');
    // Both words needed: as rare as the rarer, give or take.
    expect(await chooseScan(db.readPool, 'common seldom', 100)).toBe('index');
  });

  it('walks only for words the statistics list as common: an unlisted word asks the index, however big the archive', () => {
    // As ANALYZE saw 524,000 bench messages: the least listed lexeme in 1.2% of them. A word it
    // does not list was taken at half that (3,200 expected, 186 real) and walked the archive.
    const stats = { freq: new Map([['queri', 0.3], ['patch', 0.05], ['least', 0.0122]]), otherFreq: 0.0061, rows: 524_000 };
    expect(scanFor(stats, 'query', 100)).toBe('walk');
    expect(scanFor(stats, 'vorugim', 100)).toBe('index');
    expect(scanFor(stats, 'corneru xomata', 100)).toBe('index');
    expect(scanFor(stats, '"kotatemi support"', 100)).toBe('index');
    // A phrase of two listed words walks only where the index would cost more than the archive.
    expect(scanFor({ ...stats, freq: new Map([...stats.freq, ['vovezelu', 0.0267], ['falgim', 0.0672]]) }, '"vovezelu falgim"', 100)).toBe('index');
    // Two words that must both be there walk only past twice the bound: reckoned in 3,600 of
    // 524,000, they are asked of the index (and its recent window), where a walk would test the
    // archive's newest 15,000 or more; one word as common walks.
    expect(scanFor({ ...stats, freq: new Map([...stats.freq, ['vovezelu', 0.0267], ['falgim', 0.0672]]) }, 'vovezelu falgim', 100)).toBe('index');
    expect(scanFor({ ...stats, freq: new Map([...stats.freq, ['vovezelu', 0.0267], ['falgim', 0.0672]]) }, 'falgim', 100)).toBe('walk');
    expect(scanFor({ ...stats, freq: new Map([...stats.freq, ['vovezelu', 0.0267], ['falgim', 0.0672]]) }, 'falgim vovezelu or patch', 100)).toBe('walk');
    // Near the bound (1,005 of 10,000 messages): one word in 1,100 walks, in 900 asks the index;
    // two words reckoned in 1,239 ask the index, in 2,130 walk.
    const small = { freq: new Map([['aaa', 0.11], ['bbb', 0.09], ['ccc', 0.6], ['ddd', 0.275], ['eee', 0.16]]), otherFreq: 0.001, rows: 10_000 };
    expect(['aaa', 'bbb'].map((q) => scanFor(small, q, 100))).toEqual(['walk', 'index']);
    expect(['ccc eee', 'ccc ddd'].map((q) => [Math.round(expectedMatches(small, q)), scanFor(small, q, 100)])).toEqual([[1239, 'index'], [2130, 'walk']]);
    expect(scanFor({ ...stats, freq: new Map([...stats.freq, ['planner', 0.4]]) }, '"query planner"', 100)).toBe('walk');
    expect(scanFor(stats, '"query the"', 100)).toBe('walk');
    expect(scanFor(stats, 'query vorugim', 100)).toBe('index');
    expect(scanFor(stats, 'query or vorugim', 100)).toBe('walk');
    expect(scanFor(stats, 'patch', 100)).toBe('walk');
    // The count shown past the ranked set still takes an unlisted word at the planner's guess.
    expect(expectedMatches(stats, 'vorugim')).toBeCloseTo(3196, -1);
  });

  it('looks first in the newest part of a big archive, sized for a word the statistics do not list', () => {
    // As ANALYZE saw a million bench messages: the least listed lexeme in 1.2% of them, and the
    // dates' histogram of 101 bounds (here one a day).
    const dates = Array.from({ length: 101 }, (_, i) => new Date(Date.UTC(2026, 0, 1 + i)));
    const stats = { freq: new Map([['queri', 0.3], ['least', 0.0121]]), otherFreq: 0.00605, rows: 1_000_000, dates };
    // An unlisted word is taken in 6,050 messages: 202 of them are expected in the newest 3.3%,
    // widened to the histogram's 4%.
    expect(windowFor(stats, 'hafalha', 100)).toEqual({ since: dates[96], share: 0.04 });
    expect(windowFor(stats, 'hafalha domiwilu', 100)).toBeNull(); // both needed: too few for a window
    expect(windowFor(stats, '"hafalha domiwilu"', 100)).toBeNull(); // a phrase: far fewer than its words
    // A smaller archive: the window would be more than a tenth of it.
    expect(windowFor({ ...stats, rows: 100_000 }, 'hafalha', 100)).toBeNull();
    expect(windowFor({ ...stats, dates: [] }, 'hafalha', 100)).toBeNull();
  });

  it('reckons matches from the statistics as the planner does for one word', () => {
    const stats = { freq: new Map([['common', 1], ['sometim', 0.1]]), otherFreq: 0.001, rows: 600 };
    expect(expectedMatches(stats, 'common')).toBe(600);
    expect(expectedMatches(stats, 'sometimes')).toBeCloseTo(60);
    expect(expectedMatches(stats, 'seldom')).toBeCloseTo(0.6);
    // An alternative widens, a word after a minus does not narrow the reckoning.
    expect(expectedMatches(stats, 'seldom or sometimes')).toBeGreaterThan(60);
    expect(expectedMatches(stats, 'sometimes -common')).toBeCloseTo(60);
  });

  /** what the anonymous reader may find: the matches in the public list, counted by the database */
  const readableCount = async (q: string) => (await db.pool.query<{ n: number }>(
    `select count(*)::int as n from messages m join list_messages lm on lm.message_id = m.id
      where lm.list_id = $1 and lm.hidden_at is null and m.tsv @@ websearch_to_tsquery('listkeeper', $2)`, [devId, q])).rows[0].n;
  /** message i is dated minute i of 2026 */
  const minute = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, i));

  for (const q of ['common', 'sometimes', 'seldom', '"common words"', 'seldom or sometimes', 'sometimes -seldom', 'common sometimes']) {
    it(`finds the same for ${q} whichever way it reads, and what a plan made for the values finds`, async () => {
      const walk = await searchMessages(db, query(q, { scan: 'walk' }));
      const index = await searchMessages(db, query(q, { scan: 'index', window: null }));
      // The index shape looking first at the newest half (300 messages: enough of "common", too
      // few of the rest, which are then read in full) or the newest ten.
      const halfWindow = await searchMessages(db, query(q, { scan: 'index', window: { since: minute(300), share: 0.5 } }));
      const tenWindow = await searchMessages(db, query(q, { scan: 'index', window: { since: minute(590), share: 10 / 601 } }));
      // A list named: planned for its values, the path every other search takes.
      const planned = await searchMessages(db, query(q, { listIds: [devId] }));
      for (const r of [walk, index, halfWindow, tenWindow]) {
        expect(ids(r)).toEqual(ids(planned));
        expect(r.capped).toBe(planned.capped);
        expect(ids(r)).not.toContain('secret@example.org');
      }
      expect(walk.hits.length).toBeGreaterThan(0);
      // Walking counts what it ranked and estimates past it, as the planned statement does (the
      // larger of two reckonings for plain words).
      expect(walk.exact).toBe(planned.exact);
      if (planned.exact) expect(walk.total).toBe(planned.total);
      else expect(Math.abs(walk.total - planned.total)).toBeLessThanOrEqual(planned.total * 0.1);
      // The index shape read every match: its count is exact, of what this reader may read.
      const all = await readableCount(q);
      expect([index.total, index.exact]).toEqual([all, true]);
      expect([tenWindow.total, tenWindow.exact]).toEqual([all, true]);
      // A window that held enough scales its matches up: "common" is in each of its 300.
      if (all > 300) expect([halfWindow.total, halfWindow.exact]).toEqual([600, false]);
      else expect([halfWindow.total, halfWindow.exact]).toEqual([all, true]);
    });
  }

  it('counts exactly within the ranked set and estimates past it', async () => {
    const few = await searchMessages(db, query('seldom'));
    expect([few.total, few.exact]).toEqual([3, true]);
    // A reader of every archive: the statistics' estimate, which counts every list's messages.
    const many = await searchMessages(db, query('common', { reader: { emails: [], siteAdmin: true } }));
    expect(many.exact).toBe(false);
    expect(many.capped).toBe(true);
    expect(many.total).toBeGreaterThan(500);
    expect(many.total).toBeLessThan(700);
    // An anonymous reader may not read staff@ (private): the matches it may read, counted.
    const { rows } = await db.pool.query<{ n: number }>(
      `select count(distinct m.id)::int as n from messages m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id
        where l.address = 'dev@lists.example.org' and lm.hidden_at is null and m.tsv @@ websearch_to_tsquery('listkeeper', 'common')`);
    const readable = await searchMessages(db, query('common'));
    expect([readable.total, readable.exact, readable.capped]).toEqual([rows[0].n, true, true]);
  });

  it("checks each match's lists from list_messages_by_message alone, without reading the table", async () => {
    // One connection, in one transaction, with generic plans as the search pool keeps them: its
    // own counts of the blocks it asked for (the pg_stat_get_xact_ functions), which nothing else
    // running (autovacuum) adds to.
    const client = await db.pool.connect();
    const one = client as unknown as pg.Pool;
    try {
      await client.query('vacuum list_messages');
      await client.query('begin');
      await client.query(`set local plan_cache_mode = force_generic_plan`);
      const blocks = async () => {
        const { rows } = await client.query<{ heap: string; index: string }>(
          `select pg_stat_get_xact_blocks_fetched('list_messages'::regclass) as heap, pg_stat_get_xact_blocks_fetched('list_messages_by_message'::regclass) as index`);
        return { heap: Number(rows[0].heap), index: Number(rows[0].index) };
      };
      const before = await blocks();
      // Sixty matches, each checked for a readable, visible copy; the page's twenty, for their list.
      const r = await searchMessages({ ...db, readPool: one, searchPool: one }, query('sometimes', { scan: 'index' }));
      expect([r.total, r.hits.length]).toEqual([60, 20]);
      const after = await blocks();
      expect(after.index).toBeGreaterThan(before.index);
      // What the table's side still counts is its visibility map, which the index-only scans read,
      // not a page per match and hit (84 here with list_messages_message, of message_id alone).
      expect(after.heap - before.heap).toBeLessThan(10);
    } finally {
      await client.query('rollback');
      client.release();
    }
  });

  it('leaves out private lists unless the reader may read them', async () => {
    expect(ids(await searchMessages(db, query('seldom')))).not.toContain('secret@example.org');
    const admin = await searchMessages(db, query('seldom', { reader: { emails: [], siteAdmin: true } }));
    expect(ids(admin)).toContain('secret@example.org');
    expect(admin.hits.find((h) => h.message_id === 'secret@example.org')!.list_key).toBe('staff');
  });

  it('plans each fixed statement once per connection: generic plans only', async () => {
    for (let i = 0; i < 8; i++) await searchMessages(db, query(i % 2 ? 'common' : 'seldom'));
    // An author alone, on the first pages, has fixed texts too.
    for (let i = 0; i < 4; i++) await searchMessages(db, query('', { q: null, from: [i % 2 ? 'Rare Writer' : 'Alice Example'], sort: 'date', offset: 20 * (i % 2) }));
    const { rows } = await db.searchPool!.query<{ generic_plans: number; custom_plans: number }>(
      "select generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'search-%'",
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(r.custom_plans).toBe(0);
      expect(r.generic_plans).toBeGreaterThan(0);
    }
  });
});

describe('listings by date', () => {
  // Message i is dated minute i: newest first is i descending. A listing with few matches sorts
  // them; one with many walks the date index (search.ts, fewMatches(): 128 or 256 here).
  const newestFirst = (keep: (i: number) => boolean) => Array.from({ length: 600 }, (_, k) => 599 - k).filter(keep).map((i) => `m-${i}@example.org`);
  const cases: [string, Partial<SearchQuery>, string[]][] = [
    ['a word in every message (the walk)', { q: 'common' }, newestFirst(() => true)],
    ['a word in every tenth (sorted)', { q: 'sometimes' }, newestFirst((i) => i % 10 === 0)],
    ['an author of twelve (sorted)', { q: null, from: ['Rare Writer'] }, newestFirst((i) => i % 50 === 3)],
    ['an author of 392 (the walk)', { q: null, from: ['Alice Example'] }, newestFirst((i) => author(i) === undefined)],
    // Archived as sent: both spellings of the address, whichever is asked for.
    ['an address of 196 in U-labels and A-labels (a walk for each)', { q: null, from: ['joerg@münchen.example'] }, newestFirst((i) => author(i)?.startsWith('Joerg') === true)],
    ['an address of 196 asked in A-labels', { q: null, from: ['joerg@XN--MNCHEN-3YA.example'] }, newestFirst((i) => author(i)?.startsWith('Joerg') === true)],
    ['an address of 196 and a date (planned for its values)', { q: null, from: ['joerg@münchen.example'], after: new Date(Date.UTC(2025, 0, 1)) }, newestFirst((i) => author(i)?.startsWith('Joerg') === true)],
    ['an address of 196 and a word', { q: 'sometimes', from: ['joerg@münchen.example'] }, newestFirst((i) => i % 10 === 0 && author(i)?.startsWith('Joerg') === true)],
    ['an author of twelve and a word', { q: 'common', from: ['rare@example.org'] }, newestFirst((i) => i % 50 === 3)],
  ];
  for (const [label, more, expected] of cases) {
    it(`lists ${label} newest first, page after page, without the private list's message`, async () => {
      for (const offset of [0, 20, 40, 580]) {
        const r = await searchMessages(db, query('', { ...more, sort: 'date', offset }));
        expect(ids(r)).toEqual(expected.slice(offset, offset + 20));
        expect(r.more).toBe(offset + 20 < expected.length);
        expect(r.ranked).toBe(false);
      }
      const first = await searchMessages(db, query('', { ...more, sort: 'date' }));
      if (expected.length <= 100) expect([first.total, first.exact]).toEqual([expected.length, true]);
    });
  }
});

describe('an address in two spellings among many authors', () => {
  let many: TestDatabase;
  /** 3,000 messages by 100 authors, and every seventh by one whose domain is in A-labels in half of them */
  const byJoerg = (i: number) => i % 7 === 1;
  beforeAll(async () => {
    many = await testDatabase();
    const list = await newList(many.pool, 'many@lists.example.org');
    for (let start = 0; start < 3000; start += 500) {
      const batch = [];
      for (let i = start; i < start + 500; i++) {
        const from = byJoerg(i) ? IDN_WRITER(i) : `Writer ${i % 100} <w${i % 100}@example.net>`;
        const raw = mail({ id: `n-${i}@example.org`, subject: `Note ${i}`, body: `words ${i}\n`, date: new Date(Date.UTC(2026, 0, 1, 0, i)).toUTCString(), from });
        batch.push({ raw, message: await parse(raw) });
      }
      await importBatch(many.pool, list.id, batch);
    }
    await many.pool.query('analyze messages, list_messages');
  });

  afterAll(async () => {
    await many?.drop();
  });

  it('walks each spelling newest first on messages_from_date, as an address of one spelling, not the date index', async () => {
    // As the search pool plans it (generic plans), on one connection in one transaction: its own
    // counts of the blocks it asked of each index. With `from_email in (...)` the walk went down
    // the date index, testing each message, for the page's 21.
    const client = await many.pool.connect();
    const one = client as unknown as pg.Pool;
    try {
      await client.query('begin');
      await client.query('set local plan_cache_mode = force_generic_plan');
      const blocks = async () => {
        const { rows } = await client.query<{ by_author: string; by_date: string }>(
          `select pg_stat_get_xact_blocks_fetched('messages_from_date'::regclass) as by_author, pg_stat_get_xact_blocks_fetched('messages_date'::regclass) as by_date`);
        return { byAuthor: Number(rows[0].by_author), byDate: Number(rows[0].by_date) };
      };
      const expected = Array.from({ length: 3000 }, (_, k) => 2999 - k).filter(byJoerg).map((i) => `n-${i}@example.org`);
      const search = (offset: number) => searchMessages({ ...many, readPool: one, searchPool: one }, query('', { q: null, from: ['joerg@münchen.example'], sort: 'date', offset }));
      // Planning reads each index's metapage once per connection: not counted.
      await search(0);
      for (const offset of [0, 40]) {
        const before = await blocks();
        // 429 matches, more than the 256 taken in any order: the page comes from the walk.
        const r = await search(offset);
        const after = await blocks();
        expect(ids(r)).toEqual(expected.slice(offset, offset + 20));
        expect(new Set(r.hits.map((h) => h.from_email))).toEqual(new Set(['joerg@münchen.example', 'joerg@xn--mnchen-3ya.example']));
        expect(after.byAuthor).toBeGreaterThan(before.byAuthor);
        expect(after.byDate - before.byDate).toBe(0);
      }
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});

describe('words as PostgreSQL takes them', () => {
  it('stems every word as the listkeeper configuration does, and drops the same stop words', async () => {
    const words = [...new Set(WORDS.match(/[\p{L}\p{N}]+(?:'[\p{L}]+)?/gu)!)];
    const { rows } = await db.pool.query<{ word: string; lexemes: string[] }>(
      "select w as word, coalesce(array(select unnest(tsvector_to_array(to_tsvector('listkeeper', w))) order by 1), '{}') as lexemes from unnest($1::text[]) w",
      [words],
    );
    const differ = rows.filter((r) => JSON.stringify([...wordLexemes(r.word)].sort()) !== JSON.stringify(r.lexemes));
    expect(differ.map((r) => `${r.word}: js ${wordLexemes(r.word).join(',')} pg ${r.lexemes.join(',')}`)).toEqual([]);
    expect(rows.length).toBeGreaterThan(120);
  });

  it('splits CJK runs into the pairs search_text() indexes', async () => {
    expect(wordLexemes('日本語')).toEqual(['日本', '本語']);
    const { rows } = await db.pool.query<{ l: string[] }>("select tsvector_to_array(to_tsvector('listkeeper', search_text('日本語'))) as l");
    expect([...rows[0].l].sort()).toEqual(['日本', '本語']);
  });
});

describe('excerpts', () => {
  it('marks every form of the asked-for words, and nothing else', () => {
    const text = 'Autovacuum freezes old tuples. The wraparound horizon matters; freezing is cheap.';
    expect(markExcerpt(text, queryLexemes('freeze wraparound'))).toBe(
      'Autovacuum \u0001freezes\u0002 old tuples. The \u0001wraparound\u0002 horizon matters; \u0001freezing\u0002 is cheap.',
    );
    expect(markExcerpt(text, queryLexemes('"old tuples" -horizon'))).toContain('\u0001old\u0002 \u0001tuples\u0002');
    expect(markExcerpt(text, queryLexemes('nothing'))).toBe(text);
    // Forms whose stem ends otherwise than the word (Porter2 changes its last letters), and the
    // irregular ones whose stem starts otherwise (dying: die).
    expect(markExcerpt('The possibility is possible; generously, the generous reader stops dying and dies.', queryLexemes('possibilities generous die'))).toBe(
      'The \u0001possibility\u0002 is \u0001possible\u0002; \u0001generously\u0002, the \u0001generous\u0002 reader stops \u0001dying\u0002 and \u0001dies\u0002.',
    );
  });

  it('makes every run of white space one space, trims, and keeps its places past apostrophes, emoji and accents', () => {
    expect(markExcerpt('  Vacuum\u00a0\u00a0runs\t\tnightly;\r\n\r\n> vacuuming   again\u2028done  ', queryLexemes('vacuum'))).toBe(
      '\u0001Vacuum\u0002 runs nightly; > \u0001vacuuming\u0002 again done',
    );
    expect(markExcerpt("don't stop: it's the database's vacuum 😀😀 vacuumed, l'été vacuum", queryLexemes('vacuum'))).toBe(
      "don't stop: it's the database's \u0001vacuum\u0002 😀😀 \u0001vacuumed\u0002, l'été \u0001vacuum\u0002",
    );
    expect(markExcerpt('Große Übung für Köche. Zebraquirk!', queryLexemes('zebraquirk'))).toBe('Große Übung für Köche. \u0001Zebraquirk\u0002!');
  });

  it('marks CJK pairs inside a run', () => {
    expect(markExcerpt('これは日本語のテキストです', queryLexemes('日本語'))).toBe('これは\u0001日本語\u0002のテキストです');
  });

  it('gives two fragments of a long text around the first matches, joined by an ellipsis', () => {
    const filler = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');
    const text = `${filler(50)} needle ${filler(60)} needle ${filler(50)}`;
    const out = markExcerpt(text, queryLexemes('needle'));
    const parts = out.split(' … ');
    expect(parts).toHaveLength(2);
    for (const p of parts) {
      expect(p).toContain('\u0001needle\u0002');
      expect(p.split(' ').length).toBeLessThanOrEqual(30);
    }
    // Without a match: the beginning.
    expect(markExcerpt(filler(100), queryLexemes('needle'))).toBe(filler(30));
  });
});

describe('the excerpt window of a body sent whole', () => {
  it('is what the database cuts: characters counted as PostgreSQL counts them, only A-Z lowered', async () => {
    // Bodies of words with capitals, accents, a Kelvin sign (lower() of "C" leaves it, JavaScript
    // lowers it to k), a dotted capital I (two units lowered), emoji outside the BMP (one
    // character there, two units here), and the hint at the start, near it, far in, or absent.
    const pieces = ['Vacuum', 'vacuum', 'VACUUM', 'vac', 'index', 'İndex', '\u212Aelvin', 'kelvin', 'über', 'Ünïcode', '😀', '𝔘𝔫𝔦', 'x', '  ', '\n', 'word', 'Wörd', 'naïve', '日本語', 'end.'];
    let seed = 5;
    const next = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const bodies: string[] = [];
    for (let i = 0; i < 400; i++) bodies.push(Array.from({ length: next(400) }, () => pieces[next(pieces.length)]).join(next(3) === 0 ? '' : ' '));
    const hints = ['vacu', 'vac', 'index', 'kelvin', 'word', 'end', 'zzz', 'x', ''];
    const pairs = bodies.flatMap((b, i) => [hints[i % hints.length], hints[(i * 7 + 3) % hints.length]].map((h) => [b, h] as const));
    const { rows } = await db.pool.query<{ cut: string }>(
      `select substr(b, greatest(1, strpos(lower(b collate "C"), h) - ${EXCERPT_LEAD}), ${EXCERPT_CHARS}) as cut
         from unnest($1::text[], $2::text[]) with ordinality as t(b, h, n) order by n`,
      [pairs.map(([b]) => b), pairs.map(([, h]) => h)],
    );
    const differ = pairs.filter(([b, h], i) => excerptWindow(b, h) !== rows[i].cut);
    expect(differ).toEqual([]);
    // Cases the generated ones must hold, said plainly.
    expect(excerptWindow(`${'😀'.repeat(300)} Vacuum`, 'vacu')).toBe(`${'😀'.repeat(199)} Vacuum`);
    expect(excerptWindow(`${'a'.repeat(300)} \u212Aelvin kelvin`, 'kelvin').startsWith('a'.repeat(200 - 8))).toBe(true);
  });

  it('gives a search the excerpt it gave when the database cut it', async () => {
    // The same text as a short body (sent whole, cut here) and a long one (cut by the database).
    const text = `${'filler words '.repeat(30)}the Zebrafinch nests here ${'more words '.repeat(30)}`;
    const long = `${text}${'\npadding line of the long copy'.repeat(400)}`;
    const batch = [];
    for (const [id, body] of [['short-copy@example.org', text], ['long-copy@example.org', long]]) {
      const raw = mail({ id, subject: 'Copies', body, date: new Date(Date.UTC(2026, 2, 1)).toUTCString() });
      batch.push({ raw, message: await parse(raw) });
    }
    await importBatch(db.pool, devId, batch);
    const r = await searchMessages(db, query('zebrafinch'));
    expect(r.hits.map((h) => h.message_id).sort()).toEqual(['long-copy@example.org', 'short-copy@example.org']);
    const [a, b] = r.hits.map((h) => h.excerpt);
    expect(a).toContain('\u0001Zebrafinch\u0002');
    expect(a).toBe(b);
  });
});

describe('who may read an archive (can_read_archive)', () => {
  it('answers as before for every kind of reader, and is written into the query rather than called', async () => {
    const { rows: [staff] } = await db.pool.query<{ id: string }>("select id from lists where address = 'staff@lists.example.org'");
    await addMember(db.pool, Number(staff.id), 'member@example.org', 'each');
    await addListRole(db.pool, Number(staff.id), 'mod@example.org', 'moderator');
    const may = async (archive: string | null, emails: string[] | null, siteAdmin: boolean | null) =>
      (await db.pool.query<{ ok: boolean | null }>('select can_read_archive($1, $2, $3, $4) as ok', [staff.id, archive, emails, siteAdmin])).rows[0].ok;
    expect(await may('public', [], false)).toBe(true);
    expect(await may('private', [], true)).toBe(true);
    expect(await may('private', ['member@example.org'], false)).toBe(true);
    expect(await may('private', ['other@example.org', 'mod@example.org'], false)).toBe(true);
    expect(await may('private', ['other@example.org'], false)).toBe(false);
    // Never null, whatever is missing.
    expect(await may('private', [], null)).toBe(false);
    expect(await may('private', null, false)).toBe(false);
    expect(await may(null, [], false)).toBe(false);
    // Inlined: a public archive is answered by the expression, with no function call per list.
    const { rows } = await db.pool.query<{ 'QUERY PLAN': string }>("explain (costs off) select id from lists l where can_read_archive(l.id, l.archive, '{}'::text[], false)");
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toContain("(archive = 'public'::text) IS TRUE");
    expect(plan).not.toContain('can_read_archive');
  });
});

describe('whether a query has anything to search for', () => {
  it('answers plain queries without the database as the database would, and asks it otherwise', async () => {
    const vocabulary = ['the', 'a', 'of', 'and', 'or', 'OR', 'not', "don't", 'vacuum', 'Index', 'indexes', '42', '-7', 'x86', 'foo-bar', 'the-a', 'is-it', '-the', '-vacuum', '"the a"', '"vacuum of"', '"', '-', '--', 'can', 'will', 'just', 's', 't', 'über', 'a.b', 'x@y.org'];
    let seed = 11;
    const next = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const queries = new Set<string>(vocabulary);
    while (queries.size < 1500) queries.add(Array.from({ length: 1 + next(4) }, () => vocabulary[next(vocabulary.length)]).join(' '));
    let answeredHere = 0;
    for (const q of queries) {
      const { rows } = await db.pool.query<{ n: number }>("select numnode(websearch_to_tsquery('listkeeper', $1)) as n", [websearchText(q)]);
      const asked = await countingQueries(() => hasSearchTerms(db.pool, q));
      expect(asked.result, q).toBe(rows[0].n > 0);
      if (asked.queries === 0) answeredHere++;
    }
    // A third of these are plain and have a word the database keeps: found without asking it.
    expect(answeredHere).toBeGreaterThan(queries.size / 3);
  });
});

/** What `fn` returns, and how many statements it sent through db.pool. */
async function countingQueries<T>(fn: () => Promise<T>): Promise<{ result: T; queries: number }> {
  const original = db.pool.query.bind(db.pool);
  let queries = 0;
  (db.pool as { query: unknown }).query = (...args: Parameters<typeof original>) => {
    queries++;
    return original(...args);
  };
  try {
    return { result: await fn(), queries };
  } finally {
    (db.pool as { query: unknown }).query = original;
  }
}
