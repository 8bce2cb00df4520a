/*
 * `listkeeper backup` of a populated site while `serve` takes posts over SMTP, then `listkeeper
 * restore` into a new empty database, compared with the source: every raw message byte for byte,
 * the counts the backup's header gives, the lists' settings and the memberships. And the refusals:
 * a database that is not empty, a truncated or corrupted file, a backup from a newer schema.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { generateListKey } from '../src/core/list-dkim.ts';
import { FrameReader, FrameWriter, type BackupHeader, type TableEnd } from '../src/db/backup-format.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList } from '../src/db/lists.ts';
import { addMember, disableMember, findMember } from '../src/db/members.ts';
import { upsertSenderRule } from '../src/db/sender-rules.ts';
import { isAlive } from '../src/db/embedded.ts';
import { withDatabase } from './global-setup.ts';
import { cli, ROOT } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { sendRaw } from './helpers/smtp.ts';

let db: TestDatabase;
let serve: ServeProcess;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-backup-'));
const made: string[] = [];
const FILE = path.join(dir, 'site.lkb');
// The embedded default (DATABASE_URL unset): PostgreSQL 18, where the machine's server is 15.
const embeddedDir = path.join(ROOT, '.test-data', `backup-${crypto.randomBytes(4).toString('hex')}`);
const embedded = { DATABASE_URL: undefined, DATABASE_READ_URL: undefined, DATA_DIR: embeddedDir, MAIL_DOMAIN: 'lists.example.org' };

/** A new, truly empty database (not cloned from the migrated template). */
async function emptyDatabase(): Promise<string> {
  const name = `lk_restore_${crypto.randomBytes(5).toString('hex')}`;
  await admin(`create database ${name}`);
  made.push(name);
  return withDatabase(inject('adminDatabaseUrl'), name);
}

async function admin(sql: string) {
  const c = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

const relations = async (url: string) =>
  (await query<{ n: number }>(url, `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'`))[0].n;

/** The header and table ends of a backup file, read with the format's own reader. */
async function readBackup(file: string): Promise<{ header: BackupHeader; ends: TableEnd[] }> {
  const reader = new FrameReader(fs.createReadStream(file));
  await reader.start();
  let header: BackupHeader | undefined;
  const ends: TableEnd[] = [];
  for (let f = await reader.next(); f; f = await reader.next()) {
    if (f.kind === 'H') header = JSON.parse(f.payload.toString());
    if (f.kind === 'E') ends.push(JSON.parse(f.payload.toString()));
  }
  return { header: header!, ends };
}

function post(id: string, to: string, body: Buffer | string = `Body of ${id}.\r\n`): Buffer {
  const head = [`From: Poster <poster@example.org>`, `To: ${to}`, `Subject: post ${id}`, `Date: Wed, 02 Dec 2026 10:00:00 +0000`, `Message-ID: <${id}@example.org>`, 'MIME-Version: 1.0'];
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n`), typeof body === 'string' ? Buffer.from(`Content-Type: text/plain; charset=utf-8\r\n\r\n${body}`) : body]);
}

// 8-bit bytes that are not UTF-8 (latin-1 text and every byte 0x80-0xff), declared as such.
const EIGHT_BIT = Buffer.concat([
  Buffer.from('Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'),
  Buffer.from('Gr\xfc\xdfe aus K\xf6ln, \xa9 2026.\r\n', 'latin1'),
  Buffer.from(Array.from({ length: 128 }, (_, i) => 0x80 + i).filter((b) => b !== 0x85)),
  Buffer.from('\r\n'),
]);

beforeAll(async () => {
  db = await testDatabase();
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
  await upsertSenderRule(db.pool, dev.id, '@trusted.example', 'allow', new Date('2030-01-01T00:00:00Z'), 'test');

  serve = await spawnServe({ roles: ['smtp'], env: { DATABASE_URL: db.url } });
  const send = async (raw: Buffer, to: string[]) => {
    const r = await sendRaw(serve.smtpPort!, { from: 'poster@example.org', to }, raw);
    expect(r.ok, r.response).toBe(true);
  };
  for (let i = 0; i < 5; i++) await send(post(`dev-${i}`, 'dev@lists.example.org'), ['dev@lists.example.org']);
  await send(post('cross', 'dev@lists.example.org, announce@lists.example.org'), ['dev@lists.example.org', 'announce@lists.example.org']);
  await send(post('eight-bit', 'dev@lists.example.org', EIGHT_BIT), ['dev@lists.example.org']);
  await send(post('held', 'mod@lists.example.org'), ['mod@lists.example.org']);
}, 120_000);

afterAll(async () => {
  await serve?.kill();
  await db?.drop();
  for (const name of made) await admin(`drop database if exists ${name} with (force)`).catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
  const pidFile = path.join(embeddedDir, 'postgres', 'postmaster.pid');
  const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) : undefined;
  if (isAlive(pid)) process.kill(pid!, 'SIGINT');
  for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  fs.rmSync(embeddedDir, { recursive: true, force: true });
});

describe('listkeeper backup and restore', () => {
  let target: string;
  let header: BackupHeader;
  let ends: TableEnd[];

  it('backs up the whole site while posts keep arriving over SMTP, with a progress line', async () => {
    let load = true;
    let sent = 0;
    const loader = (async () => {
      while (load) {
        const r = await sendRaw(serve.smtpPort!, { from: 'poster@example.org', to: ['dev@lists.example.org'] }, post(`load-${sent}`, 'dev@lists.example.org'));
        expect(r.ok, r.response).toBe(true);
        sent++;
      }
    })();
    // Some posts land before the snapshot is taken (the process starts up first).
    while (sent < 3) await new Promise((r) => setTimeout(r, 50));
    const sentBefore = sent;
    const res = await cli(['backup', FILE], { DATABASE_URL: db.url });
    const sentDuring = sent - sentBefore;
    load = false;
    await loader;
    expect(res.stderr).toMatch(/^backup: 100% \(\d+ of \d+ rows\), [\d.]+ MB, \d+ s: done$/m);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^backed up \d+ tables, \d+ rows \(\d+ messages\) to .*site\.lkb: [\d.]+ MB in [\d.]+ s, schema \d{4}_\w+\.sql\n$/);
    expect(sentDuring).toBeGreaterThan(0);
    expect(fs.existsSync(`${FILE}.tmp`)).toBe(false);
    ({ header, ends } = await readBackup(FILE));
    const names = header.tables.map((t) => t.name);
    for (const t of ['lists', 'members', 'list_roles', 'sender_rules', 'messages', 'list_messages', 'held_messages', 'outbox', 'accounts']) expect(names).toContain(t);
    for (const t of ['sessions', 'rate_limits', 'schema_migrations']) expect(names).not.toContain(t);
    // Parents before children.
    expect(names.indexOf('lists')).toBeLessThan(names.indexOf('members'));
    expect(names.indexOf('messages')).toBeLessThan(names.indexOf('list_messages'));
    expect(header.migrations).toEqual((await db.pool.query('select name from schema_migrations order by name')).rows.map((r) => r.name));
    expect(ends.map((e) => e.rows)).toEqual(header.tables.map((t) => t.rows));
    // The snapshot is the backup's, not the end's: mail went on arriving after it.
    const rows = (name: string) => header.tables.find((t) => t.name === name)!.rows;
    const messagesNow = (await db.pool.query('select count(*)::int as n from messages')).rows[0].n;
    expect(rows('messages')).toBeGreaterThanOrEqual(7 + 3);
    expect(rows('messages')).toBeLessThan(messagesNow);
    expect(rows('held_messages')).toBe(1);
    expect(rows('outbox')).toBeGreaterThan(0);
  }, 120_000);

  it('restores it into an empty database, checks it, and the restored site equals the source at the snapshot', async () => {
    target = await emptyDatabase();
    const res = await cli(['restore', FILE], { DATABASE_URL: target });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^restored .*site\.lkb \(made .*, schema \d{4}_\w+\.sql\): \d+ tables, \d+ rows \(\d+ messages\) in [\d.]+ s; checked: every table reads back with the backup's row count and sha256\n$/);
    expect(res.stderr).toMatch(/^restore: 100% .*: checking$/m);

    // Counts per table are the header's.
    for (const t of header.tables) {
      const [{ n }] = await query<{ n: number }>(target, `select count(*)::int as n from "${t.name}"`);
      expect({ table: t.name, rows: n }).toEqual({ table: t.name, rows: t.rows });
    }
    // Every restored message is the source's, byte for byte (the source has more: load went on).
    const sums = `select id, message_id, encode(sha256(raw), 'hex') as sum, length(raw) as size from messages order by id`;
    const restored = await query<{ id: string; message_id: string; sum: string; size: number }>(target, sums);
    const source = new Map((await query<{ id: string; message_id: string; sum: string; size: number }>(db.url, sums)).map((r) => [r.id, r]));
    expect(restored.length).toBe(header.tables.find((t) => t.name === 'messages')!.rows);
    for (const m of restored) expect(m).toEqual(source.get(m.id));
    const raw = async (url: string, mid: string) => (await query<{ raw: Buffer }>(url, `select raw from messages where message_id = '${mid}'`))[0].raw;
    expect((await raw(target, 'eight-bit@example.org')).equals(await raw(db.url, 'eight-bit@example.org'))).toBe(true);
    expect((await raw(target, 'eight-bit@example.org')).includes(Buffer.from([0xfc, 0xdf]))).toBe(true);
    // The cross-posted message is one message in two lists.
    const cross = `select l.local_part from list_messages lm join lists l on l.id = lm.list_id join messages m on m.id = lm.message_id where m.message_id = 'cross@example.org' order by 1`;
    expect(await query(target, cross)).toEqual([{ local_part: 'announce' }, { local_part: 'dev' }]);
    // Search works on the restored archive (the generated tsvector was computed again).
    expect(await query(target, `select message_id from messages where tsv @@ websearch_to_tsquery('listkeeper', 'eight') order by 1`)).toEqual([{ message_id: 'eight-bit@example.org' }]);

    // Settings (the DKIM key among them), memberships, roles and rules are equal.
    for (const sql of [
      'select * from lists order by id',
      'select * from members order by id',
      'select * from list_roles order by list_id, email, role',
      'select * from sender_rules order by list_id, email',
      'select * from accounts order by id',
      'select id, list_id, message_id, encode(sha256(raw), \'hex\') as raw, reason from held_messages order by id',
    ]) {
      expect(await query(target, sql)).toEqual(await query(db.url, sql));
    }
    const [list] = await query<{ dkim_private_key: string }>(target, `select dkim_private_key from lists where local_part = 'dev'`);
    expect(list.dkim_private_key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // The queue is the snapshot's: each row restored is the source's row.
    const outbox = 'select id, kind, list_id, message_id, recipient, state from outbox order by id';
    const sourceOutbox = new Map((await query<{ id: string }>(db.url, outbox)).map((r) => [r.id, r]));
    for (const r of await query<{ id: string }>(target, outbox)) expect(r).toEqual(sourceOutbox.get(r.id));
    // Sequences go on past the restored rows.
    const [{ next, max }] = await query<{ next: string; max: string }>(target, `select nextval('messages_id_seq')::text as next, (select max(id) from messages)::text as max`);
    expect(Number(next)).toBeGreaterThan(Number(max));
  }, 120_000);

  it('refuses to restore into a database that is not empty, and leaves it as it was', async () => {
    const before = await query(target, 'select count(*)::int as n from messages');
    const res = await cli(['restore', FILE], { DATABASE_URL: target });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n').at(-1)).toMatch(/^listkeeper: restore refused, the database is left as it was: the database is not empty \(\d+ tables and sequences, such as public\.\w+\): restore only goes into an empty database/);
    expect(await query(target, 'select count(*)::int as n from messages')).toEqual(before);
  }, 60_000);

  it('refuses a truncated file and leaves the database empty', async () => {
    const cut = path.join(dir, 'cut.lkb');
    fs.writeFileSync(cut, fs.readFileSync(FILE).subarray(0, Math.floor(fs.statSync(FILE).size * 0.6)));
    const empty = await emptyDatabase();
    const res = await cli(['restore', cut], { DATABASE_URL: empty });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^listkeeper: restore refused, the database is left as it was: the backup file is truncated \(it ends before its trailer\)/m);
    expect(await relations(empty)).toBe(0);
  }, 60_000);

  it('refuses a file with a damaged byte and leaves the database empty', async () => {
    const bytes = fs.readFileSync(FILE);
    // A byte inside the raw of the 8-bit message, in the messages table's data.
    const at = bytes.indexOf(Buffer.from('Gr\xfc\xdfe aus', 'latin1'));
    expect(at).toBeGreaterThan(0);
    bytes[at + 1] ^= 0x01;
    const bad = path.join(dir, 'bad.lkb');
    fs.writeFileSync(bad, bytes);
    const empty = await emptyDatabase();
    const res = await cli(['restore', bad], { DATABASE_URL: empty });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^listkeeper: restore refused, the database is left as it was: the backup file is corrupt: table messages's data does not match its checksum or row count$/m);
    expect(await relations(empty)).toBe(0);
  }, 60_000);

  it('refuses a backup made by a newer schema, before touching the database', async () => {
    // The same backup with one migration more in its header, rewritten with the format's writer.
    const newer = path.join(dir, 'newer.lkb');
    const reader = new FrameReader(fs.createReadStream(FILE));
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    const writer = new FrameWriter(out, new Promise<never>(() => undefined));
    await reader.start();
    await writer.start();
    for (let f = await reader.next(); f; f = await reader.next()) {
      if (f.kind === 'H') {
        const h = JSON.parse(f.payload.toString()) as BackupHeader;
        await writer.json('H', { ...h, migrations: [...h.migrations, '9999_from_the_future.sql'] });
      } else if (f.kind === 'T') await writer.json('T', { ...JSON.parse(f.payload.toString()), sha256: writer.digest() });
      else await writer.frame(f.kind, f.payload);
    }
    fs.writeFileSync(newer, Buffer.concat(chunks));
    const empty = await emptyDatabase();
    const res = await cli(['restore', newer], { DATABASE_URL: empty });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(
      /^listkeeper: restore refused, the database is left as it was: this backup comes from a newer listkeeper: its schema has migrations this version does not know \(9999_from_the_future\.sql\); restore it with that version or a later one$/m,
    );
    expect(await relations(empty)).toBe(0);
  }, 60_000);

  it('restores into the embedded PostgreSQL (another major than the machine\'s), whose backup then has the same bytes per table', async () => {
    const restored = await cli(['restore', FILE], embedded);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.stdout).toContain('checked: every table reads back');
    const again = path.join(dir, 'from-embedded.lkb');
    const backup = await cli(['backup', again], embedded);
    expect(backup.code, backup.stderr).toBe(0);
    const second = await readBackup(again);
    expect(second.header.server_version).toMatch(/^PostgreSQL \d+/);
    expect(second.header.migrations).toEqual(header.migrations);
    expect(second.ends).toEqual(ends);
    const members = await cli(['members', 'dev', '--json'], embedded);
    expect(JSON.parse(members.stdout)).toHaveLength(5);
  }, 180_000);

  it('writes and restores a gzipped backup (FILE.gz)', async () => {
    const gz = path.join(dir, 'site.lkb.gz');
    const res = await cli(['backup', gz], { DATABASE_URL: db.url });
    expect(res.code, res.stderr).toBe(0);
    expect(fs.readFileSync(gz).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    const empty = await emptyDatabase();
    const restored = await cli(['restore', gz], { DATABASE_URL: empty });
    expect(restored.code, restored.stderr).toBe(0);
    const sql = 'select message_id, encode(sha256(raw), \'hex\') from messages order by id';
    expect(await query(empty, sql)).toEqual(await query(db.url, sql));
  }, 120_000);
});
