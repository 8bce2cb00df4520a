/*
 * The functions that triggers run work whatever the search_path of the session that writes
 * (sql/0071): an operator's psql with `options=-csearch_path=…`, a role whose search_path is
 * another, or listkeeper's tables in a schema other than public reached by qualified names. Before,
 * every insert, update or delete on lists, list_messages and messages failed in such a session
 * (`relation "purge_switch" does not exist`, from purging() in the purge triggers' WHEN clause).
 */

import crypto from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { migrate } from '../src/db/migrate.ts';
import { withDatabase } from './global-setup.ts';
import { adminQuery, testDatabase, type TestDatabase } from './helpers/db.ts';

/** Functions run by triggers that name nothing of ours (pg_notify, the row's own columns). */
const NAMES_NOTHING = ['notify_change', 'members_end_vacation_on_mode_change'];

let db: TestDatabase;
const otherName = `lk_schema_lk_${crypto.randomBytes(6).toString('hex')}`;
const adminUrl = () => inject('adminDatabaseUrl');

beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.drop();
  await adminQuery(adminUrl(), `drop database if exists ${otherName} with (force)`);
});

/** A session of its own on `url`, with this search_path (as `options=-csearch_path=…` gives) or the server's default. */
async function session(url: string, searchPath?: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, options: searchPath ? `-c search_path=${searchPath}` : undefined });
  await client.connect();
  return client;
}

/**
 * Writes that fire every trigger on lists, messages, list_messages and accounts, each table named
 * with its schema `s`, with purging on; then what the triggers should have done.
 */
async function writeThroughTriggers(c: pg.Client, s: string) {
  const q = async <T extends pg.QueryResultRow>(sql: string, values: unknown[] = []) => (await c.query<T>(sql.replaceAll('S.', `"${s}".`), values)).rows;
  await q('update S.purge_switch set enabled = true');
  const [{ version: before }] = await q<{ version: string }>('select last_value as version from S.archive_changes');
  const [{ id: list }] = await q<{ id: string }>(
    `insert into S.lists (address, local_part, domain, name, archive) values ('dev@x.example', 'dev', 'x.example', 'Dev', 'public') returning id`);
  const message = async (mid: string, thread: number) => {
    const [{ id }] = await q<{ id: string }>(
      `insert into S.messages (message_id, raw, size, subject, from_name, from_email, date, body, thread_id)
       values ($1, $2::bytea, length($2::bytea), 'About it', 'Alice', 'alice@x.example', '2026-11-02 10:00Z', 'the body', $3) returning id`,
      [mid, Buffer.from(`Message-ID: <${mid}>\r\n\r\nthe body\r\n`), thread]);
    await q(`insert into S.list_messages (list_id, message_id, date) values ($1, $2, '2026-11-02 10:00Z')`, [list, id]);
    return id;
  };
  const root = await message('root@x.example', 900_001);
  const reply = await message('reply@x.example', 900_002);
  await q(`update S.messages set subject = 'Renamed zebra' where id = $1`, [root]);
  await q('update S.messages set thread_id = 900001, parent_id = $1 where id = $2', [root, reply]);
  await q(`update S.list_messages set hidden_at = now(), hidden_reason = 'spam' where message_id = $1`, [reply]);
  await q(`update S.lists set name = 'Developers' where id = $1`, [list]);
  const [{ id: account }] = await q<{ id: string }>(`insert into S.accounts (email) values ('alice@x.example') returning id`);

  // What the triggers did: the search vector, the digests, the thread move, the account's address,
  // the archive's change counter and the purges.
  expect((await q<{ found: boolean }>(`select tsv @@ to_tsquery('simple', 'zebra') as found from S.messages where id = $1`, [root]))[0].found).toBe(true);
  expect((await q<{ n: number }>('select count(*)::int as n from S.message_digests where message_id = any($1::bigint[])', [[root, reply]]))[0].n).toBe(2);
  expect(await q('select old_thread::int, new_thread::int from S.thread_moves')).toEqual([{ old_thread: 900_002, new_thread: 900_001 }]);
  expect(await q('select email from S.account_addresses where account_id = $1 and verified_at is not null', [account])).toEqual([{ email: 'alice@x.example' }]);
  const [{ version: after }] = await q<{ version: string }>('select last_value as version from S.archive_changes');
  expect(Number(after)).toBeGreaterThan(Number(before));
  const keys = new Set((await q<{ key: string }>('select key from S.purges')).map((r) => r.key));
  for (const key of ['site', `list-${list}`, `latest-${list}`, `message-${root}`, `message-${reply}`, 'thread-900001', 'thread-900002']) expect(keys).toContain(key);

  // Deletes: a message (its list_messages rows go with it), then the list (its outbox rows too).
  await q('delete from S.purges');
  await q('delete from S.messages where id = $1', [reply]);
  expect(new Set((await q<{ key: string }>('select key from S.purges')).map((r) => r.key))).toContain(`message-${reply}`);
  await q('delete from S.lists where id = $1', [list]);
  expect((await q<{ n: number }>('select count(*)::int as n from S.list_messages'))[0].n).toBe(0);
  expect(new Set((await q<{ key: string }>('select key from S.purges')).map((r) => r.key))).toContain(`list-${list}`);
}

it('a session whose search_path lacks the schema writes to every archive table, firing every trigger (purging on)', async () => {
  const c = await session(db.url, 'pg_catalog');
  try {
    await expect(c.query('select count(*) from lists')).rejects.toThrow(/relation "lists" does not exist/);
    await writeThroughTriggers(c, 'public');
  } finally {
    await c.end();
  }
});

it('with the tables in a schema other than public, a session with the default search_path writes to them by qualified name', async () => {
  await adminQuery(adminUrl(), `create database ${otherName}`);
  const url = withDatabase(adminUrl(), otherName);
  const setup = await session(url);
  await setup.query('create schema lk');
  await setup.end();
  // Migrated as a deployment with `options=-csearch_path=lk` in its DATABASE_URL would be.
  const pool = new pg.Pool({ connectionString: url, max: 1, options: '-c search_path=lk' });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  const c = await session(url);
  try {
    expect((await c.query<{ p: string }>(`select current_setting('search_path') as p`)).rows[0].p).toBe('"$user", public');
    await writeThroughTriggers(c, 'lk');
  } finally {
    await c.end();
  }
});

it('every function a trigger runs names its schema, by name (not "$user")', async () => {
  const { rows } = await db.pool.query<{ fn: string; config: string[] | null }>(
    `select distinct p.proname as fn, p.proconfig as config
       from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_proc p on p.oid = t.tgfoid
      where not t.tgisinternal and c.relnamespace = current_schema()::regnamespace`);
  expect(rows.length).toBeGreaterThan(10);
  const unpinned = rows.filter((r) => !NAMES_NOTHING.includes(r.fn) && !(r.config ?? []).includes('search_path=public')).map((r) => r.fn);
  expect(unpinned, 'give these functions `set search_path` to the schema, as sql/0071 does').toEqual([]);
  // purging(), in the purge triggers' WHEN clause, names its table with the schema instead (it stays inlinable).
  const { rows: [purging] } = await db.pool.query<{ def: string }>(`select pg_get_functiondef('purging()'::regprocedure) as def`);
  expect(purging.def).toContain('public.purge_switch');
});
