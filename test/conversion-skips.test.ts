/*
 * A conversion job gets past a row that fails every time (core/conversions.ts, sql/0072): the
 * attachment-text job over messages archived "before sql/0070", one of which the database refuses
 * to update every time (a check constraint added NOT VALID after it was archived). The failed batch
 * is done again row by row; the poisoned row, failing alone, is skipped and recorded with its error,
 * and shows in `listkeeper queue` and `doctor`; the job goes on past it and finishes. A backend
 * terminated during a batch (pg_terminate_backend), or during one row's transaction, skips
 * nothing: that work is done again on the next pass. Whether a failure is the row's own is told
 * by the rows after it (core/conversion-look-ahead.ts): two and three poisoned messages in a row
 * are skipped, and two at the end of the table once the job has changed rows; a failure every
 * update meets skips nothing, past messages without attachments too, and neither does a poisoned
 * row whose next rows are locked.
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

/** A post without attachments: a row the attachment-text job has nothing to do for. */
function plain(id: string): Buffer {
  return Buffer.from([
    'From: Alice Example <alice@example.org>', 'To: dev@lists.example.org', `Subject: Plain ${id}`,
    'Date: Mon, 02 Nov 2026 10:00:00 +0000', `Message-ID: <${id}>`, '', 'Nothing attached.', '',
  ].join('\r\n'));
}

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

/**
 * Messages archived after the others, as a release before sql/0070 archived them (no attachment
 * text): a name starting with `plain` has no attachment; returns the key just before the first.
 */
async function more(names: string[]): Promise<number> {
  const before = (await db.pool.query<{ id: number }>('select max(id)::int as id from messages')).rows[0].id;
  for (const n of names) {
    const id = `${n}@example.org`;
    const word = `${n.replace(/-/g, '')}word`;
    ids.set(id, (await archive(db.pool, dev, n.startsWith('plain') ? plain(id) : withLog(id, word))).id);
  }
  await db.pool.query('update messages set attachment_text = null where id > $1', [before]);
  return before;
}

/** The job put back to `cursor`, not done, with `changed` rows changed so far. */
async function restart(cursor: number, changed?: number): Promise<void> {
  await db.pool.query(
    `update conversions set last_key = $1, done_at = null, error = null, error_at = null, rows_changed = coalesce($2, rows_changed)
      where name = 'attachment-text'`, [cursor, changed ?? null]);
}

const key = (name: string) => ids.get(`${name}@example.org`)!;

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

it('a failure every row meets skips nothing: the release\'s (a privilege, a table not there) or one the rows after it meet too; the job keeps its error and waits', async () => {
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
  // A row's kind of failure (a check constraint, class 23), but the rows after it fail too, to the
  // end of the table, and the job has changed no row yet: every row would, so none is skipped.
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

it('two and three poisoned rows in a row are each skipped, the job doing rows after them; rows it has nothing to do for are passed over', async () => {
  const cursor = await more(['run-ok-a', 'plain-a', 'bad-2a', 'bad-2b', 'run-ok-b', 'bad-3a', 'bad-3b', 'bad-3c', 'plain-b', 'run-ok-c']);
  // Each bad-* message is refused by a constraint added after it was archived, with one error alike.
  await db.pool.query(`alter table messages add constraint no_bad check (message_id not like 'bad-%') not valid`);
  await restart(cursor);
  await pass();

  const bad = ['bad-2a', 'bad-2b', 'bad-3a', 'bad-3b', 'bad-3c'];
  expect(await skips()).toEqual(bad.map((n) => ({ key: key(n), error: expect.stringMatching(/violates check constraint "no_bad"/) })));
  const t = await texts();
  for (const n of ['run-ok-a', 'run-ok-b', 'run-ok-c']) expect(t[`${n}@example.org`]).toContain(`${n.replace(/-/g, '')}word`);
  for (const n of [...bad, 'plain-a', 'plain-b']) expect(t[`${n}@example.org`]).toBeNull();
  // 5 changed by the test before, 3 now; the 10 rows all looked at.
  expect(await job()).toMatchObject({ last_key: key('run-ok-c'), rows_done: 15, rows_changed: 8, done: true, error: null });
}, 60_000);

it('poisoned rows at the end of the table are skipped when the job has changed rows before them; a job that has changed none waits', async () => {
  // The constraint refuses new rows too: it is added again once they are archived.
  await db.pool.query('alter table messages drop constraint no_bad');
  const cursor = await more(['bad-ta', 'bad-tb']);
  await db.pool.query(`alter table messages add constraint no_bad check (message_id not like 'bad-%') not valid`);
  const before = (await skips()).length;

  // A job that has changed no row yet (a small archive whose only messages left are poisoned):
  // nothing after them says the job works, so they are the job's failure. The last row alone too
  // (it used to be skipped whatever failed it: there was no next row to try).
  for (const from of [cursor, key('bad-ta')]) {
    await restart(from, 0);
    await pass();
    expect((await skips()).length).toBe(before);
    expect(await job()).toMatchObject({ last_key: from, done: false, error: expect.stringMatching(/no_bad/) });
  }

  // The job changes a row first: the two poisoned ones after it are skipped, and it is done.
  await db.pool.query('update messages set attachment_text = null where id = $1', [key('run-ok-c')]);
  await restart(key('run-ok-c') - 1);
  await pass();
  expect((await skips()).slice(before)).toEqual([
    { key: key('bad-ta'), error: expect.stringMatching(/no_bad/) }, { key: key('bad-tb'), error: expect.stringMatching(/no_bad/) },
  ]);
  expect((await texts())['run-ok-c@example.org']).toContain('runokcword');
  expect(await job()).toMatchObject({ last_key: key('bad-tb'), rows_changed: 1, done: true, error: null });
}, 60_000);

it('a failure every row meets skips nothing in a job that has changed rows, though rows it has nothing to do for follow the first that fails', async () => {
  await db.pool.query('alter table messages drop constraint no_bad');
  await db.pool.query('delete from conversion_skips');
  await db.pool.query('update messages set attachment_text = null where has_attachments and id >= $1', [key('run-ok-a')]);
  // Every update refused: run-ok-a fails first, then plain-a (nothing to do: no evidence either
  // way), then more than LOOK_AHEAD rows that fail alike.
  await db.pool.query(`alter table messages add constraint no_updates check (attachment_text is null) not valid`);
  try {
    await restart(key('run-ok-a') - 1);
    await pass();
    expect(await skips()).toEqual([]);
    expect(await job()).toMatchObject({ last_key: key('run-ok-a') - 1, done: false, error: expect.stringMatching(/no_updates/) });
    expect((await job()).rows_changed).toBeGreaterThan(0);
  } finally {
    await db.pool.query('alter table messages drop constraint no_updates');
  }
  // Put right, the next pass does every row from there.
  await pass();
  expect(await skips()).toEqual([]);
  const t = await texts();
  expect(t['bad-3b@example.org']).toContain('bad3bword');
  expect(t['bad-tb@example.org']).toContain('badtbword');
  expect(await job()).toMatchObject({ done: true, error: null });
}, 60_000);

it('a row that fails for its own sake is not skipped while the rows after it cannot be tried (a lock held past the lock timeout); the next pass skips it', async () => {
  const cursor = await more(['bad-locked', 'lock-held', 'lock-after']);
  await db.pool.query(`alter table messages add constraint no_bad check (message_id not like 'bad-%') not valid`);
  await restart(cursor);
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  try {
    await holder.query('begin');
    await holder.query('select 1 from messages where id = $1 for update', [key('lock-held')]);
    await pass();
  } finally {
    await holder.query('rollback').catch(() => undefined);
    await holder.end();
  }
  expect(await skips()).toEqual([]);
  expect(await job()).toMatchObject({ last_key: cursor, done: false, error: expect.stringMatching(/no_bad/) });

  await pass();
  expect(await skips()).toEqual([{ key: key('bad-locked'), error: expect.stringMatching(/no_bad/) }]);
  const t = await texts();
  expect(t['lock-held@example.org']).toContain('lockheldword');
  expect(t['lock-after@example.org']).toContain('lockafterword');
  expect(await job()).toMatchObject({ last_key: key('lock-after'), done: true, error: null });
}, 60_000);
