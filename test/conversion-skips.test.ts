/*
 * A conversion job gets past a row that fails every time (core/conversions.ts, sql/0072): the
 * attachment-text job over messages archived "before sql/0070", one of which the database refuses
 * to update every time (a check constraint added NOT VALID after it was archived). The failed batch
 * is done again row by row; the poisoned row, failing alone, is skipped and recorded with its error,
 * and shows in `listkeeper queue` and `doctor`; the job goes on past it and finishes. A backend
 * terminated during a batch (pg_terminate_backend), or during one row's transaction, skips
 * nothing: that work is done again on the next pass.
 */

import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { attachmentText } from '../src/core/conversions/attachment-text.ts';
import { runConversions } from '../src/core/conversions.ts';
import { conversionsFindings } from '../src/core/doctor.ts';
import type { ListRow } from '../src/db/lists.ts';
import { log } from '../src/log.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { until } from './helpers/worker-process.ts';
import { archive, newList } from './fixtures/archive/seed.ts';

const IDS = ['ok-1', 'poison', 'ok-2', 'held', 'ok-3'].map((n) => `${n}@example.org`);
let db: TestDatabase;
let dev: ListRow;
const ids = new Map<string, number>();

/** A post with an attached log that names `word`. */
function withLog(id: string, word: string): Buffer {
  const b = 'log-boundary';
  return Buffer.from([
    'From: Alice Example <alice@example.org>', 'To: dev@lists.example.org', `Subject: Log ${id}`,
    'Date: Mon, 02 Nov 2026 10:00:00 +0000', `Message-ID: <${id}>`, 'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`, '',
    `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', 'The log is attached.', '',
    `--${b}`, 'Content-Type: text/plain; name="server.log"', 'Content-Disposition: attachment; filename="server.log"', '',
    `FATAL: ${word} ran out of shared memory`, '',
    `--${b}--`, '',
  ].join('\r\n'));
}

/** One pass of the workers' conversion loop over the attachment-text job, as `serve --worker` runs it. */
const pass = () => runConversions(db.pool, 'test-worker', { batchRows: 100, pauseMs: 0 }, log, () => false, [attachmentText]);

async function job() {
  const { rows } = await db.pool.query<{ last_key: number; rows_done: number; rows_changed: number; error: string | null; done: boolean }>(
    `select last_key::int, rows_done::int, rows_changed::int, error, done_at is not null as done from conversions where name = 'attachment-text'`);
  return rows[0];
}

async function texts(): Promise<Record<string, string | null>> {
  const { rows } = await db.pool.query<{ message_id: string; attachment_text: string | null }>('select message_id, attachment_text from messages order by id');
  return Object.fromEntries(rows.map((r) => [r.message_id, r.attachment_text]));
}

const skips = async () => (await db.pool.query<{ key: number; error: string }>(`select key::int, error from conversion_skips where name = 'attachment-text' order by key`)).rows;

/** Terminates the one backend of this database found in `state` (pg_stat_activity), once there is one. */
async function terminateWhen(where: string, what: string): Promise<void> {
  const killer = new pg.Client({ connectionString: db.url });
  await killer.connect();
  try {
    await until(async () => {
      const { rows } = await killer.query<{ pid: number }>(
        `select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and ${where}`);
      if (rows.length !== 1) return false;
      await killer.query('select pg_terminate_backend($1)', [rows[0].pid]);
      return true;
    }, what, 20_000);
  } finally {
    await killer.end();
  }
}

beforeAll(async () => {
  db = await testDatabase();
  dev = await newList(db.pool, 'dev@lists.example.org');
  for (const id of IDS) {
    const r = await archive(db.pool, dev, withLog(id, `${id.split('@')[0].replace('-', '')}word`));
    ids.set(id, r.id);
  }
  // As a release before sql/0070 archived them: no attachment text; the job not started.
  await db.pool.query('update messages set attachment_text = null');
  await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'attachment-text'`);
});

afterAll(async () => {
  await db?.drop();
});

it('a backend terminated while its batch waits ends the pass: nothing is skipped, nothing moves, and the error is recorded', async () => {
  // Another session holds one of the batch's rows: the batch's update waits for it, and is terminated.
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query('select 1 from messages where message_id = $1 for update', [IDS[3]]);
    const running = pass();
    await terminateWhen(`wait_event_type = 'Lock' and query like '%update messages m set attachment_text%'`, 'the batch waiting for the held row');
    await running;
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await holder.end();
  }
  expect(await skips()).toEqual([]);
  expect(await job()).toMatchObject({ last_key: 0, rows_done: 0, done: false, error: expect.stringMatching(/terminat/) });
  expect(Object.values(await texts())).toEqual([null, null, null, null, null]);
});

it('a row that fails every time is skipped and recorded with its error; a row whose own transaction is terminated is not', async () => {
  // The poisoned row: a constraint added after it was archived, NOT VALID, refuses any update of it.
  await db.pool.query(`alter table messages add constraint no_poison check (message_id <> 'poison@example.org') not valid`);
  // The held row's own transaction (an update of it alone) waits here, to be terminated; the
  // batch of all five fails on the poisoned row before any statement trigger runs.
  await db.pool.query(`create function slow_held() returns trigger language plpgsql as $$
    begin
      if (select count(*) from new_rows) = 1 and exists (select 1 from new_rows where message_id = 'held@example.org') then perform pg_sleep(60); end if;
      return null;
    end $$`);
  await db.pool.query('create trigger slow_held after update on messages referencing new table as new_rows for each statement execute function slow_held()');
  const running = pass();
  await terminateWhen(`wait_event = 'PgSleep'`, 'the held row\'s own transaction');
  await running;

  expect(await skips()).toEqual([{ key: ids.get('poison@example.org'), error: expect.stringMatching(/violates check constraint "no_poison"/) }]);
  const t = await texts();
  expect(t['ok-1@example.org']).toContain('ok1word');
  expect(t['ok-2@example.org']).toContain('ok2word');
  expect(t['poison@example.org']).toBeNull();
  expect(t['held@example.org']).toBeNull();
  expect(t['ok-3@example.org']).toBeNull();
  // The cursor is past ok-2, the last row done; the held row is the next pass's.
  expect(await job()).toMatchObject({ last_key: ids.get('ok-2@example.org'), rows_done: 3, rows_changed: 2, done: false, error: expect.stringMatching(/terminat/) });

  // The next pass, nothing in the way: the held row and the rest, and the job is done.
  await db.pool.query('drop trigger slow_held on messages');
  await pass();
  const after = await texts();
  expect(after['held@example.org']).toContain('heldword');
  expect(after['ok-3@example.org']).toContain('ok3word');
  expect(after['poison@example.org']).toBeNull();
  expect(await job()).toMatchObject({ rows_done: 5, rows_changed: 4, done: true, error: null });
  expect((await skips()).map((s) => s.key)).toEqual([ids.get('poison@example.org')]);
}, 60_000);

it('shows the skipped row in `listkeeper queue` and `doctor`', async () => {
  const poison = ids.get('poison@example.org');
  const json = await cli(['queue', '--json'], { DATABASE_URL: db.url });
  expect(json.code, json.stderr).toBe(0);
  const c = (JSON.parse(json.stdout) as { conversions: { name: string; rows_skipped: number; last_skipped: { key: number; error: string } | null }[] }).conversions.find((j) => j.name === 'attachment-text');
  expect(c).toMatchObject({ rows_skipped: 1, last_skipped: { key: poison, error: expect.stringMatching(/no_poison/) } });
  const text = await cli(['queue'], { DATABASE_URL: db.url });
  expect(text.stdout).toMatch(new RegExp(`conversion attachment-text: done .*, 5 rows looked at, 4 changed, 1 skipped \\(failed alone; the last, row ${poison} at .*no_poison`));
  const findings = await conversionsFindings(db.pool);
  expect(findings).toContainEqual(expect.objectContaining({ status: 'warn', what: expect.stringMatching(new RegExp(`conversion attachment-text \\(done\\): 1 row\\(s\\) skipped.*row ${poison} at .*no_poison`)) }));
});

it('a failure every row meets skips nothing: the release\'s (a privilege, a table not there) or one the next row meets alike; the job keeps its error and waits', async () => {
  const reset = async () => {
    await db.pool.query('update messages set attachment_text = null');
    await db.pool.query('delete from conversion_skips');
    await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0, error = null, error_at = null where name = 'attachment-text'`);
  };
  // The release's: every update refused with a code that is no row's (42501, a privilege).
  await db.pool.query('alter table messages drop constraint no_poison');
  await reset();
  await db.pool.query(`create function refuse_all() returns trigger language plpgsql as $$
    begin raise exception 'attachment text may not be written here' using errcode = '42501'; end $$`);
  await db.pool.query('create trigger refuse_all before update on messages for each row execute function refuse_all()');
  try {
    await pass();
    expect(await skips()).toEqual([]);
    expect(await job()).toMatchObject({ last_key: 0, rows_done: 0, done: false, error: expect.stringMatching(/may not be written/) });
  } finally {
    await db.pool.query('drop trigger refuse_all on messages');
  }
  // A row's kind of failure (a check constraint, class 23), but the next row fails alike: every
  // row would, so none is skipped.
  await db.pool.query(`alter table messages add constraint no_updates check (attachment_text is null) not valid`);
  try {
    await pass();
    expect(await skips()).toEqual([]);
    expect(await job()).toMatchObject({ last_key: 0, rows_done: 0, done: false, error: expect.stringMatching(/no_updates/) });
  } finally {
    await db.pool.query('alter table messages drop constraint no_updates');
  }
  // Put right, the next pass does every row.
  await pass();
  expect(await skips()).toEqual([]);
  expect(await job()).toMatchObject({ rows_done: 5, rows_changed: 5, done: true, error: null });
}, 60_000);
