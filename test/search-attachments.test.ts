/*
 * Text attachments are searched (sql/0070, src/mail/attachment-text.ts): a word found only in an
 * attached patch or log finds the message, whether it came by SMTP or by an mbox import, and the
 * messages archived before sql/0070 get theirs from the attachment-text conversion job. Binary
 * attachments and HTML attachments stay out, whatever they hold. ISO-2022-JP without a label is
 * read by its escape sequences, in attachments and in bodies.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachmentText, PARSED_BYTES_PER_BATCH } from '../src/core/conversions/attachment-text.ts';
import { runConversionBatch, runConversions } from '../src/core/conversions.ts';
import { importMbox } from '../src/core/archive-import.ts';
import type { Queryable } from '../src/db/pool.ts';
import { log } from '../src/log.ts';
import { attachmentSearchText, MAX_ATTACHMENT_TEXT } from '../src/mail/attachment-text.ts';
import { mboxrdEntry } from '../src/mail/mbox.ts';
import { parse } from '../src/mail/parse.ts';
import type { ParsedAttachment } from '../src/mail/parsed-message.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let web: RunningWeb;
let smtp: RunningIngest;
let tmp: string;

/** A post with a body and one attachment of this type and name, its bytes base64-encoded. */
function withAttachment(o: { id: string; body: string; type: string; filename: string; content: Buffer; disposition?: string }): Buffer {
  const b = 'part-boundary-1';
  return Buffer.from([
    'From: Alice Example <alice@example.org>', 'To: dev@lists.example.org', `Subject: Patch ${o.id}`,
    'Date: Mon, 02 Nov 2026 10:00:00 +0000', `Message-ID: <${o.id}>`, 'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${b}"`, '',
    `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', o.body, '',
    `--${b}`, `Content-Type: ${o.type}; name="${o.filename}"`, `Content-Disposition: ${o.disposition ?? 'attachment'}; filename="${o.filename}"`,
    'Content-Transfer-Encoding: base64', '', o.content.toString('base64').replace(/.{76}/g, '$&\r\n'), '',
    `--${b}--`, '',
  ].join('\r\n'));
}

const patch = (word: string) => Buffer.from(`diff --git a/src/vacuum.c b/src/vacuum.c\n--- a/src/vacuum.c\n+++ b/src/vacuum.c\n@@ -1,3 +1,4 @@\n+/* ${word}: freeze earlier */\n`);

/** `n` pseudo-random bytes, none of them 0, as a compressed or encrypted file's without its NULs. */
function noise(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    out[i] = ((seed >>> 0) % 255) + 1; // xorshift32
  }
  return out;
}

async function hits(q: string): Promise<string[]> {
  const html = await (await fetch(`${web.url}/search?q=${encodeURIComponent(q)}`)).text();
  return [...html.matchAll(/<a class="subject" href="\/message-id\/([^"]+)"/g)].map((m) => decodeURIComponent(m[1])).sort();
}

async function post(raw: Buffer) {
  const r = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['dev@lists.example.org'] }, raw);
  expect(r.ok, r.response).toBe(true);
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  smtp = await startIngest(db.pool);
  await newList(db.pool, 'dev@lists.example.org');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-attach-'));
});

afterAll(async () => {
  await smtp?.stop();
  await web?.stop();
  await db?.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('searching text attachments', () => {
  it('finds a post by a word that only its attached patch holds, and by words split between body and patch', async () => {
    await post(withAttachment({ id: 'patch-1@example.org', body: 'Here is the patch.', type: 'text/x-diff', filename: 'v1-0001-freeze.patch', content: patch('quokkafreeze') }));
    expect(await hits('quokkafreeze')).toEqual(['patch-1@example.org']);
    // One word in the body, the other in the attachment: both are the message's.
    expect(await hits('patch quokkafreeze')).toEqual(['patch-1@example.org']);
    // The excerpt is the attachment's line with the word, marked, and says where it is from.
    const html = await (await fetch(`${web.url}/search?q=quokkafreeze`)).text();
    expect(html).toContain('<span class="muted">In an attachment:</span>');
    expect(html).toContain('/* <mark>quokkafreeze</mark>: freeze earlier */');
    // A word of the body shows the body.
    const body = await (await fetch(`${web.url}/search?q=${encodeURIComponent('"the patch" quokkafreeze')}`)).text();
    expect(body).toContain('Here is the <mark>patch</mark>.');
    expect(body).not.toContain('In an attachment:');
    const { rows } = await db.pool.query(`select body, attachment_text from messages where message_id = 'patch-1@example.org'`);
    expect(rows[0].body).not.toContain('quokkafreeze');
    expect(rows[0].attachment_text).toContain('/* quokkafreeze: freeze earlier */');
  });

  it('reads a .patch sent as application/octet-stream, and a Latin-1 log', async () => {
    await post(withAttachment({ id: 'patch-2@example.org', body: 'Attached.', type: 'application/octet-stream', filename: 'fix.patch', content: patch('wombatrelax') }));
    await post(withAttachment({ id: 'log-1@example.org', body: 'The log.', type: 'text/plain', filename: 'server.log', content: Buffer.from('ERROR: tablespace "caf\u00e9storage" is full\n', 'latin1') }));
    expect(await hits('wombatrelax')).toEqual(['patch-2@example.org']);
    expect(await hits('caféstorage')).toEqual(['log-1@example.org']);
  });

  it('reads a text attachment in the charset it declares: Shift_JIS, KOI8-R, UTF-16', async () => {
    // "エラー: 共有メモリの確保に失敗しました" ("error: could not allocate shared memory") in Shift_JIS, its Russian in KOI8-R.
    const sjis = Buffer.from('83478389815b3a208ba4974c83818382838a82cc8a6d95db82c98eb8947382b582dc82b582bd', 'hex');
    const koi8 = Buffer.from('efdbc9c2cbc13a20cec520d5c4c1cccfd3d820d7d9c4c5ccc9d4d820d0c1cdd1d4d8', 'hex');
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('ERROR: marmotwide is full\n', 'utf16le')]);
    await post(withAttachment({ id: 'sjis-1@example.org', body: 'The log.', type: 'text/plain; charset=Shift_JIS', filename: 'server.log', content: sjis }));
    await post(withAttachment({ id: 'koi8-1@example.org', body: 'The log.', type: 'text/plain; charset=KOI8-R', filename: 'server.log', content: koi8 }));
    await post(withAttachment({ id: 'utf16-1@example.org', body: 'The log.', type: 'text/plain; charset=UTF-16', filename: 'server.log', content: utf16 }));
    expect(await hits('共有メモリ')).toEqual(['sjis-1@example.org']);
    expect(await hits('выделить')).toEqual(['koi8-1@example.org']);
    expect(await hits('marmotwide')).toEqual(['utf16-1@example.org']);
  });

  it('reads UTF-16 in the byte order its bytes show: big-endian without a mark, and a UTF-16 log that declares no charset', async () => {
    // RFC 2781 allows "UTF-16" without a byte-order mark; TextDecoder reads it as little-endian.
    const be = (s: string) => Buffer.from(s, 'utf16le').swap16();
    await post(withAttachment({ id: 'utf16be-1@example.org', body: 'The log.', type: 'text/plain; charset=UTF-16', filename: 'server.log', content: be('ERROR: beaverorder is full\nエラー: 共有メモリの確保に失敗しました\n') }));
    // As PowerShell's "> file" writes it: UTF-16LE with a mark, sent without a charset.
    await post(withAttachment({ id: 'utf16-bare@example.org', body: 'The log.', type: 'application/octet-stream', filename: 'out.txt', content: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('Get-Item: lemmingshell not found\n', 'utf16le')]) }));
    expect(await hits('beaverorder')).toEqual(['utf16be-1@example.org']);
    expect(await hits('共有メモリの確保')).toContain('utf16be-1@example.org');
    expect(await hits('lemmingshell')).toEqual(['utf16-bare@example.org']);
  });

  it('reads a UTF-8 log labelled with another charset as UTF-8, and ISO-2022-JP (7-bit) by its label', async () => {
    await post(withAttachment({ id: 'mislabel-1@example.org', body: 'The log.', type: 'text/plain; charset=windows-1251', filename: 'server.log', content: Buffer.from('FATAL: контрольная точка не найдена\n') }));
    // "共有メモリ" in ISO-2022-JP: ESC $ B, JIS X 0208 pairs, ESC ( B.
    const jis = Buffer.concat([Buffer.from('ERROR: '), Buffer.from('1b244236264d2d25612562256a1b2842', 'hex'), Buffer.from('\n')]);
    await post(withAttachment({ id: 'jis-1@example.org', body: 'The log.', type: 'text/plain; charset=ISO-2022-JP', filename: 'server.log', content: jis }));
    expect(await hits('контрольная')).toEqual(['mislabel-1@example.org']);
    expect(await hits('共有メモリ')).toContain('jis-1@example.org');
  });

  it('reads ISO-2022-JP that declares no charset, or US-ASCII, by its escape sequences', async () => {
    // From python3: '日本語のテキスト'.encode('iso2022_jp') and 'ディスクの容量が不足しています'.encode('iso2022_jp').
    const text = Buffer.from('1b2442467c4b5c386c244e2546252d253925481b2842', 'hex');
    const disk = Buffer.from('1b2442254725232539252f244e4d464e4c242c4954422d243724462424245e24391b2842', 'hex');
    await post(withAttachment({ id: 'jis-bare@example.org', body: 'Notes.', type: 'text/plain', filename: 'notes.txt', content: Buffer.concat([Buffer.from('NOTE: '), text, Buffer.from('\n')]) }));
    await post(withAttachment({ id: 'jis-ascii@example.org', body: 'The log.', type: 'text/plain; charset=us-ascii', filename: 'server.log', content: Buffer.concat([Buffer.from('ERROR: '), disk, Buffer.from('\n')]) }));
    expect(await hits('日本語')).toEqual(['jis-bare@example.org']);
    expect(await hits('容量')).toEqual(['jis-ascii@example.org']);
    const { rows } = await db.pool.query<{ t: string }>(`select attachment_text as t from messages where message_id in ('jis-bare@example.org', 'jis-ascii@example.org') order by message_id`);
    expect(rows.map((r) => r.t)).toEqual(['ERROR: ディスクの容量が不足しています\n', 'NOTE: 日本語のテキスト\n']);
  });

  it('reads a body in ISO-2022-JP that declares no charset, or US-ASCII, by its escape sequences', async () => {
    // From python3: 'メールの本文です'.encode('iso2022_jp') and '添付ファイルの説明です'.encode('iso2022_jp').
    const body = Buffer.from('1b24422561213c256b244e4b5c4a38244724391b2842', 'hex');
    const about = Buffer.from('1b2442453a4955255525212524256b244e40624c40244724391b2842', 'hex');
    // One text/plain part without a charset (the fast parser's), and a multipart message whose
    // body part says US-ASCII (mailparser's).
    const head = ['From: Alice Example <alice@example.org>', 'To: dev@lists.example.org', 'Date: Mon, 02 Nov 2026 10:00:00 +0000', 'MIME-Version: 1.0'];
    await post(Buffer.concat([Buffer.from([...head, 'Subject: Plain JIS', 'Message-ID: <jis-body@example.org>', '', 'BODY: '].join('\r\n')), body, Buffer.from('\r\n')]));
    await post(Buffer.concat([
      Buffer.from([...head, 'Subject: Multipart JIS', 'Message-ID: <jis-body-2@example.org>', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain; charset=us-ascii', '', 'ABOUT: '].join('\r\n')),
      about, Buffer.from('\r\n--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename="x.png"\r\n\r\npng\r\n--b--\r\n'),
    ]));
    expect(await hits('本文')).toEqual(['jis-body@example.org']);
    expect(await hits('説明')).toEqual(['jis-body-2@example.org']);
    const { rows } = await db.pool.query<{ body: string }>(`select body from messages where message_id in ('jis-body@example.org', 'jis-body-2@example.org') order by message_id`);
    expect(rows.map((r) => r.body.trim())).toEqual(['ABOUT: 添付ファイルの説明です', 'BODY: メールの本文です']);
  });

  it('reads a UTF-8 log with a stray invalid byte as UTF-8, not as Latin-1', async () => {
    const log = Buffer.concat([Buffer.from('エラー: 共有メモリの確保に失敗しました\n'.repeat(50)), Buffer.from([0xff]), Buffer.from('\nFATAL: журнал повреждён\n')]);
    await post(withAttachment({ id: 'stray-1@example.org', body: 'The log.', type: 'text/plain', filename: 'server.log', content: log }));
    expect(await hits('共有メモリ')).toContain('stray-1@example.org');
    expect(await hits('повреждён')).toEqual(['stray-1@example.org']);
  });

  it('leaves out binary and HTML attachments, whatever words they hold', async () => {
    await post(withAttachment({ id: 'bin-1@example.org', body: 'A core dump.', type: 'application/octet-stream', filename: 'core.bin', content: Buffer.from('narwhalbinary\n') }));
    await post(withAttachment({ id: 'bin-2@example.org', body: 'Claims to be text.', type: 'text/plain', filename: 'dump.txt', content: Buffer.concat([Buffer.from('narwhalnul '), Buffer.from([0, 1, 2])]) }));
    await post(withAttachment({ id: 'html-1@example.org', body: 'A page.', type: 'text/html', filename: 'page.html', content: Buffer.from('<p>narwhalmarkup</p>') }));
    expect(await hits('narwhalbinary')).toEqual([]);
    expect(await hits('narwhalnul')).toEqual([]);
    expect(await hits('narwhalmarkup')).toEqual([]);
    expect(await hits('core dump')).toEqual(['bin-1@example.org']);
  });

  it('leaves out a binary file without a NUL named as text, and keeps text with a few odd bytes, Latin-1 and ISO-2022-JP', async () => {
    // 8 KB of bytes as a compressed or encrypted file has them, but no NUL, with a word in it as
    // binaries hold strings: it was indexed as junk words.
    const junk = noise(8192, 5);
    junk.write(' narwhalnoise ', 4000, 'latin1');
    await post(withAttachment({ id: 'noise-1@example.org', body: 'Compressed by mistake.', type: 'application/octet-stream', filename: 'fix.patch', content: junk }));
    await post(withAttachment({ id: 'noise-2@example.org', body: 'Labelled text.', type: 'text/plain; charset=Shift_JIS', filename: 'dump.log', content: junk }));
    // A patch with a form feed (GNU sources have them) and a log with a stray control byte, a
    // terminal's colours and bells, and a byte that is not UTF-8.
    const odd = Buffer.concat([patch('yakformfeed'), Buffer.from('+\f\n+/* page two */\n')]);
    const log = Buffer.concat([Buffer.from('LOG: \x1b[31mcheckpoint\x1b[0m starting\x07\n'.repeat(20)), Buffer.from('PANIC: yakstray \x01\x02\x03 at \xff\n', 'latin1')]);
    // windows-1252's quotes and dashes read as Latin-1 are U+0080–U+009F; ISO-2022-JP without a label has ESC (decoded since).
    const quotes = Buffer.from('\x93yakquoted\x94 \x96 caf\xe9 r\xe9sum\xe9\n'.repeat(10), 'latin1');
    const jis = Buffer.concat([Buffer.from('yakjis: '), Buffer.from('1b244236264d2d25612562256a1b2842', 'hex'), Buffer.from('\n')]);
    await post(withAttachment({ id: 'odd-1@example.org', body: 'A patch.', type: 'text/x-diff', filename: 'odd.patch', content: odd }));
    await post(withAttachment({ id: 'odd-2@example.org', body: 'A log.', type: 'application/octet-stream', filename: 'server.log', content: log }));
    await post(withAttachment({ id: 'odd-3@example.org', body: 'Notes.', type: 'text/plain', filename: 'notes.txt', content: quotes }));
    await post(withAttachment({ id: 'odd-4@example.org', body: 'Japanese.', type: 'application/octet-stream', filename: 'jis.txt', content: jis }));
    expect(await hits('narwhalnoise')).toEqual([]);
    expect(await hits('compressed')).toEqual(['noise-1@example.org']);
    expect(await hits('yakformfeed')).toEqual(['odd-1@example.org']);
    expect(await hits('yakstray')).toEqual(['odd-2@example.org']);
    expect(await hits('yakquoted résumé')).toEqual(['odd-3@example.org']);
    // Read as windows-1252, as mail labelled (or taken for) Latin-1 is: its quotes and dashes, not C1 controls.
    const { rows: [notes] } = await db.pool.query<{ t: string }>(`select attachment_text as t from messages where message_id = 'odd-3@example.org'`);
    expect(notes.t).toContain('\u201cyakquoted\u201d \u2013 café résumé');
    expect(await hits('yakjis')).toEqual(['odd-4@example.org']);
  });

  it('finds the words of attachments in an imported mbox', async () => {
    const list = await newList(db.pool, 'imported@lists.example.org');
    const file = path.join(tmp, 'import.mbox');
    const raws = [
      withAttachment({ id: 'imp-1@example.org', body: 'Old patch.', type: 'text/x-patch', filename: 'old.patch', content: patch('pangolinimport') }),
      withAttachment({ id: 'imp-2@example.org', body: 'No text here.', type: 'image/png', filename: 'x.png', content: Buffer.from('pangolinpng') }),
    ];
    fs.writeFileSync(file, Buffer.concat(raws.map((r) => mboxrdEntry(r, 'alice@example.org', new Date('2026-01-01T00:00:00Z')))));
    const state = await importMbox(db, list, file);
    expect(state).toMatchObject({ added: 2, broken: 0 });
    expect(await hits('pangolinimport')).toEqual(['imp-1@example.org']);
    expect(await hits('pangolinpng')).toEqual([]);
  });

  it('stores a message with more distinct words than a search vector holds, searchable by its subject and the start of its body', async () => {
    // 200,000 characters of Chinese in distinct pairs: 1.2 MB of words where a vector holds 1 MB.
    // Before sql/0070 such a message was refused with 554; it is stored now.
    let seed = 7;
    const next = () => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), (seed >>>= 0)); // xorshift32
    const han = Array.from({ length: 200_000 }, () => String.fromCodePoint(0x4e00 + (next() % 20000))).join('');
    const start = '測試開始'; // the body's first words ("test begins")
    const raw = Buffer.from(['From: Alice Example <alice@example.org>', 'To: dev@lists.example.org', 'Subject: Wombatlongbody',
      'Date: Mon, 02 Nov 2026 10:00:00 +0000', 'Message-ID: <long-han@example.org>', 'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
      Buffer.from(`${start} ${han}\n`).toString('base64').replace(/.{76}/g, '$&\r\n'), ''].join('\r\n'));
    await post(raw);
    expect(await hits('wombatlongbody')).toEqual(['long-han@example.org']);
    expect(await hits(start)).toEqual(['long-han@example.org']);
    // The same through the attachment: a body that fits, with attachments that make it too many.
    await post(withAttachment({ id: 'long-attach@example.org', body: `Koalalongattach ${han.slice(0, 40_000)}`, type: 'text/plain', filename: 'more.txt', content: Buffer.from(han.slice(40_000, 120_000)) }));
    expect(await hits('koalalongattach')).toEqual(['long-attach@example.org']);
  }, 60_000);

  it('indexes the whole body of a message whose attachments make its vector too big, as without them', async () => {
    // 90,000 characters of Chinese in distinct pairs fit a vector (0.9 MB); 20,000 more in an
    // attachment do not. The word after them was found before sql/0070, and before the conversion
    // job gave the message its attachment's text.
    let seed = 11;
    const next = () => ((seed ^= seed << 13), (seed ^= seed >>> 17), (seed ^= seed << 5), (seed >>>= 0)); // xorshift32
    const han = (n: number) => Array.from({ length: n }, () => String.fromCodePoint(0x4e00 + (next() % 20000))).join('');
    await post(withAttachment({ id: 'whole-body@example.org', body: `${han(90_000)} okapitail`, type: 'text/plain', filename: 'more.txt', content: Buffer.from(han(20_000)) }));
    expect(await hits('okapitail')).toEqual(['whole-body@example.org']);
  }, 60_000);

  it('gives messages archived before sql/0070 their attachments\' text with the conversion job, once', async () => {
    // As a release before sql/0070 stored them: no attachment text, the vector without it.
    await post(withAttachment({ id: 'old-1@example.org', body: 'From before.', type: 'text/x-diff', filename: 'a.diff', content: patch('ocelotconvert') }));
    await post(withAttachment({ id: 'old-2@example.org', body: 'A picture.', type: 'image/png', filename: 'b.png', content: Buffer.from([137, 80, 78, 71, 0]) }));
    await db.pool.query(`update messages set attachment_text = null where message_id in ('old-1@example.org', 'old-2@example.org')`);
    expect(await hits('ocelotconvert')).toEqual([]);
    await db.pool.query(`update conversions set last_key = 0, done_at = null, started_at = null, rows_done = 0, rows_changed = 0 where name = 'attachment-text'`);
    const { rows: [{ n: total }] } = await db.pool.query<{ n: number }>('select count(*)::int as n from messages');
    // Small batches: the cursor has to carry the job from one to the next.
    let batches = 0;
    for (;;) {
      const r = await runConversionBatch(db.pool, 'test', { batchRows: 3 }, [attachmentText]);
      if (r.kind !== 'batch') {
        expect(r.kind).toBe('done');
        break;
      }
      batches++;
    }
    expect(batches).toBe(Math.ceil(total / 3));
    expect(await hits('ocelotconvert')).toEqual(['old-1@example.org']);
    const { rows } = await db.pool.query(`select rows_done::int as done, rows_changed::int as changed, done_at from conversions where name = 'attachment-text'`);
    // Every message seen; the one that had lost its text got it back; those that had theirs kept it.
    expect(rows[0]).toMatchObject({ done: total, changed: 1 });
    expect(rows[0].done_at).not.toBeNull();
  });

  /** Old messages (no attachment text yet) with a text attachment each; the conversion's cursor set just before them. */
  async function oldMessages(prefix: string, contents: Buffer[]): Promise<number> {
    for (const [i, content] of contents.entries()) await post(withAttachment({ id: `${prefix}-${i}@example.org`, body: 'Old.', type: 'text/plain', filename: 'x.log', content }));
    const { rows: [{ first }] } = await db.pool.query<{ first: number }>(
      `update messages set attachment_text = null where message_id like $1 returning (select min(id) from messages where message_id like $1) as first`, [`${prefix}-%`]);
    await db.pool.query(`update conversions set last_key = $1, done_at = null where name = 'attachment-text'`, [first - 1]);
    return first;
  }

  it('parses at most PARSED_BYTES_PER_BATCH of raw bytes in a batch past its first message', async () => {
    // Three messages of more than half the budget each: a batch each, whatever the batch size.
    // Parsed in one, 100 such messages of 20 MB were minutes of one transaction.
    const log = Buffer.from('wapitibudget '.repeat(Math.ceil(PARSED_BYTES_PER_BATCH * 0.4 / 13)));
    await oldMessages('big', [log, log, log]);
    const seen: number[] = [];
    for (let r = await runConversionBatch(db.pool, 'test', { batchRows: 100 }, [attachmentText]); r.kind === 'batch'; r = await runConversionBatch(db.pool, 'test', { batchRows: 100 }, [attachmentText])) seen.push(r.seen);
    expect(seen).toEqual([1, 1, 1]);
    expect(await hits('wapitibudget')).toEqual(['big-0@example.org', 'big-1@example.org', 'big-2@example.org']);
  }, 120_000);

  it('leaves the archive settled (the page cache on) while a batch parses: the texts are stored at its end', async () => {
    const first = await oldMessages('settle', [patch('ibexsettled'), patch('ibexsettled'), patch('ibexsettled')]);
    const watcher = await db.pool.connect();
    const client = await db.pool.connect();
    const settled: boolean[] = [];
    // The batch's transaction, asking before each message it reads whether a change is in flight.
    const tx = {
      async query(q: string | { text: string }, values?: unknown[]) {
        if ((typeof q === 'string' ? q : q.text).startsWith('select raw')) settled.push((await watcher.query('select settled from archive_version()')).rows[0].settled);
        return client.query(q as string, values);
      },
    } as unknown as Queryable;
    try {
      await client.query('begin');
      expect(await attachmentText.batch(tx, first - 1, 100)).toMatchObject({ seen: 3, changed: 3 });
      await client.query('commit');
    } finally {
      client.release();
      watcher.release();
    }
    expect(settled).toEqual([true, true, true]);
    expect(await hits('ibexsettled')).toEqual(['settle-0@example.org', 'settle-1@example.org', 'settle-2@example.org']);
  });
});

describe('messages the previous release archives during a rolling upgrade', () => {
  /** As the release before sql/0070 archives a message: archive_message() without the attachments' text. */
  async function archivedByPreviousRelease(raw: Buffer): Promise<number> {
    const m = await parse(raw);
    const { rows } = await db.pool.query<{ id: string }>(
      'select id from archive_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)',
      [(await db.pool.query<{ id: string }>(`select id from lists where address = 'dev@lists.example.org'`)).rows[0].id,
        m.messageId, raw, m.subject, m.fromName, m.fromEmail, m.date, m.inReplyTo, m.references, m.text, m.attachments.length > 0, false, null]);
    return Number(rows[0].id);
  }
  const job = async () => (await db.pool.query<{ last_key: number; rows_done: number; done: boolean }>(
    `select last_key::int, rows_done::int, done_at is not null as done from conversions where name = 'attachment-text'`)).rows[0];
  /** A pass of the workers' conversion loop, as `serve --worker` runs it every few seconds. */
  const pass = () => runConversions(db.pool, 'test', { batchRows: 100, pauseMs: 0 }, log, () => false, [attachmentText]);

  it('stores \'\' for a post whose attachments hold no text: read, not "not read yet"', async () => {
    await post(withAttachment({ id: 'png-new@example.org', body: 'A picture.', type: 'image/png', filename: 'c.png', content: Buffer.from([137, 80, 78, 71, 0]) }));
    const { rows } = await db.pool.query(`select attachment_text from messages where message_id = 'png-new@example.org'`);
    expect(rows).toEqual([{ attachment_text: '' }]);
  });

  it('opens the finished job again for a message archived without its text after it: read from there, not from the start', async () => {
    for (let r = await pass(), n = 0; !(await job()).done && n < 100; r = await pass(), n++) void r;
    const finished = await job();
    expect(finished.done).toBe(true);
    const before = finished.rows_done;

    // A message the job skipped (sql/0072) stays as it is: it opens nothing.
    const skipped = await archivedByPreviousRelease(withAttachment({ id: 'late-skipped@example.org', body: 'Skipped.', type: 'text/plain', filename: 's.log', content: Buffer.from('caracalskipped\n') }));
    await db.pool.query(`insert into conversion_skips (name, key, error) values ('attachment-text', $1, 'failed alone')`, [skipped]);
    await pass();
    expect(await job()).toMatchObject({ done: true, rows_done: before });

    const late = await archivedByPreviousRelease(withAttachment({ id: 'late-old@example.org', body: 'From the old release.', type: 'text/x-diff', filename: 'late.diff', content: patch('quetzallate') }));
    expect(await hits('quetzallate')).toEqual([]);
    await pass();
    expect(await hits('quetzallate')).toEqual(['late-old@example.org']);
    // Walked from where it had finished (the two messages since, the skipped one seen and left as
    // it is), not the archive again; done again.
    expect(await job()).toMatchObject({ done: true, rows_done: before + 2, last_key: late });
    const { rows } = await db.pool.query(`select message_id, attachment_text from messages where message_id like 'late-%' order by id`);
    expect(rows).toEqual([{ message_id: 'late-skipped@example.org', attachment_text: null }, { message_id: 'late-old@example.org', attachment_text: expect.stringContaining('quetzallate') }]);
 
    // One behind the cursor (archived by the previous release, committed after the job passed its
    // id): the job walks from it to the end, no further back.
    const { rows: [{ id: behind }] } = await db.pool.query<{ id: number }>(
      `update messages set attachment_text = null where message_id = 'patch-2@example.org' returning id::int`);
    expect(await hits('wombatrelax')).toEqual([]);
    const { rows: [{ n: since }] } = await db.pool.query<{ n: number }>('select count(*)::int as n from messages where id >= $1', [behind]);
    await pass();
    expect(await hits('wombatrelax')).toEqual(['patch-2@example.org']);
    expect(await job()).toMatchObject({ done: true, rows_done: before + 2 + since });
  });
});

describe('attachmentSearchText', () => {
  const a = (contentType: string, filename: string | null, content: Buffer): ParsedAttachment => ({ contentType, filename, content, size: content.length, contentId: null, inline: false });

  it('keeps at most MAX_ATTACHMENT_TEXT characters in all, cutting no UTF-8 character in two', () => {
    const big = Buffer.from('€'.repeat(MAX_ATTACHMENT_TEXT)); // 3 bytes each: the 4-byte budget cuts inside one
    const text = attachmentSearchText([a('text/plain', 'a.txt', big), a('text/plain', 'b.txt', Buffer.from('never reached'))])!;
    expect(text.length).toBe(MAX_ATTACHMENT_TEXT);
    expect(text).not.toContain('\uFFFD');
    expect(text).not.toContain('never reached');
  });

  it('reads UTF-16 by its mark, else by where its zero bytes are, else by its label', () => {
    const be = (s: string) => Buffer.from(s, 'utf16le').swap16();
    const le = (s: string) => Buffer.from(s, 'utf16le');
    const text = (charset: string | null, content: Buffer) => attachmentSearchText([{ ...a('text/plain', 'x.log', content), charset }]);
    for (const charset of ['UTF-16', 'utf-16le', 'UTF-16BE', 'unicode']) {
      expect(text(charset, be('ERROR: disk full\n')), charset).toBe('ERROR: disk full\n');
      expect(text(charset, le('ERROR: disk full\n')), charset).toBe('ERROR: disk full\n');
      // A mark wins over the label, and is not part of the text.
      expect(text(charset, Buffer.concat([Buffer.from([0xfe, 0xff]), be('été\n')])), charset).toBe('été\n');
      expect(text(charset, Buffer.concat([Buffer.from([0xff, 0xfe]), le('été\n')])), charset).toBe('été\n');
    }
    // Japanese with its line ends: the newlines' zero bytes give the order.
    expect(text('UTF-16', be('共有メモリの確保に失敗しました\n'.repeat(3)))).toBe('共有メモリの確保に失敗しました\n'.repeat(3));
    // Nothing to tell by (no mark, no zero byte): the label's order, little-endian for "UTF-16".
    expect(text('UTF-16', le('共有メモリ'))).toBe('共有メモリ');
    expect(text('UTF-16BE', be('共有メモリ'))).toBe('共有メモリ');
    // No label, or one that UTF-16 cannot be: read as UTF-16 when it plainly is.
    for (const charset of [null, 'us-ascii', 'utf-8']) {
      expect(text(charset, be('ERROR: disk full\n')), String(charset)).toBe('ERROR: disk full\n');
      expect(text(charset, le('ERROR: disk full\n')), String(charset)).toBe('ERROR: disk full\n');
      expect(text(charset, Buffer.concat([Buffer.from([0xff, 0xfe]), le('共有メモリ\n')])), String(charset)).toBe('共有メモリ\n');
    }
    // A few NULs in ASCII are not UTF-16: still binary.
    expect(text(null, Buffer.from('ERROR: disk full\0 at \0 offset 17\n'))).toBeNull();
  });

  it('takes an attachment for binary when more than one character in 32 of its first 8,192 is one no text has', () => {
    const text = (charset: string | null, content: Buffer) => attachmentSearchText([{ ...a('application/octet-stream', 'x.patch', content), charset }]);
    // Random bytes without a NUL, read as Latin-1, as UTF-8, in a legacy charset or as UTF-16 (marked or labelled).
    for (const charset of [null, 'utf-8', 'Shift_JIS', 'KOI8-R', 'EUC-KR', 'UTF-16', 'UTF-16BE']) {
      for (const n of [512, 8192, 100_000]) expect(text(charset, noise(n, n + 1)), `${charset} ${n}`).toBeNull();
    }
    expect(text(null, Buffer.concat([Buffer.from([0xff, 0xfe]), noise(4096, 3)]))).toBeNull();
    // One in 32 is text; more is not.
    const line = Buffer.from('ERROR: a log line of thirty-one characters\n'.slice(0, 31));
    expect(text(null, Buffer.concat(Array.from({ length: 100 }, () => Buffer.concat([line, Buffer.from([0x01])]))))).not.toBeNull();
    expect(text(null, Buffer.concat(Array.from({ length: 100 }, () => Buffer.concat([line.subarray(0, 30), Buffer.from([0x01, 0x02])]))))).toBeNull();
    // Past the first 8,192 characters, anything goes.
    expect(text(null, Buffer.concat([Buffer.from('x'.repeat(8192)), noise(8192, 9)]))).not.toBeNull();
    // The controls text has: BEL, BS, TAB, LF, VT, FF, CR, ESC; and C1 (windows-1252's punctuation read as Latin-1).
    expect(text(null, Buffer.from('a\x07\x08\t\n\v\f\r\x1b\x85\x93\x94\x96'.repeat(100), 'latin1'))).not.toBeNull();
  });

  it('joins several text attachments and skips blank ones', () => {
    expect(attachmentSearchText([a('text/plain', null, Buffer.from('one')), a('text/plain', null, Buffer.from('  \n')), a('text/x-csrc', 'x.c', Buffer.from('two'))])).toBe('one\n\ntwo');
    expect(attachmentSearchText([a('image/png', 'x.png', Buffer.from('no'))])).toBeNull();
  });
});
