import fs from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runConversionBatch, runConversions } from '../src/core/conversions.ts';
import { oneLineFields } from '../src/core/conversions/one-line-fields.ts';
import type { ListRow } from '../src/db/lists.ts';
import { log } from '../src/log.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * Subjects and author names stored before oneLine() took out bidirectional controls (sql/0084)
 * lose them: archived messages by the one-line-fields job, held posts by the migration.
 */

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
const RLO = '\u202e';
const FSI = '\u2068';

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList(db.pool, 'dev@lists.example.org');
  await archive(db.pool, dev, mail({ id: 'spoof@example.org', subject: 'Re: plans', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
  await archive(db.pool, dev, mail({ id: 'plain@example.org', subject: 'عربي and English', date: 'Mon, 02 Nov 2026 11:00:00 +0000' }));
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

it('takes bidirectional controls out of the subjects and names of messages archived before', async () => {
  // As a release before sql/0084 stored them.
  await db.pool.query(`update messages set subject = $1, from_name = $2 where message_id = 'spoof@example.org'`, [`Re: plans${RLO}`, `Alice ${FSI}Example`]);
  await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'one-line-fields'`);
  expect(await (await fetch(`${web.url}/message-id/spoof@example.org`)).text()).toContain(RLO);
  let batches = 0;
  for (let r = await runConversionBatch(db.pool, 'test', { batchRows: 1 }, [oneLineFields]); r.kind !== 'done'; r = await runConversionBatch(db.pool, 'test', { batchRows: 1 }, [oneLineFields])) {
    expect(r.kind).toBe('batch');
    if (++batches > 10) throw new Error('the job does not end');
  }
  const { rows } = await db.pool.query(`select message_id, subject, from_name from messages order by message_id`);
  expect(rows).toEqual([
    { message_id: 'plain@example.org', subject: 'عربي and English', from_name: 'Alice Example' },
    { message_id: 'spoof@example.org', subject: 'Re: plans', from_name: 'Alice Example' },
  ]);
  const { rows: [job] } = await db.pool.query(`select rows_changed::int as changed, done_at is not null as done from conversions where name = 'one-line-fields'`);
  expect(job).toEqual({ changed: 1, done: true });
  const page = await (await fetch(`${web.url}/message-id/spoof@example.org`)).text();
  expect(page).not.toContain(RLO);
  expect(page).not.toContain(FSI);
});

it('the migration cleans held posts', async () => {
  await db.pool.query(
    `insert into held_messages (list_id, message_id, raw, size, from_email, from_name, subject, reason, rule)
     values ($1, 'held@example.org', 'x', 1, 'mallory@example.org', $2, $3, 'moderated list', 'moderated')`,
    [dev.id, `Mallory${RLO}`, `${FSI}Approve me${RLO} please`],
  );
  // The migration's update, run again (its insert of the job's row would conflict).
  const sql = fs.readFileSync(new URL('../sql/0084_one_line_fields.sql', import.meta.url), 'utf8');
  await db.pool.query(sql.slice(sql.indexOf('update held_messages'), sql.indexOf(';', sql.indexOf('update held_messages'))));
  const { rows } = await db.pool.query(`select from_name, subject from held_messages where message_id = 'held@example.org'`);
  expect(rows).toEqual([{ from_name: 'Mallory', subject: 'Approve me please' }]);
});

it('a pass over messages that hold none changes nothing, and leaves the archive\'s page cache alone', async () => {
  await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'one-line-fields'`);
  const version = async () => (await db.pool.query<{ version: string }>('select version from archive_version()')).rows[0].version;
  const before = await version();
  for (let r = await runConversionBatch(db.pool, 'test', { batchRows: 1 }, [oneLineFields]), n = 0; r.kind !== 'done'; r = await runConversionBatch(db.pool, 'test', { batchRows: 1 }, [oneLineFields])) {
    if (++n > 10) throw new Error('the job does not end');
  }
  // Every UPDATE of messages counts as an archive change (sql/0011), one of no row too: each
  // batch then made the web's page cache start afresh, all along a walk over the whole archive.
  expect(await version()).toBe(before);
  const { rows: [job] } = await db.pool.query(`select rows_changed::int as changed, done_at is not null as done from conversions where name = 'one-line-fields'`);
  expect(job).toEqual({ changed: 0, done: true });
});

it('opens the finished job again for a message the previous release archives with a control during a rolling upgrade', async () => {
  const pass = () => runConversions(db.pool, 'test', { batchRows: 100, pauseMs: 0 }, log, () => false, [oneLineFields]);
  await pass();
  const job = async () => (await db.pool.query(`select last_key::int, done_at is not null as done from conversions where name = 'one-line-fields'`)).rows[0];
  expect(await job()).toMatchObject({ done: true });
  // As the release before sql/0084 archives a post: its subject and name as the mail wrote them.
  await archive(db.pool, dev, mail({ id: 'late-spoof@example.org', subject: 'Re: budget', date: 'Tue, 03 Nov 2026 10:00:00 +0000' }));
  await db.pool.query(`update messages set subject = $1, from_name = $2 where message_id = 'late-spoof@example.org'`, [`Re: budget${RLO}`, `Bob ${FSI}Example`]);
  // The index of sql/0088 answers for it, and only for it.
  const plan = (await db.pool.query(`explain select id from messages where subject ~ U&'[\\202A-\\202E\\2066-\\2069]' or from_name ~ U&'[\\202A-\\202E\\2066-\\2069]' order by id limit 1`)).rows.map((r) => r['QUERY PLAN']).join('\n');
  expect(plan).toContain('messages_bidi_fields');
  await pass();
  const { rows } = await db.pool.query(`select subject, from_name from messages where message_id = 'late-spoof@example.org'`);
  expect(rows).toEqual([{ subject: 'Re: budget', from_name: 'Bob Example' }]);
  expect(await job()).toMatchObject({ done: true });
  expect(await (await fetch(`${web.url}/message-id/late-spoof@example.org`)).text()).not.toContain(RLO);
});
