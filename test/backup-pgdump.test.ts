/*
 * `listkeeper backup` with the pg_dump method: the machine's PostgreSQL 15 and Debian's pg_dump 15
 * on the PATH, so `auto` takes it. A populated site backed up while `serve` takes posts, restored
 * with Debian's pg_restore into a new empty database and compared with the source: raw messages
 * byte for byte, counts, settings, memberships, the queue. And the refusals, each leaving the
 * database empty, even when pg_restore had already committed: a damaged byte in pg_dump's
 * archive, a truncated file, a file cut just before its trailer, a trailer whose checksum of a
 * table differs (the check fails after pg_restore's commit); pg_restore's own error; no
 * pg_restore on the PATH; a pg_dump of another major (a script on the PATH that says it is 18)
 * with --method pg_dump; a pg_dump that fails part-way (a script too).
 * The listkeeper format: test/backup-restore.test.ts.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MAGIC, type PgDumpHeader, type TableEnd } from '../src/db/backup-format.ts';
import { expectRestored, expectSameSite, keepPosting, populateSite, query, readBackup, restoredObjects, scratchDatabases } from './helpers/backup-site.ts';
import { BIN, cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import type { ServeProcess } from './helpers/serve-process.ts';

let db: TestDatabase;
let serve: ServeProcess;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-backup-pgdump-'));
const scratch = scratchDatabases();
const FILE = path.join(dir, 'site.lkb');

/** A folder for PATH holding only the given programs: shell scripts that print a version line. */
function fakeTools(name: string, tools: Record<string, string>): string {
  const bin = path.join(dir, name);
  fs.mkdirSync(bin);
  for (const [tool, version] of Object.entries(tools)) {
    fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\necho '${tool} (PostgreSQL) ${version}'\n`, { mode: 0o755 });
  }
  return bin;
}

/** The frames of a backup file with where each starts: kind, offset of its 5-byte head, payload length. */
function frames(bytes: Buffer): { kind: string; at: number; length: number }[] {
  const out = [];
  for (let at = MAGIC.length; at < bytes.length; ) {
    const length = bytes.readUInt32BE(at + 1);
    out.push({ kind: bytes.toString('latin1', at, at + 1), at, length });
    at += 5 + length;
  }
  return out;
}

async function restoreRefused(file: string, expected: RegExp, env: Record<string, string> = {}) {
  const empty = await scratch.create();
  const res = await cli(['restore', file], { DATABASE_URL: empty, ...env });
  expect(res.code, res.stderr).toBe(1);
  expect(res.stderr.trim().split('\n').at(-1)).toMatch(expected);
  // Nothing left of it: no table, function, text search configuration, extension or schema.
  expect(await restoredObjects(empty)).toBe(0);
}

beforeAll(async () => {
  db = await testDatabase();
  serve = await populateSite(db);
  // A transient table's rows are not backed up (its definition is).
  await db.pool.query(`insert into rate_limits (key, window_start, hits) values ('subscribe:203.0.113.9', now(), 3)`);
}, 120_000);

afterAll(async () => {
  await serve?.kill();
  await db?.drop();
  await scratch.dropAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * The test server's major and the PATH's pg_dump's: this file needs them equal. So it runs in the
 * pass against the machine's PostgreSQL (Debian's 15 and its pg_dump 15), and not in the pass on
 * the embedded PostgreSQL 18, for which no pg_dump is installed (backup-restore.test.ts checks
 * there that `--method pg_dump` refuses and `auto` takes the listkeeper format).
 */
async function majors(): Promise<{ server: number; pgDump: number | null }> {
  const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await client.connect();
  try {
    const server = Math.floor(Number((await client.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0].v) / 10000);
    let pgDump: number | null = null;
    try {
      pgDump = Number(/(\d+)\.\d+/.exec(execFileSync('pg_dump', ['--version'], { encoding: 'utf8', timeout: 10_000 }))?.[1] ?? NaN) || null;
    } catch {
      pgDump = null; // none on the PATH
    }
    return { server, pgDump };
  } finally {
    await client.end();
  }
}
const { server, pgDump } = await majors();

describe.runIf(server === pgDump)(`listkeeper backup and restore with pg_dump (server ${server}, pg_dump ${pgDump ?? 'none'})`, () => {
  let header: PgDumpHeader;
  let ends: TableEnd[];
  let target: string;

  it('auto takes the PATH\'s pg_dump of the server\'s major, from one snapshot while posts keep arriving, and says so', async () => {
    const load = keepPosting(serve);
    while (load.sent() < 3) await new Promise((r) => setTimeout(r, 50));
    const res = await cli(['backup', FILE], { DATABASE_URL: db.url });
    await load.stop();
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/^backup: 100% \(\d+ of \d+ rows\), [\d.]+ MB, \d+ s: done$/m);
    expect(res.stdout).toMatch(/^backed up \d+ tables, \d+ rows \(\d+ messages\) to .*site\.lkb: [\d.]+ MB in [\d.]+ s, schema \d{4}_\w+\.sql; method: pg_dump 15\.\d+\n$/);
    expect(fs.existsSync(`${FILE}.tmp`)).toBe(false);
    expect(fs.statSync(FILE).mode & 0o777).toBe(0o600);

    const file = await readBackup(FILE);
    header = file.header as PgDumpHeader;
    ends = file.trailer.tables;
    expect(header.format).toBe('pg_dump');
    expect(header.pg_dump_major).toBe(15);
    expect(header.server_version_num).toBeGreaterThanOrEqual(150000);
    expect(header.server_version_num).toBeLessThan(160000);
    expect([...file.kinds].sort()).toEqual(['H', 'P', 'T']);
    expect(header.migrations).toEqual((await db.pool.query('select name from schema_migrations order by name')).rows.map((r) => r.name));
    const names = header.tables.map((t) => t.name);
    for (const t of ['lists', 'members', 'messages', 'list_messages', 'held_messages', 'outbox']) expect(names).toContain(t);
    expect(ends.map((e) => [e.table, e.rows])).toEqual(header.tables.map((t) => [t.name, t.rows]));
    expect(file.trailer.pg_dump!.bytes).toBeGreaterThan(0);
    // pg_dump's own custom-format archive is inside, whole: it begins with its magic.
    const bytes = fs.readFileSync(FILE);
    const first = frames(bytes).find((f) => f.kind === 'P')!;
    expect(bytes.toString('latin1', first.at + 5 + 32, first.at + 5 + 32 + 5)).toBe('PGDMP');
    // The snapshot is the backup's: mail went on arriving after it.
    const messagesNow = (await db.pool.query('select count(*)::int as n from messages')).rows[0].n;
    const messages = header.tables.find((t) => t.name === 'messages')!.rows;
    expect(messages).toBeGreaterThanOrEqual(7 + 3);
    expect(messages).toBeLessThan(messagesNow);
  }, 120_000);

  it('restores it with pg_restore into an empty database, checks it, and the restored site equals the source at the snapshot', async () => {
    target = await scratch.create();
    await expectRestored(await cli(['restore', FILE], { DATABASE_URL: target }), target, header);
    // The schema's record came with it, and no newer migration was needed.
    expect((await query<{ name: string }>(target, 'select name from schema_migrations order by name')).map((r) => r.name)).toEqual(header.migrations);
    // A transient table is there, empty.
    expect(await query(db.url, 'select count(*)::int as n from rate_limits')).toEqual([{ n: 1 }]);
    expect(await query(target, 'select count(*)::int as n from rate_limits')).toEqual([{ n: 0 }]);

    // pg_dump carried the sequences too: expectSameSite checks the next id is past the rows.
    await expectSameSite(db.url, target, header.tables.find((t) => t.name === 'messages')!.rows);
    const members = await cli(['members', 'dev', '--json'], { DATABASE_URL: target });
    expect(JSON.parse(members.stdout)).toHaveLength(5);
  }, 120_000);

  it('refuses to restore into a database that is not empty, and drops nothing of it', async () => {
    const before = await query(target, 'select count(*)::int as n from messages');
    const res = await cli(['restore', FILE], { DATABASE_URL: target });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n').at(-1)).toMatch(/^listkeeper: restore refused, the database is left as it was: the database is not empty \(\d+ tables and sequences/);
    expect(await query(target, 'select count(*)::int as n from messages')).toEqual(before);
    expect((await query<{ n: number }>(target, 'select count(*)::int as n from lists'))[0].n).toBe(3);
  }, 60_000);

  it('refuses a damaged byte in pg_dump\'s archive before pg_restore reads it, and leaves the database empty', async () => {
    const bytes = fs.readFileSync(FILE);
    const ps = frames(bytes).filter((f) => f.kind === 'P');
    const victim = ps[Math.floor(ps.length / 2)];
    bytes[victim.at + 5 + 32 + Math.floor((victim.length - 32) / 2)] ^= 0x01;
    const bad = path.join(dir, 'bad.lkb');
    fs.writeFileSync(bad, bytes);
    await restoreRefused(bad, /^listkeeper: restore refused, the database is left as it was: the backup file is corrupt: the pg_dump archive's bytes from \d+ do not match their checksum$/);
  }, 60_000);

  it('refuses a truncated file and leaves the database empty', async () => {
    const cut = path.join(dir, 'cut.lkb');
    fs.writeFileSync(cut, fs.readFileSync(FILE).subarray(0, Math.floor(fs.statSync(FILE).size * 0.6)));
    await restoreRefused(cut, /^listkeeper: restore refused, the database is left as it was: the backup file is truncated \(it ends before its trailer\)/);
  }, 60_000);

  it('refuses a file cut just before its trailer, whose archive pg_restore may have committed, and empties the database again', async () => {
    const bytes = fs.readFileSync(FILE);
    const trailer = frames(bytes).at(-1)!;
    expect(trailer.kind).toBe('T');
    const cut = path.join(dir, 'no-trailer.lkb');
    fs.writeFileSync(cut, bytes.subarray(0, trailer.at));
    await restoreRefused(cut, /^listkeeper: restore refused, the database is left as it was: the backup file is truncated \(it ends before its trailer\)/);
  }, 60_000);

  it('refuses a trailer of another shape (not under the file\'s checksum) with one line, and empties the database again', async () => {
    const bytes = fs.readFileSync(FILE);
    const last = frames(bytes).at(-1)!;
    const trailer = JSON.parse(bytes.toString('utf8', last.at + 5, last.at + 5 + last.length));
    expect(Object.keys(trailer)).toEqual(expect.arrayContaining(['tables', 'sha256', 'pg_dump']));
    for (const [name, payload] of [['null', null], ['no-tables', { ...trailer, tables: undefined }], ['null-table', { ...trailer, tables: [null] }]] as const) {
      const body = Buffer.from(JSON.stringify(payload));
      const head = Buffer.alloc(5);
      head.write('T', 0, 'latin1');
      head.writeUInt32BE(body.length, 1);
      const file = path.join(dir, `trailer-${name}.lkb`);
      fs.writeFileSync(file, Buffer.concat([bytes.subarray(0, last.at), head, body]));
      await restoreRefused(file, /^listkeeper: restore refused, the database is left as it was: the backup file is corrupt: its trailer is not one listkeeper writes$/);
    }
  }, 120_000);

  it('drops what pg_restore committed when the check then fails (a table reads back with another sha256 than the trailer\'s)', async () => {
    const bytes = fs.readFileSync(FILE);
    // The trailer is not covered by the file's sha256 (it holds it): change one hex digit of lists' sha256.
    const lists = ends.find((e) => e.table === 'lists')!;
    const at = bytes.lastIndexOf(Buffer.from(lists.sha256));
    expect(at).toBeGreaterThan(frames(bytes).at(-1)!.at);
    bytes[at] = bytes[at] === 0x30 ? 0x31 : 0x30;
    const wrong = path.join(dir, 'wrong-sum.lkb');
    fs.writeFileSync(wrong, bytes);
    await restoreRefused(wrong, /^listkeeper: restore refused, the database is left as it was: check failed: table lists reads back as 3 rows whose checksum differs from the backup's \(3 rows\)$/);
  }, 60_000);

  it('a restore killed (-9) after pg_restore committed and before its check leaves a database that start-up and restore refuse, naming it', async () => {
    // pg_restore, then a pause before it exits: listkeeper waits for its exit before the check.
    const real = execFileSync('sh', ['-c', 'command -v pg_restore'], { encoding: 'utf8' }).trim();
    const bin = path.join(dir, 'pausing-pg-restore');
    const committed = path.join(dir, 'pg-restore-committed');
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, 'pg_restore'),
      `#!/bin/sh\n${real} "$@" || exit $?\n[ "$1" = --version ] && exit 0\necho $$ > ${committed}.tmp && mv ${committed}.tmp ${committed}\nexec sleep 120\n`,
      { mode: 0o755 },
    );
    const target = await scratch.create();
    const child = spawn(process.execPath, [BIN, 'restore', FILE], {
      env: { ...process.env, LOG_LEVEL: 'silent', DATABASE_URL: target, PATH: `${bin}:${process.env.PATH}` },
      stdio: 'ignore',
    });
    for (let i = 0; i < 600 && !fs.existsSync(committed); i++) await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(committed)).toBe(true);
    child.kill('SIGKILL');
    await once(child, 'exit');
    process.kill(Number(fs.readFileSync(committed, 'utf8')), 'SIGKILL');
    // pg_restore's rows are there, committed, and nothing checked them.
    expect(await query(target, 'select count(*)::int as n from lists')).toEqual([{ n: 3 }]);

    const line = /a restore into this database did not finish \(`listkeeper restore` was stopped after pg_restore committed and before its check\): drop the database, create it again and restore again$/;
    const start = await cli(['migrate'], { DATABASE_URL: target });
    expect(start.code, start.stdout).toBe(1);
    expect(start.stderr.trim().split('\n').at(-1)).toMatch(line);
    const again = await cli(['restore', FILE], { DATABASE_URL: target });
    expect(again.code).toBe(1);
    expect(again.stderr.trim().split('\n').at(-1)).toMatch(/^listkeeper: restore refused, the database is left as it was: /);
    expect(again.stderr.trim().split('\n').at(-1)).toMatch(line);
  }, 120_000);

  it('refuses a pg_dump backup when the PATH has no pg_restore, naming what to install, and leaves the database empty', async () => {
    const none = fakeTools('no-tools', {});
    await restoreRefused(
      FILE,
      /^listkeeper: restore refused, the database is left as it was: this backup was made with pg_dump 15\.\d+: restoring it needs pg_restore 15 or later, and there is none on the PATH; install PostgreSQL 15's client programs or later \(Debian: postgresql-client-15\)$/,
      { PATH: none },
    );
    const old = fakeTools('old-tools', { pg_restore: '14.12' });
    await restoreRefused(FILE, /: restoring it needs pg_restore 15 or later, and the PATH's is version 14\.12; install/, { PATH: old });
  }, 60_000);

  it('shows pg_restore\'s own error when it fails, and leaves the database as it was', async () => {
    // Empty by restore's measure (no table), but without the schema pg_dump's archive restores into.
    const empty = await scratch.create();
    await query(empty, 'drop schema public');
    const res = await cli(['restore', FILE], { DATABASE_URL: empty });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n').at(-1)).toMatch(
      /^listkeeper: restore refused, the database is left as it was: pg_restore failed \(exit 1\): pg_restore: error: could not execute query: ERROR: schema "public" does not exist Command was: CREATE EXTENSION/,
    );
    expect(await restoredObjects(empty)).toBe(0);
    expect(await query(empty, `select count(*)::int as n from pg_namespace where nspname = 'public'`)).toEqual([{ n: 0 }]);
  }, 60_000);

  it('shows pg_dump\'s own error when it fails part-way, and writes no file', async () => {
    // The edge of the world: a pg_dump of the right major that writes the start of an archive and fails.
    const bin = path.join(dir, 'failing-pg_dump');
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, 'pg_dump'),
      `#!/bin/sh\nif [ "$1" = --version ]; then echo 'pg_dump (PostgreSQL) 15.99'; exit 0; fi\nprintf PGDMP\necho 'pg_dump: error: query failed: server closed the connection unexpectedly' >&2\nexit 1\n`,
      { mode: 0o755 },
    );
    const file = path.join(dir, 'failed.lkb');
    const res = await cli(['backup', file], { DATABASE_URL: db.url, PATH: bin });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n').at(-1)).toBe('listkeeper: pg_dump failed (exit 1): pg_dump: error: query failed: server closed the connection unexpectedly');
    expect(fs.existsSync(file) || fs.existsSync(`${file}.tmp`)).toBe(false);
  }, 60_000);

  it('--method pg_dump refuses a pg_dump of another major than the server\'s with one line, and auto then takes the listkeeper format', async () => {
    const bin = fakeTools('pg18', { pg_dump: '18.1' });
    const file = path.join(dir, 'refused.lkb');
    const res = await cli(['backup', file, '--method', 'pg_dump'], { DATABASE_URL: db.url, PATH: bin });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(
      "listkeeper: --method pg_dump needs a pg_dump of the server's major version (PostgreSQL 15), and the pg_dump on the PATH is version 18.1: install PostgreSQL 15's client programs (Debian: postgresql-client-15) or use --method listkeeper\n",
    );
    expect(fs.existsSync(file) || fs.existsSync(`${file}.tmp`)).toBe(false);
    const none = await cli(['backup', file, '--method', 'pg_dump'], { DATABASE_URL: db.url, PATH: fakeTools('empty', {}) });
    expect(none.stderr).toMatch(/^listkeeper: --method pg_dump needs a pg_dump of the server's major version \(PostgreSQL 15\), and there is no pg_dump on the PATH: install/);

    const auto = await cli(['backup', file], { DATABASE_URL: db.url, PATH: bin });
    expect(auto.code, auto.stderr).toBe(0);
    expect(auto.stdout).toMatch(/; method: listkeeper\n$/);
    expect((await readBackup(file)).header.format).toBe(1);
  }, 60_000);

  it('writes and restores a gzipped pg_dump backup (FILE.gz), pg_dump leaving its own archive uncompressed', async () => {
    const gz = path.join(dir, 'site.lkb.gz');
    const res = await cli(['backup', gz], { DATABASE_URL: db.url });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/; method: pg_dump 15\.\d+\n$/);
    expect(fs.readFileSync(gz).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    const empty = await scratch.create();
    const restored = await cli(['restore', gz], { DATABASE_URL: empty });
    expect(restored.code, restored.stderr).toBe(0);
    const sql = 'select message_id, encode(sha256(raw), \'hex\') from messages order by id';
    expect(await query(empty, sql)).toEqual(await query(db.url, sql));
  }, 120_000);
});
