/*
 * A populated site to back up (test/backup-restore.test.ts, test/backup-pgdump.test.ts): three
 * lists with settings and a DKIM key, members in every mode, a disabled one, roles, sender rules,
 * and posts taken over SMTP by the real `serve` (raw bytes that are not UTF-8, a cross-post, a
 * held post, queue rows). And what the tests compare with: new empty databases, the backup
 * file's records read with the format's own reader, plain queries.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { expect, inject } from 'vitest';
import { generateListKey } from '../../src/core/list-dkim.ts';
import { FrameReader, type AnyBackupHeader, type BackupTrailer, type FrameKind, type TableEnd } from '../../src/db/backup-format.ts';
import { addListRole } from '../../src/db/list-admin.ts';
import { createList } from '../../src/db/lists.ts';
import { addMember, disableMember, findMember } from '../../src/db/members.ts';
import { upsertSenderRule } from '../../src/db/sender-rules.ts';
import { withDatabase } from '../global-setup.ts';
import type { TestDatabase } from './db.ts';
import { spawnServe, type ServeProcess } from './serve-process.ts';
import { sendRaw } from './smtp.ts';

export function post(id: string, to: string, body: Buffer | string = `Body of ${id}.\r\n`): Buffer {
  const head = [`From: Poster <poster@example.org>`, `To: ${to}`, `Subject: post ${id}`, `Date: Wed, 02 Dec 2026 10:00:00 +0000`, `Message-ID: <${id}@example.org>`, 'MIME-Version: 1.0'];
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n`), typeof body === 'string' ? Buffer.from(`Content-Type: text/plain; charset=utf-8\r\n\r\n${body}`) : body]);
}

// 8-bit bytes that are not UTF-8 (latin-1 text and every byte 0x80-0xff), declared as such.
export const EIGHT_BIT = Buffer.concat([
  Buffer.from('Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'),
  Buffer.from('Gr\xfc\xdfe aus K\xf6ln, \xa9 2026.\r\n', 'latin1'),
  Buffer.from(Array.from({ length: 128 }, (_, i) => 0x80 + i).filter((b) => b !== 0x85)),
  Buffer.from('\r\n'),
]);

/** Fills `db` and returns the `serve --smtp` that took the posts (still running, for more). */
export async function populateSite(db: TestDatabase): Promise<ServeProcess> {
  const owners = ['owner@example.org'];
  const dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: 'Développement', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners });
  const ann = await createList(db.pool, { address: 'announce@lists.example.org', name: 'Announce', description: '', postPolicy: 'open', subscribePolicy: 'open', archive: 'members', owners });
  await createList(db.pool, { address: 'mod@lists.example.org', name: 'Moderated', description: '', postPolicy: 'moderated', subscribePolicy: 'approve', archive: 'private', owners });
  await generateListKey(db.pool, dev, { actor: 'test' });
  await db.pool.query(`update lists set subject_prefix = '[dev] ', footer = 'Footer ünïcode', reply_to = 'list' where id = $1`, [dev.id]);
  for (const [email, mode] of [
    ['each1@example.org', 'each'],
    ['each2@example.net', 'each'],
    ['digest@example.org', 'digest'],
    ['nomail@example.org', 'nomail'],
  ] as const) {
    await addMember(db.pool, dev.id, email, mode, `Name of ${email}`);
  }
  await addMember(db.pool, ann.id, 'each1@example.org', 'digest');
  await addMember(db.pool, dev.id, 'bouncy@example.org', 'each');
  await disableMember(db.pool, (await findMember(db.pool, dev.id, 'bouncy@example.org'))!.id, 'bounces');
  await addListRole(db.pool, dev.id, 'moderator@example.org', 'moderator');
  await upsertSenderRule(db.pool, dev.id, 'spammer@example.com', 'ban', null, 'test');
  await upsertSenderRule(db.pool, dev.id, '@trusted.example', 'allow', 1200, 'test');

  const serve = await spawnServe({ roles: ['smtp'], env: { DATABASE_URL: db.url } });
  const send = async (raw: Buffer, to: string[]) => {
    const r = await sendRaw(serve.smtpPort!, { from: 'poster@example.org', to }, raw);
    expect(r.ok, r.response).toBe(true);
  };
  for (let i = 0; i < 5; i++) await send(post(`dev-${i}`, 'dev@lists.example.org'), ['dev@lists.example.org']);
  await send(post('cross', 'dev@lists.example.org, announce@lists.example.org'), ['dev@lists.example.org', 'announce@lists.example.org']);
  await send(post('eight-bit', 'dev@lists.example.org', EIGHT_BIT), ['dev@lists.example.org']);
  await send(post('held', 'mod@lists.example.org'), ['mod@lists.example.org']);
  return serve;
}

/**
 * Posts to dev@ over SMTP, one after another, until stopped: `sent()` counts them. A backup taken
 * meanwhile must hold its snapshot's posts and not the later ones.
 */
export function keepPosting(serve: ServeProcess) {
  let load = true;
  let sent = 0;
  const loader = (async () => {
    while (load) {
      const r = await sendRaw(serve.smtpPort!, { from: 'poster@example.org', to: ['dev@lists.example.org'] }, post(`load-${crypto.randomUUID()}`, 'dev@lists.example.org'));
      expect(r.ok, r.response).toBe(true);
      sent++;
    }
  })();
  return {
    sent: () => sent,
    async stop() {
      load = false;
      await loader;
    },
  };
}

/** New, truly empty databases (not cloned from the migrated template), dropped by dropAll(). */
export function scratchDatabases() {
  const made: string[] = [];
  return {
    async create(): Promise<string> {
      const name = `lk_restore_${crypto.randomBytes(5).toString('hex')}`;
      await adminSql(`create database ${name}`);
      made.push(name);
      return withDatabase(inject('adminDatabaseUrl'), name);
    },
    async dropAll() {
      for (const name of made) await adminSql(`drop database if exists ${name} with (force)`).catch(() => undefined);
    },
  };
}

export async function adminSql(sql: string) {
  const c = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

/** Tables, sequences, indexes and views in schema public. */
export const relations = async (url: string) =>
  (await query<{ n: number }>(url, `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'`))[0].n;

/** Everything a restore may create, anywhere but PostgreSQL's own schemas: 0 in an empty database. */
export const restoredObjects = async (url: string) =>
  (
    await query<{ n: number }>(
      url,
      `select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%')
            + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname not in ('pg_catalog', 'information_schema'))
            + (select count(*) from pg_ts_config c join pg_namespace n on n.oid = c.cfgnamespace where n.nspname <> 'pg_catalog')
            + (select count(*) from pg_extension where extname <> 'plpgsql')
            + (select count(*) from pg_namespace where nspname not in ('public', 'information_schema') and nspname not like 'pg\\_%') as n`,
    )
  )[0].n;

/** The header, table ends, trailer and frame kinds of a backup file, read with the format's own reader. */
export async function readBackup(file: string): Promise<{ header: AnyBackupHeader; ends: TableEnd[]; trailer: BackupTrailer; kinds: Set<FrameKind> }> {
  const reader = new FrameReader(fs.createReadStream(file));
  await reader.start();
  let header: AnyBackupHeader | undefined;
  let trailer: BackupTrailer | undefined;
  const ends: TableEnd[] = [];
  const kinds = new Set<FrameKind>();
  for (let f = await reader.next(); f; f = await reader.next()) {
    kinds.add(f.kind);
    if (f.kind === 'H') header = JSON.parse(f.payload.toString());
    if (f.kind === 'E') ends.push(JSON.parse(f.payload.toString()));
    if (f.kind === 'T') trailer = JSON.parse(f.payload.toString());
  }
  return { header: header!, ends, trailer: trailer!, kinds };
}

/**
 * What a restore must give back, compared with the source site: every raw message byte for
 * byte (the 8-bit one too), the cross-post as one message in two lists, search on the restored
 * archive, settings (the DKIM key among them), memberships, roles, rules and accounts, the held
 * posts, the queue as the snapshot had it, and sequences past the restored rows.
 */
export async function expectSameSite(sourceUrl: string, targetUrl: string, messageRows: number) {
  const sums = `select id, message_id, encode(sha256(raw), 'hex') as sum, length(raw) as size from messages order by id`;
  const restored = await query<{ id: string }>(targetUrl, sums);
  const source = new Map((await query<{ id: string }>(sourceUrl, sums)).map((r) => [r.id, r]));
  expect(restored.length).toBe(messageRows);
  for (const m of restored) expect(m).toEqual(source.get(m.id));
  const raw = async (url: string, mid: string) => (await query<{ raw: Buffer }>(url, `select raw from messages where message_id = '${mid}'`))[0].raw;
  expect((await raw(targetUrl, 'eight-bit@example.org')).equals(await raw(sourceUrl, 'eight-bit@example.org'))).toBe(true);
  expect((await raw(targetUrl, 'eight-bit@example.org')).includes(Buffer.from([0xfc, 0xdf]))).toBe(true);
  const cross = `select l.local_part from list_messages lm join lists l on l.id = lm.list_id join messages m on m.id = lm.message_id where m.message_id = 'cross@example.org' order by 1`;
  expect(await query(targetUrl, cross)).toEqual([{ local_part: 'announce' }, { local_part: 'dev' }]);
  // The search vector, which a backup leaves out, was computed again as the rows were loaded: the source's.
  expect(await query(targetUrl, `select message_id from messages where tsv @@ websearch_to_tsquery('listkeeper', 'eight') order by 1`)).toEqual([{ message_id: 'eight-bit@example.org' }]);
  const vectors = 'select id, tsv::text as tsv from messages order by id';
  const sourceVectors = new Map((await query<{ id: string; tsv: string }>(sourceUrl, vectors)).map((r) => [r.id, r.tsv]));
  for (const m of await query<{ id: string; tsv: string | null }>(targetUrl, vectors)) expect(m.tsv).toBe(sourceVectors.get(m.id));
  for (const sql of [
    'select * from lists order by id',
    'select * from members order by id',
    'select * from list_roles order by list_id, email, role',
    'select * from sender_rules order by list_id, email',
    'select * from accounts order by id',
    'select id, list_id, message_id, encode(sha256(raw), \'hex\') as raw, reason from held_messages order by id',
  ]) {
    expect(await query(targetUrl, sql)).toEqual(await query(sourceUrl, sql));
  }
  const [list] = await query<{ dkim_private_key: string }>(targetUrl, `select dkim_private_key from lists where local_part = 'dev'`);
  expect(list.dkim_private_key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  const outbox = 'select id, kind, list_id, message_id, recipient, state from outbox order by id';
  const sourceOutbox = new Map((await query<{ id: string }>(sourceUrl, outbox)).map((r) => [r.id, r]));
  const restoredOutbox = await query<{ id: string }>(targetUrl, outbox);
  expect(restoredOutbox.length).toBeGreaterThan(0);
  for (const r of restoredOutbox) expect(r).toEqual(sourceOutbox.get(r.id));
  const [{ next, max }] = await query<{ next: string; max: string }>(targetUrl, `select nextval('messages_id_seq')::text as next, (select max(id) from messages)::text as max`);
  expect(Number(next)).toBeGreaterThan(Number(max));
}

/** A restore that succeeded: its summary and progress lines, and every table with the header's row count. */
export async function expectRestored(res: { code: number | null; stdout: string; stderr: string }, targetUrl: string, header: { tables: { name: string; rows: number }[] }) {
  expect(res.code, res.stderr).toBe(0);
  expect(res.stdout).toMatch(/^restored .*site\.lkb \(made .*, schema \d{4}_\w+\.sql\): \d+ tables, \d+ rows \(\d+ messages\) in [\d.]+ s; checked: every table reads back with the backup's row count and sha256\n$/);
  expect(res.stderr).toMatch(/^restore: 100% .*: checking$/m);
  for (const t of header.tables) {
    const [{ n }] = await query<{ n: number }>(targetUrl, `select count(*)::int as n from "${t.name}"`);
    expect({ table: t.name, rows: n }).toEqual({ table: t.name, rows: t.rows });
  }
}
