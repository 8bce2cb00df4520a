/*
 * A rolling upgrade (docs/operations.md, "Upgrades"): the previous release (a fixed commit of this
 * repository, test/helpers/previous-release.ts) migrates an empty database and serves a list; this
 * release's migrations are applied while it runs; it goes on posting, delivering and serving pages
 * on the new schema, with this release running beside it on the same database; a post with a text
 * attachment that it archives after this release's attachment-text job has finished is read by
 * this release's workers all the same; then it stops, and the conversion job this release brought
 * finishes.
 */

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { migrationFiles } from '../src/db/migrate.ts';
import { withDatabase } from './global-setup.ts';
import { startCaptureRelay, type CaptureRelay } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { adminQuery } from './helpers/db.ts';
import { previousRelease, type Release } from './helpers/previous-release.ts';
import { problemLines, spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { message, sendRaw } from './helpers/smtp.ts';
import { until } from './helpers/worker-process.ts';

const adminUrl = inject('adminDatabaseUrl');
const name = `lk_rolling_${crypto.randomBytes(5).toString('hex')}`;
const url = withDatabase(adminUrl, name);
let prev: Release;
let relay: CaptureRelay;
let old: ServeProcess | null = null;
let current: ServeProcess | null = null;
let pool: pg.Pool;
const MEMBERS = ['ann@example.net', 'bob@example.net'];

const admin = (sql: string) => adminQuery(adminUrl, sql);

const env = () => ({ DATABASE_URL: url, RELAY_URL: relay.url, DELIVERY_POLL_MS: '200', WEB_PROCESSES: '1' });
const oldCli = (args: string[]) => cli(args, { DATABASE_URL: url }, undefined, prev.root, prev.bin);

async function post(serve: ServeProcess, id: string, subject: string) {
  const sent = await sendRaw(serve.smtpPort!, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, message({ id, subject, body: `${subject}.\n` }));
  expect(sent.ok, sent.response).toBe(true);
}

/** The copies the relay got of one post, by recipient. */
const copiesOf = (id: string) => relay.messages.filter((m) => m.raw.toString('latin1').includes(`Message-ID: <${id}>`)).map((m) => m.to).sort();

async function delivered(id: string) {
  await until(() => copiesOf(id).length >= MEMBERS.length, `both copies of ${id}`, 20_000);
  expect(copiesOf(id)).toEqual(MEMBERS);
}

async function page(serve: ServeProcess, path: string): Promise<string> {
  const res = await fetch(`${serve.webUrl}${path}`);
  expect(res.status, path).toBe(200);
  return res.text();
}

beforeAll(async () => {
  [prev, relay] = await Promise.all([previousRelease(), startCaptureRelay()]);
  await admin(`create database ${name}`);
  pool = new pg.Pool({ connectionString: url, max: 2 });
  // An idle connection ended by the server (the drop below, another file's fault test) is no
  // failure of this file's; without a listener the pool throws it as an uncaught exception.
  pool.on('error', () => undefined);
}, 300_000);

afterAll(async () => {
  await Promise.all([old?.kill('SIGKILL'), current?.kill('SIGKILL')]);
  await pool?.end();
  await relay?.stop();
  await admin(`drop database if exists ${name} with (force)`);
});

describe(`the previous release beside this one on one database`, () => {
  it('the previous release migrates an empty database and serves a list', async () => {
    const migrated = await oldCli(['migrate']);
    expect(migrated.code, migrated.stderr).toBe(0);
    const newer = migrationFiles().filter((f) => !prev.migrations.includes(f));
    expect(newer.length, 'this release brings migrations the previous one does not have').toBeGreaterThan(0);
    const created = await oldCli(['list', 'create', 'dev@lists.example.org', '--post-policy', 'open', '--archive', 'public']);
    expect(created.code, created.stderr).toBe(0);
    expect((await oldCli(['subscribe', 'dev@lists.example.org', ...MEMBERS])).code).toBe(0);
    old = await spawnServe({ roles: ['smtp', 'web', 'worker'], env: env(), root: prev.root });
    await post(old, 'before@example.org', 'Posted before the upgrade');
    await delivered('before@example.org');
  }, 60_000);

  it("this release's migrations apply while the previous release serves, quickly", async () => {
    const t0 = Date.now();
    const r = await cli(['migrate'], { DATABASE_URL: url });
    expect(r.code, r.stderr).toBe(0);
    const newer = migrationFiles().filter((f) => !prev.migrations.includes(f));
    for (const f of newer) expect(r.stdout).toContain(f);
    expect(Date.now() - t0).toBeLessThan(20_000);
    // The previous release still calls itself ready: the newer migrations are not "pending" to it.
    const ready = await fetch(`${old!.webUrl}/healthz?ready`);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
  }, 30_000);

  it('the previous release posts, delivers and serves pages on the new schema, beside this release', async () => {
    await post(old!, 'during-old@example.org', 'Posted to the old release during the upgrade');
    await delivered('during-old@example.org');
    current = await spawnServe({ roles: ['smtp', 'web', 'worker'], env: env() });
    await post(current, 'during-new@example.org', 'Posted to the new release during the upgrade');
    await delivered('during-new@example.org');
    // Each release reads what the other archived.
    for (const s of [old!, current]) {
      const list = await page(s, '/lists/dev/');
      for (const subject of ['Posted before the upgrade', 'Posted to the old release during the upgrade', 'Posted to the new release during the upgrade']) {
        expect(list).toContain(subject);
      }
      expect(await page(s, '/message-id/during-new@example.org')).toContain('Posted to the new release during the upgrade.');
      expect(await page(s, '/message-id/during-old@example.org')).toContain('Posted to the old release during the upgrade.');
    }
    // A message the old release archived on the new schema got its digest from the new trigger.
    const { rows } = await pool.query<{ ok: boolean }>(
      `select d.sha256 = sha256(m.raw) as ok from messages m join message_digests d on d.message_id = m.id where m.message_id = 'during-old@example.org'`);
    expect(rows).toEqual([{ ok: true }]);
  }, 60_000);

  it('a backup the previous release takes of the new schema restores under this release, search vectors and all', async () => {
    // The previous release backs up the search vector as a column (it was generated, now a
    // trigger's): this release's restore takes it, and the trigger computes it again as it loads.
    const file = path.join(os.tmpdir(), `lk-rolling-${crypto.randomBytes(4).toString('hex')}.lkb`);
    const target = `${name}_restored`;
    await admin(`create database ${target}`);
    try {
      const backup = await oldCli(['backup', file]);
      expect(backup.code, backup.stderr).toBe(0);
      const restored = await cli(['restore', file], { DATABASE_URL: withDatabase(adminUrl, target) });
      expect(restored.code, restored.stderr).toBe(0);
      const vectors = `select message_id, tsv::text as tsv from messages order by message_id`;
      const copy = new pg.Client({ connectionString: withDatabase(adminUrl, target) });
      await copy.connect();
      try {
        const { rows } = await copy.query(vectors);
        expect(rows.map((r) => r.message_id)).toEqual(['before@example.org', 'during-new@example.org', 'during-old@example.org']);
        expect(rows).toEqual((await pool.query(vectors)).rows);
        expect(rows.every((r) => r.tsv.includes("'upgrad'"))).toBe(true);
      } finally {
        await copy.end();
      }
    } finally {
      fs.rmSync(file, { force: true });
      await admin(`drop database if exists ${target} with (force)`);
    }
  }, 60_000);

  it("a post the previous release archives after the attachment-text job finished gets its attachment's text from this release's workers", async () => {
    // The previous release stores no attachment text: the job, done, is opened again for it.
    await until(async () => {
      const { rows } = await pool.query<{ done: boolean }>(`select done_at is not null as done from conversions where name = 'attachment-text'`);
      return rows[0].done;
    }, 'the attachment-text conversion', 20_000);
    const b = 'late-boundary';
    const raw = [
      'From: alice@example.org', 'To: dev@lists.example.org', 'Subject: A log from the old release', 'Date: Mon, 02 Nov 2026 10:00:00 +0000',
      'Message-ID: <late-old@example.org>', 'MIME-Version: 1.0', `Content-Type: multipart/mixed; boundary="${b}"`, '',
      `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', 'The log is attached.', '',
      `--${b}`, 'Content-Type: text/plain; name="server.log"', 'Content-Disposition: attachment; filename="server.log"', '',
      'FATAL: quetzalrolling ran out of shared memory', '', `--${b}--`, '',
    ].join('\r\n');
    const sent = await sendRaw(old!.smtpPort!, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, raw);
    expect(sent.ok, sent.response).toBe(true);
    await delivered('late-old@example.org');
    const text = await until(async () => {
      const { rows } = await pool.query<{ text: string | null }>(`select attachment_text as text from messages where message_id = 'late-old@example.org'`);
      return rows[0]?.text ?? false;
    }, "the old release's post read by this release's workers", 20_000);
    expect(text).toContain('quetzalrolling');
    expect(await page(current!, '/search?q=quetzalrolling')).toContain('A log from the old release');
    // Done again on the pass after the one that read it (CONVERSION_PAUSE_MS later): waited for,
    // as the text was; asked at once, CI's load once caught the job between the two passes.
    await until(async () => {
      const { rows } = await pool.query<{ done: boolean }>(`select done_at is not null as done from conversions where name = 'attachment-text'`);
      return rows[0].done;
    }, 'the attachment-text conversion done again', 20_000);
  }, 60_000);

  it('the previous release stops cleanly, having logged no error, and the conversion finishes under this one', async () => {
    await old!.kill('SIGTERM');
    expect((await old!.exited).code).toBe(0);
    expect(problemLines(old!.output()).filter((l) => l.level >= 50)).toEqual([]);
    old = null;
    await until(async () => {
      const { rows } = await pool.query<{ done: boolean }>(`select done_at is not null as done from conversions where name = 'message-digests'`);
      return rows[0].done;
    }, 'the message-digests conversion', 20_000);
    const { rows } = await pool.query<{ messages: number; right: number }>(
      `select (select count(*)::int from messages) as messages,
              (select count(*)::int from messages m join message_digests d on d.message_id = m.id where d.sha256 = sha256(m.raw)) as right`);
    expect(rows[0]).toEqual({ messages: 4, right: 4 });
    // Each member got each post once, whichever release's worker sent it (and a welcome on subscribing).
    const posts = ['before@example.org', 'during-old@example.org', 'during-new@example.org', 'late-old@example.org'];
    expect(relay.messages.map((m) => posts.find((id) => m.raw.toString('latin1').includes(`Message-ID: <${id}>`)) ?? /^Subject: (.*)$/m.exec(m.raw.toString('latin1'))?.[1]).sort())
      .toEqual([...posts, ...posts, 'Welcome to dev@lists.example.org', 'Welcome to dev@lists.example.org'].sort());
  }, 30_000);
});
