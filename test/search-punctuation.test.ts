import { afterAll, beforeAll, expect, it } from 'vitest';
import { runConversionBatch } from '../src/core/conversions.ts';
import { searchVectors } from '../src/core/conversions/search-vectors.ts';
import type { ListRow } from '../src/db/lists.ts';
import { punctuationGlued } from '../src/db/search-vectors.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * Search finds a word however it is punctuated, on a database whose LC_CTYPE is C (the embedded
 * default, where PostgreSQL's parser takes every character beyond ASCII for a letter) as on one
 * with a UTF-8 locale (sql/0075, search_text()); and the search-vectors job gives messages indexed
 * before their vectors again. The suite runs against both kinds (.ci/run): on a C database the
 * searches below found nothing before the change.
 */

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;

async function hits(q: string): Promise<string[]> {
  const html = await (await fetch(`${web.url}/search?q=${encodeURIComponent(q)}`)).text();
  return [...html.matchAll(/<a class="subject" href="\/message-id\/([^"]+)"/g)].map((m) => decodeURIComponent(m[1])).sort();
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList(db.pool, 'dev@lists.example.org');
  await archive(db.pool, dev, mail({
    id: 'typographic@example.org', subject: '“Quoted” subjects — and dashes', date: 'Mon, 02 Nov 2026 10:00:00 +0000',
    body: 'He said “vacuumfreeze” was slow—really… «bienvenue» ¿qué? 50×60 pre‑release Post\u00adgres™ deploy🎉done 「東京」\n',
  }));
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

it('finds words written against typographic quotes, dashes, ellipses, guillemets, symbols and emoji', async () => {
  for (const q of ['vacuumfreeze', 'slow', 'really', 'bienvenue', 'qué', 'release', 'postgres', 'deploy', 'done', 'quoted', 'dashes', '東京']) {
    expect(await hits(q), q).toEqual(['typographic@example.org']);
  }
  // The query's own typographic quotes are punctuation too.
  expect(await hits('“vacuumfreeze”')).toEqual(['typographic@example.org']);
});

it('gives messages indexed before the change their vectors again, on a C database; elsewhere it has nothing to do', async () => {
  // As a release before sql/0075 indexed it: the text as it is, punctuation and all.
  await db.pool.query(`update messages set tsv = setweight(to_tsvector('listkeeper', subject), 'A') || setweight(to_tsvector('listkeeper', body), 'D') where message_id = 'typographic@example.org'`);
  await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'search-vectors'`);
  const glued = await punctuationGlued(db.pool);
  if (glued) expect(await hits('vacuumfreeze')).toEqual([]);
  let batches = 0;
  for (let r = await runConversionBatch(db.pool, 'test', { batchRows: 10 }, [searchVectors]); r.kind !== 'done'; r = await runConversionBatch(db.pool, 'test', { batchRows: 10 }, [searchVectors])) {
    expect(r.kind).toBe('batch');
    if (++batches > 10) throw new Error('the job does not end');
  }
  const { rows: [job] } = await db.pool.query<{ changed: number; done: boolean }>(`select rows_changed::int as changed, done_at is not null as done from conversions where name = 'search-vectors'`);
  expect(job).toEqual({ changed: glued ? 1 : 0, done: true });
  if (glued) {
    expect(await hits('vacuumfreeze')).toEqual(['typographic@example.org']);
    expect(await hits('bienvenue')).toEqual(['typographic@example.org']);
  }
});

it('a pass over messages whose vectors are right changes nothing, and leaves the archive\'s page cache alone', async () => {
  await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'search-vectors'`);
  const version = async () => (await db.pool.query<{ version: string }>('select version from archive_version()')).rows[0].version;
  const before = await version();
  // On a C database (the embedded one: elsewhere the job has nothing to do) every message that holds such punctuation is updated again (its vector comes
  // out the same); the others must not be: a batch of those changes nothing.
  await db.pool.query(`update messages set subject = 'Plain subject', body = 'plain body' where message_id = 'typographic@example.org'`);
  const after = await version();
  let batches = 0;
  for (let r = await runConversionBatch(db.pool, 'test', { batchRows: 10 }, [searchVectors]); r.kind !== 'done'; r = await runConversionBatch(db.pool, 'test', { batchRows: 10 }, [searchVectors])) {
    if (++batches > 10) throw new Error('the job does not end');
  }
  // Every UPDATE of messages counts as an archive change (sql/0011), one of no row too.
  expect(after).not.toBe(before);
  expect(await version()).toBe(after);
  const { rows: [job] } = await db.pool.query(`select rows_changed::int as changed, done_at is not null as done from conversions where name = 'search-vectors'`);
  expect(job).toEqual({ changed: 0, done: true });
});
