/*
 * `listkeeper backup --method listkeeper` (the format of COPY per table, the embedded default's)
 * of a populated site while `serve` takes posts over SMTP, then `listkeeper restore` into a new
 * empty database, compared with the source: every raw message byte for byte,
 * the counts the backup's header gives, the lists' settings and the memberships. And the refusals:
 * a database that is not empty, a truncated or corrupted file, a backup from a newer schema.
 * The pg_dump method: test/backup-pgdump.test.ts.
 */

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameReader, FrameWriter, type BackupHeader, type TableEnd } from '../src/db/backup-format.ts';
import { isAlive } from '../src/db/embedded.ts';
import { MIGRATION_LOCK } from '../src/db/migrate.ts';
import { expectRestored, expectSameSite, keepPosting, populateSite, query, readBackup, relations, scratchDatabases } from './helpers/backup-site.ts';
import { BIN, cli, ROOT } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import type { ServeProcess } from './helpers/serve-process.ts';

let db: TestDatabase;
let serve: ServeProcess;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-backup-'));
const scratch = scratchDatabases();
const emptyDatabase = scratch.create;
const FILE = path.join(dir, 'site.lkb');
// The embedded default (DATABASE_URL unset): PostgreSQL 18, where the machine's server is 15.
const embeddedDir = path.join(ROOT, '.test-data', `backup-${crypto.randomBytes(4).toString('hex')}`);
const embedded = { DATABASE_URL: undefined, DATABASE_READ_URL: undefined, DATA_DIR: embeddedDir, MAIL_DOMAIN: 'lists.example.org' };

beforeAll(async () => {
  db = await testDatabase();
  serve = await populateSite(db);
}, 120_000);

afterAll(async () => {
  await serve?.kill();
  await db?.drop();
  await scratch.dropAll();
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
    const load = keepPosting(serve);
    // Some posts land before the snapshot is taken (the process starts up first).
    while (load.sent() < 3) await new Promise((r) => setTimeout(r, 50));
    const sentBefore = load.sent();
    const res = await cli(['backup', FILE, '--method', 'listkeeper'], { DATABASE_URL: db.url });
    const sentDuring = load.sent() - sentBefore;
    await load.stop();
    expect(res.stderr).toMatch(/^backup: 100% \(\d+ of \d+ rows\), [\d.]+ MB, \d+ s: done$/m);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^backed up \d+ tables, \d+ rows \(\d+ messages\) to .*site\.lkb: [\d.]+ MB in [\d.]+ s, schema \d{4}_\w+\.sql; method: listkeeper\n$/);
    expect(sentDuring).toBeGreaterThan(0);
    expect(fs.existsSync(`${FILE}.tmp`)).toBe(false);
    const file = await readBackup(FILE);
    ({ ends } = file);
    header = file.header as BackupHeader;
    // --method listkeeper: the format of COPY (FORMAT binary) per table, not pg_dump's, though the PATH has a pg_dump of the server's major.
    expect(header.format).toBe(1);
    expect([...file.kinds].sort()).toEqual(['D', 'E', 'H', 'T']);
    const names = header.tables.map((t) => t.name);
    for (const t of ['lists', 'members', 'list_roles', 'sender_rules', 'messages', 'list_messages', 'held_messages', 'outbox', 'accounts']) expect(names).toContain(t);
    for (const t of ['sessions', 'rate_limits', 'schema_migrations']) expect(names).not.toContain(t);
    // The search vector is computed from the other columns on restore: left out, as generated columns are.
    const messageColumns = header.tables.find((t) => t.name === 'messages')!.columns.map((c) => c.name);
    expect(messageColumns).toContain('attachment_text');
    expect(messageColumns).not.toContain('tsv');
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
    await expectRestored(await cli(['restore', FILE], { DATABASE_URL: target }), target, header);
    // Every restored message is the source's, byte for byte (the source has more: load went on).
    await expectSameSite(db.url, target, header.tables.find((t) => t.name === 'messages')!.rows);
  }, 120_000);

  it('refuses to restore into a database that is not empty, and leaves it as it was', async () => {
    const before = await query(target, 'select count(*)::int as n from messages');
    const res = await cli(['restore', FILE], { DATABASE_URL: target });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n').at(-1)).toMatch(/^listkeeper: restore refused, the database is left as it was: the database is not empty \(\d+ tables and sequences, such as public\.\w+\): restore only goes into an empty database/);
    expect(await query(target, 'select count(*)::int as n from messages')).toEqual(before);
  }, 60_000);

  it('refuses a database that another process filled while the restore waited for the migrations\' lock', async () => {
    const empty = await emptyDatabase();
    // This session migrates, as a serve starting would: it holds the lock while the restore starts.
    const holder = new pg.Client({ connectionString: empty });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
      const restore = cli(['restore', FILE], { DATABASE_URL: empty });
      for (let i = 0; i < 300; i++) {
        const { rows } = await holder.query(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory'`);
        if (rows.length > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await holder.query('create table made_meanwhile (id int primary key)');
      await holder.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      const res = await restore;
      expect(res.code).toBe(1);
      // It looked before it waited, and then loaded the backup beside that table.
      expect(res.stderr.trim().split('\n').at(-1)).toMatch(/^listkeeper: restore refused, the database is left as it was: the database is not empty \(1 tables and sequences, such as public\.made_meanwhile\)/);
      expect(await relations(empty)).toBe(2); // the table and its key's index
    } finally {
      await holder.end();
    }
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

  it('refuses a backup whose header is not one listkeeper writes, naming it corrupt, before touching the database', async () => {
    for (const [name, change] of [['migrations', { migrations: 'x' }], ['tables', { tables: null }], ['sequences', { sequences: [{ name: 'x', last_value: "1'; drop", is_called: true }] }]] as const) {
      const file = path.join(dir, `shape-${name}.lkb`);
      fs.writeFileSync(file, await rewriteHeader((h) => ({ ...h, ...change })));
      const empty = await emptyDatabase();
      const res = await cli(['restore', file], { DATABASE_URL: empty });
      expect(res.code, name).toBe(1);
      expect(res.stderr, name).toMatch(/the backup file is corrupt: its header is not one listkeeper writes$/m);
      expect(await relations(empty)).toBe(0);
    }
  }, 120_000);

  it('refuses a backup made by a newer schema, before touching the database', async () => {
    // The same backup with one migration more in its header, rewritten with the format's writer.
    const newer = path.join(dir, 'newer.lkb');
    fs.writeFileSync(newer, await rewriteHeader((h) => ({ ...h, migrations: [...h.migrations, '9999_from_the_future.sql'] })));
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
    // auto: the PATH's pg_dump (15) is not the embedded server's major (18), so the listkeeper format.
    const backup = await cli(['backup', again], embedded);
    expect(backup.stdout).toMatch(/; method: listkeeper\n$/);
    const forced = await cli(['backup', path.join(dir, 'refused.lkb'), '--method', 'pg_dump'], embedded);
    expect(forced.code).toBe(1);
    expect(forced.stderr).toMatch(/^listkeeper: --method pg_dump needs a pg_dump of the server's major version \(PostgreSQL 18\), and the pg_dump on the PATH is version 15\.\d+: install PostgreSQL 18's client programs \(Debian: postgresql-client-18\) or use --method listkeeper\n$/);
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
    const res = await cli(['backup', gz, '--method', 'listkeeper'], { DATABASE_URL: db.url });
    expect(res.code, res.stderr).toBe(0);
    expect(fs.readFileSync(gz).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    const empty = await emptyDatabase();
    const restored = await cli(['restore', gz], { DATABASE_URL: empty });
    expect(restored.code, restored.stderr).toBe(0);
    const sql = 'select message_id, encode(sha256(raw), \'hex\') from messages order by id';
    expect(await query(empty, sql)).toEqual(await query(db.url, sql));
  }, 120_000);

  it('restores a gzipped backup of several members (as gzip -dc reads it), and refuses one that goes on after its gzip data, leaving the database empty', async () => {
    const bytes = fs.readFileSync(FILE);
    const gz = zlib.gzipSync(bytes);
    // Compressed in two parts and joined (cat a.gz b.gz), split inside a frame: one backup.
    const joined = path.join(dir, 'joined.lkb.gz');
    fs.writeFileSync(joined, Buffer.concat([zlib.gzipSync(bytes.subarray(0, 1000)), zlib.gzipSync(bytes.subarray(1000))]));
    const target = await emptyDatabase();
    const restored = await cli(['restore', joined], { DATABASE_URL: target });
    expect(restored.code, restored.stderr).toBe(0);
    expect(await query(target, 'select count(*)::int as n from messages')).toEqual([{ n: header.tables.find((t) => t.name === 'messages')!.rows }]);
    // Bytes after it that are not gzip: listkeeper renames a backup into place whole, so they were
    // added since. It said "truncated or corrupt (gzip: incorrect header check)".
    const appended = path.join(dir, 'appended.lkb.gz');
    fs.writeFileSync(appended, Buffer.concat([gz, Buffer.from('GET /site.lkb.gz HTTP/1.1\r\n')]));
    const empty = await emptyDatabase();
    const res = await cli(['restore', appended], { DATABASE_URL: empty });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n').at(-1)).toBe(
      `listkeeper: restore refused, the database is left as it was: the backup file is corrupt: it goes on after its gzip data (the bytes from byte ${gz.length} are not gzip); ` +
        'the backup before them checked out against its checksums: to restore it all the same, use gzip -dc FILE | listkeeper restore -',
    );
    expect(await relations(empty)).toBe(0);
    // Garbage after gzip data that ends before the backup's trailer: truncated.
    const cut = path.join(dir, 'cut-appended.lkb.gz');
    const cutGz = zlib.gzipSync(bytes.subarray(0, bytes.length >> 1));
    fs.writeFileSync(cut, Buffer.concat([cutGz, Buffer.from('garbage')]));
    const cutRes = await cli(['restore', cut], { DATABASE_URL: empty });
    expect(cutRes.code).toBe(1);
    expect(cutRes.stderr).toContain(`the backup file is truncated (its gzip data ends before its trailer), and the bytes from byte ${cutGz.length} are not gzip`);
    expect(await relations(empty)).toBe(0);
  }, 120_000);

  it('refuses a folder or an empty name for FILE, and a folder it cannot write in, before making the backup', async () => {
    const folder = path.join(dir, 'a-folder');
    fs.mkdirSync(folder);
    const res = await cli(['backup', folder, '--method', 'listkeeper'], { DATABASE_URL: db.url });
    // It was refused by the rename at the end ("error: EISDIR … rename"), after the whole backup.
    expect([res.code, res.stdout, res.stderr]).toEqual([1, '', `listkeeper: backup: ${folder} is a folder: name the file to write (${folder}/site.lkb)\n`]);
    const empty = await cli(['backup', '', '--method', 'listkeeper'], { DATABASE_URL: db.url });
    expect([empty.code, empty.stderr]).toEqual([1, 'listkeeper: backup: FILE is empty: name the file to write (site.lkb)\n']);
    const nowhere = await cli(['backup', path.join(dir, 'no-such-folder', 'x.lkb'), '--method', 'listkeeper'], { DATABASE_URL: db.url });
    expect([nowhere.code, nowhere.stderr]).toEqual([1, `listkeeper: backup: cannot write ${path.join(dir, 'no-such-folder', 'x.lkb')}.tmp (ENOENT)\n`]);
    expect(fs.readdirSync(folder)).toEqual([]);
    expect(fs.existsSync(`${folder}.tmp`)).toBe(false);
  }, 120_000);

  it('writes its own new file, mode 0600, whatever FILE.tmp was: never through a symlink, never into a file left there', async () => {
    const victim = path.join(dir, 'victim.txt');
    fs.writeFileSync(victim, 'not a backup');
    const linked = path.join(dir, 'linked.lkb');
    fs.symlinkSync(victim, `${linked}.tmp`);
    const left = path.join(dir, 'left.lkb');
    fs.writeFileSync(`${left}.tmp`, 'stale');
    fs.chmodSync(`${left}.tmp`, 0o666);
    for (const file of [linked, left]) {
      const res = await cli(['backup', file, '--method', 'listkeeper'], { DATABASE_URL: db.url });
      expect(res.code, res.stderr).toBe(0);
      const st = fs.lstatSync(file);
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      expect(fs.existsSync(`${file}.tmp`)).toBe(false);
    }
    expect(fs.readFileSync(victim, 'utf8')).toBe('not a backup');
  }, 120_000);
});

describe('listkeeper restore of a database an operator added to', () => {
  it('restores a table of their own and a column they added to lists, which backup copied, rather than refusing the file', async () => {
    // The operator keeps a table of theirs (a serial key) and a column on lists in the site's database.
    const source = await emptyDatabase();
    expect((await cli(['migrate'], { DATABASE_URL: source })).code).toBe(0);
    expect((await cli(['list', 'create', 'ops@lists.example.org'], { DATABASE_URL: source })).code).toBe(0);
    await query(source, `create table local_notes (id serial primary key, note varchar(40) not null);
      insert into local_notes (note) values ('billing contact'), ('renew in march');
      alter table lists add column cost_centre text; update lists set cost_centre = 'CC-7'`);
    const file = path.join(dir, 'operator.lkb');
    const backup = await cli(['backup', file, '--method', 'listkeeper'], { DATABASE_URL: source });
    expect(backup.code, backup.stderr).toBe(0);

    // Before, the restore refused the file ("the backup's table local_notes does not match the schema its migrations make here").
    const target = await emptyDatabase();
    const res = await cli(['restore', file], { DATABASE_URL: target });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^made from the backup, not by listkeeper's migrations \(added to the database by hand\): column lists\.cost_centre, table local_notes; /m);
    expect(await query(target, 'select id, note from local_notes order by id')).toEqual([{ id: 1, note: 'billing contact' }, { id: 2, note: 'renew in march' }]);
    expect(await query(target, 'select address, cost_centre from lists')).toEqual([{ address: 'ops@lists.example.org', cost_centre: 'CC-7' }]);
    expect(await query(target, 'select last_value::int as v from local_notes_id_seq')).toEqual([{ v: 2 }]);

    // The header is the file's, and anyone can write a file: a "type" that is a statement is refused, not run.
    for (const type of ['int); create table pwned (x int); --', "text default 'x'"]) {
      const hostile = path.join(dir, 'operator-hostile.lkb');
      fs.writeFileSync(hostile, await rewriteHeader((h) => ({
        ...h, tables: h.tables.map((t) => (t.name === 'local_notes' ? { ...t, columns: t.columns.map((c) => (c.name === 'note' ? { ...c, type } : c)) } : t)),
      }), file));
      const empty = await emptyDatabase();
      const refused = await cli(['restore', hostile], { DATABASE_URL: empty });
      expect(refused.code, type).toBe(1);
      expect(refused.stderr, type).toMatch(/the backup's table local_notes does not match the schema its migrations make here/);
      expect(await query(empty, `select count(*)::int as n from pg_class where relname = 'pwned'`)).toEqual([{ n: 0 }]);
    }
  }, 120_000);
});

describe('listkeeper backup when writing fails part-way', () => {
  it('ends with exit code 1 and one line when the file cannot grow (a file size limit, as a full disk), leaving neither FILE nor FILE.tmp', async () => {
    await importBigMessage();
    const file = path.join(dir, 'limited.lkb');
    // 2048 blocks of 512 bytes: the header fits, the big message's row does not (a write fails in
    // the middle of a table's COPY). Ignored, SIGXFSZ becomes the write's EFBIG, as ENOSPC would be.
    const res = await run('sh', ['-c', `trap '' XFSZ; ulimit -f 2048; exec "$0" "$@"`, process.execPath, BIN, 'backup', file, '--method', 'listkeeper']);
    // It exited with code 13 and no line: a rollback queued behind the abandoned COPY never ran.
    expect([res.code, res.stderr.trim().split('\n').at(-1)]).toEqual([1, 'listkeeper: error: EFBIG: file too large, write']);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);
  }, 120_000);

  it('ends with exit code 1 and one line when the reader of `backup -` goes away before the end', async () => {
    await importBigMessage();
    // It ended quietly with 0, as `members | head` does: `backup - | ssh …` took that for a backup.
    const res = await run(process.execPath, [BIN, 'backup', '-', '--method', 'listkeeper'], 200_000);
    expect([res.code, res.stderr.trim().split('\n').at(-1)]).toEqual([1, 'listkeeper: backup: stdout was closed before the backup was written to the end: what was read of it is not a backup']);
  }, 120_000);
});

let bigImported = false;
/** A 3 MB message in dev@, so that the messages table's COPY spans many writes. */
async function importBigMessage() {
  if (bigImported) return;
  const mbox = path.join(dir, 'big.mbox');
  const body = Array.from({ length: 40_000 }, (_, i) => `line ${i} of a long message, long enough to span many writes`).join('\n');
  fs.writeFileSync(mbox, `From big@example.org Wed Dec  2 10:00:00 2026\nFrom: Big <big@example.org>\nSubject: big\nMessage-ID: <big@example.org>\nDate: Wed, 02 Dec 2026 11:00:00 +0000\n\n${body}\n\n`);
  const res = await cli(['import', 'dev@lists.example.org', mbox], { DATABASE_URL: db.url });
  expect(res.code, res.stderr).toBe(0);
  bigImported = true;
}

/** Runs a command with the test database; `closeAfter`: bytes of stdout read before its reader closes it. */
function run(cmd: string, args: string[], closeAfter?: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, LOG_LEVEL: 'silent', DATABASE_URL: db.url }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let read = 0;
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d: Buffer) => {
      read += d.length;
      if (closeAfter !== undefined && read >= closeAfter) child.stdout.destroy();
    });
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

/** FILE (the suite's listkeeper-format backup) with its header changed, rewritten with the format's writer. */
async function rewriteHeader(change: (h: BackupHeader) => unknown, from = FILE): Promise<Buffer> {
  const reader = new FrameReader(fs.createReadStream(from));
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const writer = new FrameWriter(out, new Promise<never>(() => undefined));
  await reader.start();
  await writer.start();
  for (let f = await reader.next(); f; f = await reader.next()) {
    if (f.kind === 'H') await writer.json('H', change(JSON.parse(f.payload.toString()) as BackupHeader));
    else if (f.kind === 'T') await writer.json('T', { ...JSON.parse(f.payload.toString()), sha256: writer.digest() });
    else await writer.frame(f.kind, f.payload);
  }
  return Buffer.concat(chunks);
}
