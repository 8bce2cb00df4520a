import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Corpus } from '../bench/corpus.ts';
import { exportMbox } from '../src/core/archive-export.ts';
import pg from 'pg';
import { importMbox, partOf, type BrokenMessage } from '../src/core/archive-import.ts';
import { importBatch, recordImportBatch, resumePoint, startImportRun } from '../src/db/archive-import.ts';
import type { ListRow } from '../src/db/lists.ts';
import { archiveMessage } from '../src/db/messages.ts';
import type { Queryable } from '../src/db/pool.ts';
import { generatedMessageId } from '../src/mail/message-id.ts';
import { mboxrdEntry, readMbox } from '../src/mail/mbox.ts';
import { archiveIdentity } from '../src/mail/raw-headers.ts';
import { parse } from '../src/mail/parse.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { fixture, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let tmp: string;
let corpusFile: string;
let corpus: { raw: Buffer; messageId: string }[];

beforeAll(async () => {
  db = await testDatabase();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-import-'));
  const c = new Corpus({ messages: 400, seed: 11 });
  corpusFile = path.join(tmp, 'corpus.mbox');
  c.writeMbox(corpusFile);
  corpus = [...c.messages()].map((m) => ({ raw: m.raw, messageId: m.messageId }));
});

afterAll(async () => {
  await db?.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const count = async (q: Queryable, listId: number) => (await q.query('select count(*)::int as n from list_messages where list_id = $1', [listId])).rows[0].n;

/** Each message's thread as the set of Message-IDs it shares a thread with, and its parent. */
async function threading(q: Queryable) {
  const { rows } = await q.query(`select m.message_id, p.message_id as parent, m.thread_id from messages m left join messages p on p.id = m.parent_id`);
  const members = new Map<number, string[]>();
  for (const r of rows) members.set(r.thread_id, [...(members.get(r.thread_id) ?? []), r.message_id]);
  return new Map(rows.map((r) => [r.message_id, { parent: r.parent, thread: members.get(r.thread_id)!.sort().join(' ') }]));
}

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function writeMbox(file: string, raws: Buffer[]) {
  fs.writeFileSync(file, Buffer.concat(raws.map((r) => mboxrdEntry(r, 'someone@example.org', new Date('2026-01-01T00:00:00Z')))));
}

describe('importing mbox files', () => {
  it('reads a Mailman 2 pipermail archive: addresses restored, quoted From lines unquoted, replies threaded', async () => {
    const list = await newList(db.pool, 'pipermail@lists.example.org');
    const file = path.join(tmp, '2009-January.txt');
    fs.writeFileSync(file, fixture('pipermail-2009-January.txt'));
    const state = await importMbox(db, list, file);
    expect(state).toMatchObject({ seen: 3, added: 3, broken: 0, duplicates: 0 });
    const { rows } = await db.pool.query(`select message_id, from_email, from_name, thread_id, body from messages where message_id like 'pm-%' order by date`);
    expect(rows.map((r) => [r.message_id, r.from_email, r.from_name])).toEqual([
      ['pm-1@example.org', 'alice@example.org', 'Alice Example'],
      ['pm-2@example.com', 'bob@example.com', 'Bob Builder'],
      ['pm-3@example.org', 'alice@example.org', 'Alice Example'],
    ]);
    expect(new Set(rows.map((r) => r.thread_id)).size).toBe(1);
    expect(rows[1].body).toContain('\nFrom now on we ship monthly.');
  });

  it('keeps a pipermail "X at Y" From within the limits of an address: too long or with a control character, it is none', async () => {
    const list = await newList(db.pool, 'pipermail-limits@lists.example.org');
    const file = path.join(tmp, 'pipermail-limits.txt');
    const entry = (id: string, local: string) =>
      `From x at example.org  Thu Jan  1 10:00:00 2009\nFrom: ${local} at example.org (Someone)\nDate: Thu, 01 Jan 2009 10:00:00 +0000\nSubject: hi\nMessage-ID: <${id}>\n\nhello\n\n`;
    fs.writeFileSync(file, entry('pm-long@example.org', 'a'.repeat(3000)) + entry('pm-ctl@example.org', 'ctl\x01x') + entry('pm-ok@example.org', 'Ok'));
    const state = await importMbox(db, list, file);
    expect(state).toMatchObject({ seen: 3, added: 3, broken: 0 });
    const { rows } = await db.pool.query(`select message_id, from_email from messages where message_id like 'pm-%' and message_id not like 'pm-_@%' order by message_id`);
    expect(rows.map((r) => [r.message_id, r.from_email])).toEqual([['pm-ctl@example.org', ''], ['pm-long@example.org', ''], ['pm-ok@example.org', 'ok@example.org']]);
  });

  it('dates a message whose Date is missing, garbage or far off by its From_ line, not by the day of the import', async () => {
    const list = await newList(db.pool, 'old-dates@lists.example.org');
    const file = path.join(tmp, 'old-dates.txt');
    const entry = (fromLine: string, id: string, date: string | null) =>
      `${fromLine}\nFrom: alice at example.org (Alice)\n${date === null ? '' : `Date: ${date}\n`}Subject: ${id}\nMessage-ID: <${id}>\n\nhello\n\n`;
    fs.writeFileSync(file, [
      // pipermail's From_ line (two spaces, "at"), a message that says nothing of its date
      entry('From alice at example.org  Thu Jan  1 10:00:00 2009', 'd-none@example.org', null),
      // a Date that is no date, and one from a client whose clock said 2999
      entry('From alice at example.org  Sat Feb 14 08:30:05 2009', 'd-garbage@example.org', 'yesterday-ish'),
      entry('From alice@example.org Mon Mar  2 23:59:59 2009', 'd-future@example.org', 'Mon, 02 Mar 2999 10:00:00 +0000'),
      // a Date that is no date, with a Received hop that has one: the hop's, as documented
      entry('From alice@example.org Mon Mar 16 00:00:00 2009', 'd-received@example.org', 'someday\nReceived: from a.example.org by b.example.org; Sun, 15 Mar 2009 10:00:00 +0000'),
      // a From_ line with its zone, as some MTAs wrote it
      entry('From alice@example.org Tue Mar  3 12:00:00 +0200 2009', 'd-zone@example.org', 'Mon, 32 Mar 2009 10:00:00 +0000'),
      // a plausible Date is kept, whatever the From_ line says
      entry('From alice@example.org Wed Mar  4 12:00:00 2009', 'd-good@example.org', 'Wed, 04 Mar 2009 11:00:00 +0000'),
      // a From_ line without a year the parser can read: the import's time, as before
      entry('From alice@example.org Wed Mar  4 12:00:00', 'd-noyear@example.org', null),
      // git format-patch puts one fixed date on every From_ line: a Date after it stands, and none is none
      entry('From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001', 'd-patch@example.org', 'Tue, 05 Mar 2024 09:00:00 +0000'),
      entry('From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001', 'd-patch-none@example.org', null),
    ].join(''));
    const before = Date.now();
    const state = await importMbox(db, list, file);
    expect(state).toMatchObject({ seen: 9, added: 9, broken: 0 });
    const { rows } = await db.pool.query(`select message_id, date from messages where message_id like 'd-%@example.org'`);
    const dates = Object.fromEntries(rows.map((r) => [r.message_id, (r.date as Date).toISOString()]));
    expect(dates).toMatchObject({
      'd-none@example.org': '2009-01-01T10:00:00.000Z',
      'd-garbage@example.org': '2009-02-14T08:30:05.000Z',
      'd-future@example.org': '2009-03-02T23:59:59.000Z',
      'd-zone@example.org': '2009-03-03T10:00:00.000Z',
      'd-good@example.org': '2009-03-04T11:00:00.000Z',
      'd-patch@example.org': '2024-03-05T09:00:00.000Z',
      'd-received@example.org': '2009-03-15T10:00:00.000Z',
    });
    expect(new Date(dates['d-noyear@example.org']).getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(new Date(dates['d-patch-none@example.org']).getTime()).toBeGreaterThanOrEqual(before - 1000);
  });

  it('reports a different message under a Message-ID the list or the file already has, rather than counting it as already archived', async () => {
    const list = await newList(db.pool, 'reused-ids@lists.example.org');
    const msg = (id: string, body: string, trace = '') =>
      Buffer.from(`${trace}From: alice@example.org\nDate: Thu, 01 Jan 2009 10:00:00 +0000\nSubject: s ${id}\nMessage-ID: <${id}>\n\n${body}\n`);
    // Archived live before the import.
    const live = msg('live@example.org', 'the live message');
    await archiveMessage(db.pool, list.id, live, await parse(live));
    const file = path.join(tmp, 'reused-ids.mbox');
    writeMbox(file, [
      msg('twice@example.org', 'first of two'),
      msg('twice@example.org', 'a second message under the same id'),
      msg('twice@example.org', 'first of two', 'Received: from a by b; Thu, 01 Jan 2009 10:00:01 +0000\n'), // the same, trace aside
      msg('live@example.org', 'not the live message at all'),
      live, // the live message itself
      msg('live@example.org', 'the live message', 'Received: from c by d; Thu, 01 Jan 2009 10:00:02 +0000\n'),
    ]);
    const broken: BrokenMessage[] = [];
    const state = await importMbox(db, list, file, { onBroken: (b) => broken.push(b) });
    expect(state).toMatchObject({ seen: 6, added: 1, duplicates: 3, broken: 2 });
    expect(broken.map((b) => [b.index, b.messageId, b.reason])).toEqual([
      [1, 'twice@example.org', 'Message-ID <twice@example.org> already names a different message in this file or in the archive of reused-ids@lists.example.org'],
      [3, 'live@example.org', 'Message-ID <live@example.org> already names a different message in this file or in the archive of reused-ids@lists.example.org'],
    ]);
    const { rows } = await db.pool.query(
      `select m.body from messages m join list_messages lm on lm.message_id = m.id where lm.list_id = $1 order by m.message_id`, [list.id]);
    expect(rows.map((r) => r.body.trim())).toEqual(['the live message', 'first of two']);
    // A second run says the same of them.
    const again = await importMbox(db, list, file, { onBroken: () => {} });
    expect(again).toMatchObject({ seen: 6, added: 0, duplicates: 4, broken: 2 });
    // Into an empty list, in chunks of two messages: the first under each id is stored, and the
    // others are compared with it also when its batch is still on its way.
    const empty = await newList(db.pool, 'reused-ids-2@lists.example.org');
    const chunked: number[] = [];
    expect(await importMbox(db, empty, file, { batchSize: 1, onBroken: (b) => chunked.push(b.index) })).toMatchObject({ seen: 6, added: 2, duplicates: 1, broken: 3 });
    expect(chunked).toEqual([1, 4, 5]);
  });

  it('reads a HyperKitty export: a message without Message-ID gets its stable id, a broken one is reported and skipped', async () => {
    const list = await newList(db.pool, 'ops@lists.example.org');
    const file = path.join(tmp, 'ops.mbox');
    fs.writeFileSync(file, fixture('hyperkitty-export.mbox'));
    const broken: BrokenMessage[] = [];
    const state = await importMbox(db, list, file, { onBroken: (b) => broken.push(b) });
    expect(state).toMatchObject({ seen: 4, added: 3, broken: 1 });
    expect(broken).toHaveLength(1);
    expect(broken[0].index).toBe(2);
    expect(broken[0].offset).toBe(fixture('hyperkitty-export.mbox').indexOf('From broken@example.org'));
    expect(broken[0].reason).toMatch(/header/);
    const last = (await readAll(file))[3];
    const generated = generatedMessageId(last);
    const { rows } = await db.pool.query('select subject from messages where message_id = $1', [generated]);
    expect(rows[0].subject).toBe('After the broken one');
    expect((await db.pool.query(`select body from messages where message_id = 'hk-1@example.org'`)).rows[0].body).toContain('\nFrom the logs: a full disk.');
  });

  it('adds nothing when the same file is imported a second time', async () => {
    const list = await newList(db.pool, 'twice@lists.example.org');
    const first = await importMbox(db, list, corpusFile, { batchSize: 150 });
    expect(first).toMatchObject({ seen: 400, added: 400, duplicates: 0, broken: 0 });
    const messages = (await db.pool.query('select count(*)::int as n from messages')).rows[0].n;
    const second = await importMbox(db, list, corpusFile, { batchSize: 150 });
    expect(second).toMatchObject({ seen: 400, added: 0, duplicates: 400, broken: 0, resumedAt: null });
    expect(await count(db.pool, list.id)).toBe(400);
    expect((await db.pool.query('select count(*)::int as n from messages')).rows[0].n).toBe(messages);
  });

  it('resumes an interrupted import where it stopped, and ends with every message once', async () => {
    const other = await testDatabase();
    try {
      const list = await newList(other.pool, 'resume@lists.example.org');
      const ac = new AbortController();
      // Chunks of 2 × 50: the import stops after the chunk in flight when asked.
      const partial = await importMbox(other, list, corpusFile, { batchSize: 50, signal: ac.signal, onProgress: () => ac.abort() });
      expect(partial.interrupted).toBe(true);
      expect(partial.added).toBeGreaterThanOrEqual(100);
      expect(partial.added).toBeLessThan(400);
      const rest = await importMbox(other, list, corpusFile, { batchSize: 50 });
      expect(rest.resumedAt).toBe(partial.seen);
      expect(rest).toMatchObject({ seen: 400, added: 400, duplicates: 0, interrupted: false });
      expect(await count(other.pool, list.id)).toBe(400);
    } finally {
      await other.drop();
    }
  });

  it('resumes after the longest unbroken chain of wholly committed chunks (a batch per writer each)', async () => {
    const list = await newList(db.pool, 'gap@lists.example.org');
    const run = await startImportRun(db.pool, list.id, '/tmp/gap.mbox', 'fingerprint-gap');
    const totals = { seen: 10, imported: 9, duplicates: 1, broken: 0 };
    for (const [first, next, index, part] of [[0, 100, 10, 0], [0, 100, 10, 1], [100, 250, 20, 1], [100, 250, 20, 0], [250, 400, 30, 1], [400, 500, 40, 0], [400, 500, 40, 1]]) {
      await recordImportBatch(db.pool, run.id, { firstOffset: first, nextOffset: next, nextIndex: index, part, parts: 2, ...totals });
    }
    // [250, 400) has only its second part: the import goes on there, re-reading it up to 400.
    expect(await resumePoint(db.pool, run.id)).toEqual({ nextOffset: 250, nextIndex: 20, seen: 40, imported: 36, duplicates: 4, broken: 0, partialEnd: 400 });
    // A part recorded again (by the resumed run) keeps what the first record counted.
    expect(await recordImportBatch(db.pool, run.id, { firstOffset: 250, nextOffset: 400, nextIndex: 30, part: 1, parts: 2, seen: 10, imported: 0, duplicates: 10, broken: 0 }))
      .toEqual(totals);
  });

  it('resumes a chunk of which one writer committed and the other was cut off, and counts every message once', async () => {
    const other = await testDatabase();
    const holder = new pg.Client({ connectionString: other.url });
    await holder.connect();
    try {
      const list = await newList(other.pool, 'cut@lists.example.org');
      // The first chunk is 2 × 100 messages. Hold the thread lock of a message the second writer
      // stores (and nothing of the first writer's names), so that writer waits while the first commits.
      const chunk = await Promise.all(corpus.slice(0, 200).map(async (c) => ({ ...archiveIdentity(c.raw), parsed: await parse(c.raw) })));
      const first = chunk.filter((m) => partOf(m.threadKey, 2) === 0);
      const named = new Set(first.flatMap((m) => [m.messageId, m.parsed.inReplyTo, ...m.parsed.references]));
      const blocked = chunk.find((m) => partOf(m.threadKey, 2) === 1 && !named.has(m.messageId))!;
      expect(first.length).toBeGreaterThan(50);
      await holder.query('select pg_advisory_lock(hashtextextended($1, 7283))', [blocked.messageId]);
      const cut = importMbox(other, list, corpusFile, {
        batchSize: 100,
        // The first writer's batch committed: the other writer, waiting on the lock, loses its connection.
        onProgress: () => void holder.query(`select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and not granted`),
      });
      await expect(cut).rejects.toThrow(/connection was lost during the import/);
      // The first writer may have gone on to the next chunk meanwhile: never the blocked part.
      const cutAt = await count(other.pool, list.id);
      expect(cutAt).toBeGreaterThanOrEqual(first.length);
      expect(cutAt).toBeLessThan(400);
      await holder.query('select pg_advisory_unlock_all()');

      const rest = await importMbox(other, list, corpusFile, { batchSize: 100 });
      expect(rest.resumedAt).toBe(null); // from the first chunk, which was not whole
      expect(rest).toMatchObject({ seen: 400, added: 400, duplicates: 0, broken: 0, interrupted: false });
      expect(await count(other.pool, list.id)).toBe(400);
      const { rows } = await other.pool.query('select part, parts, seen, imported from archive_import_batches where first_offset = 0 order by import_id, part');
      expect(rows).toEqual([{ part: 0, parts: 2, seen: first.length, imported: first.length }, { part: 1, parts: 2, seen: 200 - first.length, imported: 200 - first.length }]);
    } finally {
      await holder.end();
      await other.drop();
    }
  });

  it('threads a shuffled mbox exactly like the ordered one, and like archiving one message at a time', async () => {
    const ordered = await testDatabase();
    const shuffled = await testDatabase();
    const oneByOne = await testDatabase();
    try {
      const a = await newList(ordered.pool, 'dev@lists.example.org');
      await importMbox(ordered, a, corpusFile, { batchSize: 64 });
      const file = path.join(tmp, 'shuffled.mbox');
      const mixed = shuffle(corpus.map((c) => c.raw), 7);
      writeMbox(file, mixed);
      const b = await newList(shuffled.pool, 'dev@lists.example.org');
      await importMbox(shuffled, b, file, { batchSize: 64 });
      const c = await newList(oneByOne.pool, 'dev@lists.example.org');
      for (const raw of mixed) await archiveMessage(oneByOne.pool, c.id, raw, await parse(raw));

      const expected = await threading(ordered.pool);
      expect(expected.size).toBe(400);
      expect(new Set([...expected.values()].map((v) => v.thread)).size).toBeGreaterThan(20);
      expect([...expected.values()].filter((v) => v.parent).length).toBeGreaterThan(200);
      expect(await threading(shuffled.pool)).toEqual(expected);
      expect(await threading(oneByOne.pool)).toEqual(expected);
      expect((await shuffled.pool.query('select count(*)::int as n from unresolved_refs')).rows[0].n)
        .toBe((await ordered.pool.query('select count(*)::int as n from unresolved_refs')).rows[0].n);
    } finally {
      await Promise.all([ordered.drop(), shuffled.drop(), oneByOne.drop()]);
    }
  });

  it('exports what it imported: the mbox round trip gives back the input messages byte for byte', async () => {
    const other = await testDatabase();
    try {
      const list = await newList(other.pool, 'round@lists.example.org');
      await importMbox(other, list, corpusFile);
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      const written = await exportMbox(other.pool, { listId: list.id }, out);
      out.end();
      expect(written).toBe(400);
      const exported = await readAll(Buffer.concat(chunks));
      expect(exported.map((r) => r.toString('latin1'))).toEqual(corpus.map((c) => c.raw.toString('latin1')));
    } finally {
      await other.drop();
    }
  });

  it('imports a gzip-compressed mbox', async () => {
    const list = await newList(db.pool, 'gz@lists.example.org');
    const file = path.join(tmp, 'pipermail.txt.gz');
    fs.writeFileSync(file, zlib.gzipSync(fixture('hyperkitty-export.mbox')));
    const state = await importMbox(db, list, file);
    expect(state).toMatchObject({ seen: 4, added: 3, broken: 1 });
  });

  it('refuses a truncated or damaged gzip file, naming it, and leaves the run unfinished to resume', async () => {
    const list = await newList(db.pool, 'badgz@lists.example.org');
    const whole = zlib.gzipSync(fixture('pipermail-2009-January.txt'));
    const truncated = path.join(tmp, 'truncated.txt.gz');
    fs.writeFileSync(truncated, whole.subarray(0, 200));
    const damaged = path.join(tmp, 'damaged.txt.gz');
    fs.writeFileSync(damaged, Buffer.from(whole).fill(0xff, 40, 48));
    for (const file of [truncated, damaged]) {
      await expect(importMbox(db, list, file)).rejects.toThrow(`${file}: damaged or truncated gzip data`);
      // Again: the same run (one row), not a crash or a second row.
      await expect(importMbox(db, list, file)).rejects.toThrow(`${file}: damaged or truncated gzip data`);
    }
    const { rows } = await db.pool.query('select source, finished_at from archive_imports where list_id = $1 order by id', [list.id]);
    expect(rows).toEqual([{ source: truncated, finished_at: null }, { source: damaged, finished_at: null }]);
    expect(await count(db.pool, list.id)).toBe(0);
  });

  it('reads every member of a gzip file of several, and ignores bytes after the last that are not gzip (as gzip -dc), saying so', async () => {
    // Two members split inside a message, as `cat a.gz b.gz` or a log appended to makes them.
    const mbox = fixture('pipermail-2009-January.txt');
    const members = Buffer.concat([zlib.gzipSync(mbox.subarray(0, 700)), zlib.gzipSync(mbox.subarray(700))]);
    const garbage = Buffer.from('<html>a proxy\'s error page appended by a download</html>\n');
    const cases = [
      { name: 'garbage', tail: garbage, trailingGarbage: { offset: members.length, bytes: garbage.length } },
      // Zero padding (a tape, a block device) is no garbage, to gzip either.
      { name: 'zeros', tail: Buffer.alloc(4096), trailingGarbage: null },
      { name: 'nothing', tail: Buffer.alloc(0), trailingGarbage: null },
    ];
    for (const c of cases) {
      const list = await newList(db.pool, `members-${c.name}@lists.example.org`);
      const file = path.join(tmp, `members-${c.name}.txt.gz`);
      fs.writeFileSync(file, Buffer.concat([members, c.tail]));
      const state = await importMbox(db, list, file);
      expect(state, c.name).toMatchObject({ seen: 3, added: 3, broken: 0, trailingGarbage: c.trailingGarbage });
      expect(await count(db.pool, list.id)).toBe(3);
      // Finished: the same file again adds nothing and is not a resume.
      const { rows } = await db.pool.query('select finished_at from archive_imports where list_id = $1', [list.id]);
      expect(rows[0].finished_at).not.toBeNull();
    }
    // A damaged member after the first is damage, not garbage: it begins as gzip does.
    const list = await newList(db.pool, 'members-damaged@lists.example.org');
    const file = path.join(tmp, 'members-damaged.txt.gz');
    const second = zlib.gzipSync(mbox.subarray(700));
    second[2] = 7; // not deflate
    fs.writeFileSync(file, Buffer.concat([zlib.gzipSync(mbox.subarray(0, 700)), second]));
    await expect(importMbox(db, list, file)).rejects.toThrow(`${file}: damaged or truncated gzip data (unknown compression method)`);
  });

  it('skips a message past 64 MiB (a small gzip file expanding to it), reporting why, and imports the others', async () => {
    const list = await newList(db.pool, 'bomb@lists.example.org');
    const file = path.join(tmp, 'bomb.mbox.gz');
    const small = fixture('pipermail-2009-January.txt');
    const bomb = Buffer.alloc(70 << 20, 'a line of a huge message\n');
    bomb.write('From bomb at example.org  Thu Jan  1 09:00:00 2009\nSubject: huge\nMessage-ID: <bomb@example.org>\n\n');
    fs.writeFileSync(file, zlib.gzipSync(Buffer.concat([bomb, Buffer.from('\n\n'), small])));
    const broken: BrokenMessage[] = [];
    const state = await importMbox(db, list, file, { onBroken: (b) => broken.push(b) });
    expect(state).toMatchObject({ seen: 4, added: 3, broken: 1 });
    expect(broken).toEqual([{ index: 0, offset: 0, messageId: null, reason: 'larger than 64 MB (70 MB), the most a message may be' }]);
  });

  it('refuses a file that is not an mbox, naming the problem', async () => {
    const list = await newList(db.pool, 'notmbox@lists.example.org');
    const file = path.join(tmp, 'message.eml');
    fs.writeFileSync(file, fixture('attachments.eml'));
    await expect(importMbox(db, list, file)).rejects.toThrow(/not an mbox file/);
  });

  it('groups messages in batches: a batch is stored in one call', async () => {
    const other = await testDatabase();
    try {
      const list = await newList(other.pool, 'batch@lists.example.org');
      const sample = await Promise.all(corpus.slice(0, 50).map(async (c) => ({ raw: c.raw, message: await parse(c.raw) })));
      expect(await importBatch(other.pool, list.id, sample)).toEqual({ created: 50, added: 50 });
      expect(await importBatch(other.pool, list.id, sample)).toEqual({ created: 0, added: 0 });
    } finally {
      await other.drop();
    }
  });
});

describe('the import and export commands', () => {
  it('import shows progress, reports what it did, and a second run adds nothing; export writes mboxrd to stdout', async () => {
    const list: ListRow = await newList(db.pool, 'cli@lists.example.org');
    const file = path.join(tmp, 'cli-2009-January.txt');
    fs.writeFileSync(file, fixture('pipermail-2009-January.txt'));
    const env = { DATABASE_URL: db.url };
    const first = await cli(['import', 'cli', file], env);
    expect(first.stderr).not.toMatch(/error|skipped/i);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/imported .* into cli@lists.example.org: 3 messages added, 0 already archived, 0 skipped as broken/);
    const again = await cli(['import', 'cli@lists.example.org', file], env);
    expect(again.stdout).toContain('0 messages added, 3 already archived');
    expect(await count(db.pool, list.id)).toBe(3);

    const exported = await cli(['export', 'cli', '--month', '2009-01'], env);
    expect(exported.code).toBe(0);
    const back = await readAll(Buffer.from(exported.stdout, 'latin1'));
    expect(back.map((r) => r.toString())).toEqual((await readAll(file)).map((r) => r.toString()));
    expect((await cli(['export', 'cli', '--month', '2009-02'], env)).stdout).toBe('');
    const bad = await cli(['export', 'cli', '--month', 'January'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--month must be YYYY-MM');
    const missing = await cli(['import', 'cli', path.join(tmp, 'nope.mbox')], env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('no such file');
  });

  it('import of a pipe or a directory says it needs a regular file, on one line', async () => {
    await newList(db.pool, 'cli-pipe@lists.example.org');
    const env = { DATABASE_URL: db.url };
    // A named pipe with the mbox written into it, as `import LIST <(zcat FILE.gz)` gives one.
    const fifo = path.join(tmp, 'cli-pipe.mbox');
    execFileSync('mkfifo', [fifo]);
    const writer = fs.createWriteStream(fifo);
    writer.on('error', () => undefined); // the reader may close it unread
    writer.end(fixture('pipermail-2009-January.txt'));
    const pipe = await cli(['import', 'cli-pipe', fifo], env);
    writer.destroy();
    expect([pipe.code, pipe.stdout]).toEqual([1, '']);
    expect(pipe.stderr).toBe(`listkeeper: ${fifo} is not a regular file (a pipe or a device): save the mbox to a file and import that (the import resumes by its position in the file)\n`);
    const dir = await cli(['import', 'cli-pipe', tmp], env);
    expect([dir.code, dir.stderr]).toEqual([1, `listkeeper: ${tmp} is not a regular file (a directory): save the mbox to a file and import that (the import resumes by its position in the file)\n`]);
  });

  it('import of a truncated gzip file says so on one line and exits 1', async () => {
    await newList(db.pool, 'cli-gz@lists.example.org');
    const file = path.join(tmp, 'cli-truncated.txt.gz');
    fs.writeFileSync(file, zlib.gzipSync(fixture('pipermail-2009-January.txt')).subarray(0, 200));
    const run = await cli(['import', 'cli-gz', file], { DATABASE_URL: db.url });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`listkeeper: ${file}: damaged or truncated gzip data (unexpected end of file)\n`);
  });

  it('import of a gzip file with trailing garbage imports it all, warns as gzip does, and exits 0', async () => {
    await newList(db.pool, 'cli-garbage@lists.example.org');
    const file = path.join(tmp, 'cli-garbage.txt.gz');
    const gz = zlib.gzipSync(fixture('pipermail-2009-January.txt'));
    fs.writeFileSync(file, Buffer.concat([gz, Buffer.from('garbage')]));
    const run = await cli(['import', 'cli-garbage', file], { DATABASE_URL: db.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('3 messages added, 0 already archived, 0 skipped as broken');
    expect(run.stderr).toContain(`warning: ${file}: decompression OK, trailing garbage ignored (7 bytes from byte ${gz.length} are not gzip data)\n`);
  });

  it('prints plain progress lines off a terminal with --progress, none without, and reports broken messages by position either way', async () => {
    await newList(db.pool, 'cli2@lists.example.org');
    const file = path.join(tmp, 'cli2.mbox');
    fs.writeFileSync(file, fixture('hyperkitty-export.mbox'));
    const quiet = await cli(['import', 'cli2', file], { DATABASE_URL: db.url });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toMatch(/^import .*%/m);
    expect(quiet.stderr).toMatch(/message 3 at byte \d+ skipped: .*header/);
    await db.pool.query(`delete from list_messages where list_id = (select id from lists where address = 'cli2@lists.example.org')`);
    const run = await cli(['import', 'cli2', file, '--batch-size', '1', '--progress'], { DATABASE_URL: db.url });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^import .*cli2.mbox: \d+% \(/m);
    expect(run.stderr).toMatch(/message 3 at byte \d+ skipped: .*header/);
    expect(run.stdout).toContain('3 messages added, 0 already archived, 1 skipped as broken');
  });
});

async function readAll(source: string | Buffer): Promise<Buffer[]> {
  const out: Buffer[] = [];
  const input = typeof source === 'string' ? [fs.readFileSync(source)] : [source];
  for await (const m of readMbox(input)) out.push(m.raw);
  return out;
}
