import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListRow } from '../src/db/lists.ts';
import { hideMessage, unhideMessage } from '../src/db/messages.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { loggedIn } from './helpers/browser.ts';
import { ParseThread } from '../src/web/archive/parse-thread.ts';
import { bigMessage } from './fixtures/archive/big-message.ts';
import { archive, newList } from './fixtures/archive/seed.ts';

/**
 * Big messages must not slow the web process. A message is parsed once (in a
 * worker thread when it is large) and kept, bounded in bytes; readers who come while it is being
 * parsed share that parse; the page of a large message no longer reads its raw bytes.
 */
let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
const big = bigMessage({ id: 'big@example.org', attachments: 25, bytes: 10 * 1024 * 1024 });

interface Counts {
  hit: number;
  miss: number;
  shared: number;
  thread: number;
  process: number;
}

async function counts(url = web.url): Promise<Counts> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const n = (metric: string, label: string, value: string) => Number(new RegExp(`^${metric}\\{${label}="${value}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return {
    hit: n('listkeeper_parsed_message_requests_total', 'result', 'hit'),
    miss: n('listkeeper_parsed_message_requests_total', 'result', 'miss'),
    shared: n('listkeeper_parsed_message_requests_total', 'result', 'shared'),
    thread: n('listkeeper_message_parses_total', 'where', 'thread'),
    process: n('listkeeper_message_parses_total', 'where', 'process'),
  };
}

const delta = (a: Counts, b: Counts) => Object.fromEntries(Object.keys(a).map((k) => [k, b[k as keyof Counts] - a[k as keyof Counts]]));

beforeAll(async () => {
  db = await testDatabase();
  // The page cache would answer repeat views before they reach the message page: off, so that
  // every request here does the work a logged-in reader's request does.
  web = await startWeb(db, { PAGE_CACHE_MB: '0' });
  dev = await newList(db.pool, 'dev@lists.example.org');
  await archive(db.pool, dev, big.raw);
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('a 10 MB message with 25 attachments', () => {
  it('is parsed once, in the parse thread, for its page and every attachment', async () => {
    const before = await counts();
    const first = await fetch(`${web.url}/message-id/big@example.org`);
    expect(first.status).toBe(200);
    const page = await first.text();
    expect(page).toContain('Here are the files you asked for.');
    for (let i = 1; i <= 25; i++) expect(page).toContain(`/message-id/attachment/big@example.org/${i}/file-${i}.bin`);

    for (let i = 0; i < 3; i++) expect(await (await fetch(`${web.url}/message-id/big@example.org`)).text()).toBe(page);
    for (const n of [1, 7, 25]) {
      const res = await fetch(`${web.url}/message-id/attachment/big@example.org/${n}/file-${n}.bin`);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(big.attachment(n))).toBe(true);
    }
    expect(delta(before, await counts())).toEqual({ miss: 1, hit: 6, shared: 0, thread: 1, process: 0 });
  });

  it('is served to a logged-in reader from the same parse', async () => {
    const reader = await loggedIn(db, web.url, 'reader@example.org');
    const before = await counts();
    const page = await reader.get('/message-id/big@example.org?view=html');
    expect(page.status).toBe(200);
    expect(page.text).toContain('file-25.bin');
    expect(delta(before, await counts())).toMatchObject({ miss: 0, hit: 1 });
  });

  it('is never shown while hidden: neither its page nor its attachments touch the kept parse', async () => {
    await hideMessage(db.pool, dev.id, 'big@example.org', 'spam', 'tester');
    const before = await counts();
    expect((await fetch(`${web.url}/message-id/big@example.org`)).status).toBe(410);
    expect((await fetch(`${web.url}/message-id/attachment/big@example.org/1/file-1.bin`)).status).toBe(410);
    expect(delta(before, await counts())).toMatchObject({ miss: 0, hit: 0 });
    // Shown again, it comes from the parse kept before: archived bytes never change.
    await unhideMessage(db.pool, dev.id, 'big@example.org');
    expect((await fetch(`${web.url}/message-id/big@example.org`)).status).toBe(200);
    expect(delta(before, await counts())).toMatchObject({ miss: 0, hit: 1, thread: 0 });
  });
});

describe('readers who come together', () => {
  it('share one parse of a message nobody has viewed yet', async () => {
    const together = bigMessage({ id: 'together@example.org', attachments: 8, bytes: 3 * 1024 * 1024 });
    await archive(db.pool, dev, together.raw);
    const before = await counts();
    const urls = [
      '/message-id/together@example.org', '/message-id/together@example.org', '/message-id/attachment/together@example.org/3/file-3.bin',
      '/message-id/together@example.org?view=html', '/message-id/attachment/together@example.org/8/file-8.bin',
    ];
    const statuses = await Promise.all(urls.map(async (u) => (await fetch(`${web.url}${u}`)).status));
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    const d = delta(before, await counts());
    // One parse whatever the interleaving: the others joined it, or came after it was kept.
    expect(d).toMatchObject({ miss: 1, thread: 1, process: 0 });
    expect(d.hit + d.shared).toBe(4);
  });
});

describe('the cache', () => {
  it('is bounded in bytes: the least recently used message goes first, and one too big for it is never kept', async () => {
    const small = await startWeb(db, { PAGE_CACHE_MB: '0', MESSAGE_CACHE_MB: '1' });
    try {
      // Three messages of about 400 KB parsed: two fit in 1 MB, the third pushes out the oldest.
      for (const id of ['a', 'b', 'c']) await archive(db.pool, dev, bigMessage({ id: `${id}-lru@example.org`, attachments: 1, bytes: 520 * 1024 }).raw);
      const view = async (id: string) => expect((await fetch(`${small.url}/message-id/${id}-lru@example.org`)).status).toBe(200);
      const before = await counts(small.url);
      await view('a');
      await view('b');
      await view('c');
      await view('c');
      await view('b');
      await view('a');
      expect(delta(before, await counts(small.url))).toMatchObject({ miss: 4, hit: 2 });

      // 10 MB parsed is more than half of 1 MB: parsed for each view, never kept.
      const mid = await counts(small.url);
      for (let i = 0; i < 2; i++) expect((await fetch(`${small.url}/message-id/big@example.org`)).status).toBe(200);
      expect(delta(mid, await counts(small.url))).toMatchObject({ miss: 2, hit: 0 });
    } finally {
      await small.stop();
    }
  });
});

describe('the parse thread', () => {
  const rowId = async (messageId: string) => (await db.pool.query('select id from messages where message_id = $1', [messageId])).rows[0].id as number;

  it('reads a message by row id on its own connection, and says when there is none', async () => {
    const thread = new ParseThread([db.url]);
    try {
      const content = await thread.parse({ messageRowId: await rowId('big@example.org') }, new Date());
      expect(content.attachments).toHaveLength(25);
      expect(content.attachments[24].content.equals(big.attachment(25))).toBe(true);
      expect(content.headers.get('subject')).toEqual(['Big attachments']);
      await expect(thread.parse({ messageRowId: 999_999_999 }, new Date())).rejects.toMatchObject({ status: 404 });
    } finally {
      await thread.stop();
    }
  });

  it('stops a parse that passes its deadline, and parses the next message on a new thread', async () => {
    const thread = new ParseThread([db.url], { deadlineMs: 1, maxWaiting: 16 });
    try {
      await expect(thread.parse({ messageRowId: await rowId('big@example.org') }, new Date())).rejects.toMatchObject({ code: 'parse_timeout', status: 503 });
    } finally {
      await thread.stop();
    }
    const patient = new ParseThread([db.url], { deadlineMs: 60_000, maxWaiting: 16 });
    try {
      expect((await patient.parse({ raw: big.raw }, new Date())).attachments).toHaveLength(25);
    } finally {
      await patient.stop();
    }
  });

  it('answers 503 at once when too many parses wait, and fails what waits when it stops', async () => {
    const thread = new ParseThread([db.url], { deadlineMs: 60_000, maxWaiting: 1 });
    const id = await rowId('big@example.org');
    // Settled into values at once, so that their rejections are handled when stop() makes them.
    const first = thread.parse({ messageRowId: id }, new Date()).catch((err: unknown) => err);
    const second = thread.parse({ messageRowId: id }, new Date()).catch((err: unknown) => err);
    await expect(thread.parse({ messageRowId: id }, new Date())).rejects.toMatchObject({ code: 'parse_busy', status: 503 });
    await thread.stop();
    expect(await first).toMatchObject({ code: 'stopping' });
    expect(await second).toMatchObject({ code: 'stopping' });
  });
});
