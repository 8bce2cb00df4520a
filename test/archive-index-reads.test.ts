/*
 * A message page at a million messages costs what it reads from the table: a page of messages or
 * list_messages that is not in shared_buffers for each row. The thread's counts and neighbours
 * and the replies' ids come from an index alone (messages_by_thread, sql/0059), so a page in a
 * long thread reads the table for the rows it shows, not for every message of the thread.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBatch } from '../src/db/archive-import.ts';
import { messageWithNeighbours } from '../src/db/archive-messages.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { mail, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
const THREAD = 80;

beforeAll(async () => {
  db = await testDatabase();
  const dev = await newList(db.pool, 'dev@lists.example.org');
  // One thread: a question and 79 answers to it, each after 40 messages of other threads, so that
  // its messages lie on different pages of the table, as a thread's do in a real archive (where
  // the reads counted below are pages not yet in shared_buffers).
  const batch = [];
  const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toUTCString();
  for (let i = 0; i < THREAD; i++) {
    const raw = mail({ id: `t-${i}@example.org`, subject: 'Question', inReplyTo: i > 0 ? 't-0@example.org' : undefined, date: at(i * 41) });
    batch.push({ raw, message: await parse(raw) });
    for (let k = 1; k <= 40; k++) {
      const other = mail({ id: `o-${i}-${k}@example.org`, subject: `Other ${i} ${k}`, date: at(i * 41 + k) });
      batch.push({ raw: other, message: await parse(other) });
    }
  }
  await importBatch(db.pool, dev.id, batch);
  // What autovacuum does after the import: the visibility map that index-only scans rely on.
  await db.pool.query('vacuum analyze messages, list_messages');
});

afterAll(async () => {
  await db?.drop();
});

describe('the message page of a long thread', () => {
  it('counts the thread and finds its neighbours and replies without reading every message of it', async () => {
    // One connection, in one transaction: its own counts of the blocks it asked for (the
    // pg_stat_get_xact_ functions), which nothing else running (autovacuum) adds to.
    const one = await db.pool.connect();
    try {
      await one.query('begin');
      const blocks = async () => {
        const { rows } = await one.query<{ heap: string }>(
          `select pg_stat_get_xact_blocks_fetched('messages'::regclass) + pg_stat_get_xact_blocks_fetched('list_messages'::regclass) as heap`);
        return Number(rows[0].heap);
      };
      const anonymous = { emails: [], siteAdmin: false };
      for (const [id, position, replies] of [['t-40@example.org', 41, 0], ['t-0@example.org', 1, THREAD - 1]] as const) {
        const before = await blocks();
        const page = await messageWithNeighbours(one, id, anonymous, null);
        const n = page.neighbours!;
        expect([n.thread_messages, n.thread_position, n.replies.length]).toEqual([THREAD, position, replies]);
        if (position > 1) {
          expect([n.parent?.message_id, n.prev_in_thread?.message_id, n.next_in_thread?.message_id]).toEqual(['t-0@example.org', 't-39@example.org', 't-41@example.org']);
        }
        // The rows shown (the message, its parent, four neighbours, each reply) and the visibility
        // maps the index-only scans consult: 66 and 140 here. Reading every message of the thread
        // for each count and for the replies, before sql/0059, was 422 for the first.
        expect(await blocks() - before).toBeLessThan(80 + replies);
      }
    } finally {
      await one.query('rollback');
      one.release();
    }
  });
});
