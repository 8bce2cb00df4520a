/*
 * What a cache of ours keeps for one reader never reaches another: a member's pages of a private
 * or members-only archive give a stranger no body, no 304 to the member's validators and no
 * Last-Modified; pages the page cache kept for anonymous readers go at once when their list is
 * closed or deleted or their message hidden; and no request header puts a URL of its own into a
 * page that is kept for everyone. (Varnish in front: test/varnish-purge.test.ts.)
 */

import http from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deleteList } from '../src/db/list-admin.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { archiveMessage, hideMessage } from '../src/db/messages.ts';
import { parse } from '../src/mail/parse.ts';
import { loggedIn, WebClient } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;

/** A message with a text attachment, so that every URL of a message has something to show. */
const withAttachment = (id: string, to: string, word: string) => message({
  id, to, subject: `${word} plans`,
  headers: { 'Content-Type': 'multipart/mixed; boundary="b"' },
  body: `--b\nContent-Type: text/plain\n\n${word} is the word.\n--b\nContent-Type: text/plain; name="z.txt"\nContent-Disposition: attachment; filename="z.txt"\n\n${word} attached.\n--b--\n`,
});

async function newList(local: string, archive: 'public' | 'members' | 'private', id: string, word: string): Promise<{ list: ListRow; thread: number }> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive, owners: [] });
  const raw = Buffer.from(withAttachment(id, list.address, word));
  await archiveMessage(db.pool, list.id, raw, await parse(raw));
  const { rows } = await db.pool.query<{ t: number }>('select thread_id::int as t from messages where message_id = $1', [id]);
  return { list, thread: rows[0].t };
}

/** Every archive URL that shows the message `id` of `local`, or its month or thread. */
const urlsOf = (local: string, id: string, thread: number, word: string) => [
  `/lists/${local}/`, `/lists/${local}/2026-11`, `/lists/${local}/thread/${thread}`, `/lists/${local}/feed.atom`,
  `/lists/${local}/2026-11.mbox`, `/lists/${local}/thread/${thread}.mbox`, `/message-id/${id}`, `/message-id/%3C${id}%3E`,
  `/message-id/raw/${id}`, `/message-id/attachment/${id}/1/z.txt`, `/search?q=${word.toLowerCase()}&list=${local}`,
];

/** A GET with headers as given: fetch() writes its own Host. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    }).on('error', reject);
  });
}

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

it('a stranger gets nothing of what a member loaded from a closed archive: no body, no 304 to their validators, no Last-Modified', async () => {
  const closed = [['hush', 'private', 'h1@example.org', 'Zanzibar'], ['club', 'members', 'c1@example.org', 'Quixotic']] as const;
  const member = await loggedIn(db, web.url, 'member@example.org');
  const stranger = await loggedIn(db, web.url, 'stranger@example.org');
  const anonymous = new WebClient(web.url);
  const problems: string[] = [];
  for (const [local, archive, id, word] of closed) {
    const { list, thread } = await newList(local, archive, id, word);
    await addMember(db.pool, list.id, 'member@example.org', 'each');
    const shows = new RegExp(`${word} (plans|is the word|attached)`);
    for (const url of urlsOf(local, id, thread, word)) {
      const mine = await member.get(url);
      expect(mine.status, url).toBe(200);
      expect(mine.headers.get('cache-control'), url).toBe('private, no-store');
      const etag = mine.headers.get('etag')!;
      const lastModified = mine.headers.get('last-modified');
      for (const [who, c] of [['anonymous', anonymous], ['stranger', stranger]] as const) {
        const asks: Record<string, string>[] = [{}, { 'if-none-match': etag }, { 'if-none-match': '*' }, ...(lastModified ? [{ 'if-modified-since': lastModified }] : [])];
        for (const method of ['GET', 'HEAD']) {
          for (const headers of asks) {
            const theirs = await c.request(method, url, undefined, headers);
            const what = `${who} ${method} ${url} ${JSON.stringify(headers)}`;
            // The search answers anyone, with nothing from a list they may not read.
            if (theirs.status === 304 || (theirs.status === 200 && !url.startsWith('/search'))) problems.push(`${what}: ${theirs.status}`);
            if (shows.test(theirs.text)) problems.push(`${what}: shows the message`);
            if (theirs.headers.get('etag') === etag) problems.push(`${what}: the member's ETag`);
            if (lastModified && theirs.headers.get('last-modified') === lastModified) problems.push(`${what}: the member's Last-Modified`);
          }
        }
      }
    }
  }
  expect(problems).toEqual([]);
});

it('pages kept for anonymous readers go at once when their list closes, their message is hidden or the list is deleted', async () => {
  const anonymous = new WebClient(web.url);
  const cases: [string, (list: ListRow, id: string) => Promise<unknown>][] = [
    ['closed', (list) => db.pool.query(`update lists set archive = 'private' where id = $1`, [list.id])],
    ['hidden', (list, id) => hideMessage(db.pool, list.id, id, 'privacy', 'tester')],
    ['deleted', (list) => deleteList(db.pool, list.id)],
  ];
  for (const [local, change] of cases) {
    const id = `${local}@example.org`;
    const word = `Marmot${local}`;
    const { list, thread } = await newList(local, 'public', id, word);
    const urls = urlsOf(local, id, thread, word);
    // Each twice (a HEAD first), so that the second comes from the page cache when it keeps the page.
    for (const url of urls) {
      expect((await anonymous.request('HEAD', url)).status, url).toBe(200);
      for (let i = 0; i < 2; i++) expect((await anonymous.get(url)).text, url).toMatch(new RegExp(`${word} (plans|is the word|attached)`));
    }
    await change(list, id);
    for (const url of urls) {
      const after = await anonymous.get(url);
      expect(after.text, `${local}: ${url}`).not.toMatch(new RegExp(`${word} (plans|is the word|attached)`));
    }
  }
});

it('takes the host of every absolute URL from PUBLIC_URL, whatever Host and X-Forwarded-* a request brings', async () => {
  const { list } = await newList('feeds', 'public', 'feed1@example.org', 'Wombat');
  const forged = { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9', forwarded: 'host=evil.example;proto=https' };
  const urls = [`/lists/${list.local_part}/feed.atom`, '/message-id/feed1@example.org', `/lists/${list.local_part}/`, '/search?q=wombat'];
  for (let round = 0; round < 2; round++) {
    for (const url of urls) {
      const res = await rawGet(`${web.url}${url}`, forged);
      expect(res.status, url).toBe(200);
      expect(res.text, url).not.toContain('evil.example');
    }
  }
  // And what the page cache kept from them is what a plain request gets.
  const feed = await (await fetch(`${web.url}${urls[0]}`)).text();
  expect(feed).toContain(`${web.cfg.publicUrl}/message-id/feed1@example.org`);
});
