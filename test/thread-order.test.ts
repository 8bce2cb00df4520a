import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { threadTree } from '../src/db/archive.ts';
import type { Queryable } from '../src/db/pool.ts';
import { MAX_DEPTH, readingOrder, type ThreadNode } from '../src/mail/thread-order.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

/**
 * A thread's reading order (src/mail/thread-order.ts), against the recursive query that worked it
 * out in the database before (kept here as the reference, over the same rows given as JSON): the
 * same messages, in the same order, at the same depths, under the same parents, for threads with
 * hidden messages, parents outside the thread, equal dates and reference cycles.
 */
const SEED = Number(process.env.PROPERTY_SEED ?? 1205);

let db: TestDatabase;

beforeAll(async () => {
  db = await testDatabase();
});

afterAll(async () => {
  await db?.drop();
});

const REFERENCE = `with recursive t as (
   select * from jsonb_to_recordset($1::jsonb) as x(id bigint, parent_id bigint, ms bigint, visible boolean)
 ), walk (id, anc, steps) as (
   select id, parent_id, 0 from t where visible
   union all
   select w.id, t.parent_id, w.steps + 1 from walk w join t on t.id = w.anc where not t.visible and w.steps < 10000
 ), eff as (
   select w.id, case when v.visible then w.anc end as parent
     from walk w left join t v on v.id = w.anc
    where w.anc is null or v.id is null or v.visible
 ), tree (id, depth, path, parent) as (
   select e.id, 0, array[t.ms, e.id], e.parent from eff e join t on t.id = e.id where e.parent is null
   union all
   select e.id, tr.depth + 1, tr.path || array[t.ms, e.id], e.parent
     from tree tr join eff e on e.parent = tr.id join t on t.id = e.id
    where tr.depth < 10000
 ), ordered as (
   select id, depth, path, parent from tree
   union all
   select e.id, 0, array[t.ms, e.id], e.parent
     from eff e join t on t.id = e.id where e.parent is not null and not exists (select 1 from tree x where x.id = e.id)
 )
 select id, depth, parent from ordered order by path`;

async function reference(nodes: ThreadNode[]) {
  const { rows } = await db.pool.query<{ id: number; depth: number; parent: number | null }>(REFERENCE, [JSON.stringify(nodes)]);
  return rows;
}

/**
 * A thread: each message answers an earlier one, none, or one outside the thread; some are hidden;
 * dates often equal (the id decides); and a few answer a later, visible message, which makes
 * cycles (always through a visible message: a cycle of hidden messages alone has no visible
 * ancestor, and the reference dropped its messages from the page).
 */
const thread = fc.record({
  n: fc.integer({ min: 1, max: 40 }),
  seed: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 5 }), fc.boolean()), { minLength: 40, maxLength: 40 }),
  ids: fc.uniqueArray(fc.integer({ min: 1, max: 100_000 }), { minLength: 40, maxLength: 40 }),
  cycles: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }),
}).map(({ n, seed, ids, cycles }) => {
  const nodes: ThreadNode[] = [];
  for (let i = 0; i < n; i++) {
    const [kind, pick, ms, hidden] = seed[i];
    const parent = i === 0 || kind < 0.15 ? null : kind < 0.2 ? 999_999 : nodes[Math.min(i - 1, Math.floor(pick * i))].id;
    nodes.push({ id: ids[i], parent_id: parent, ms: 1_700_000_000_000 + ms * 60_000, visible: !hidden || i === 0 });
  }
  const visible = nodes.filter((x) => x.visible);
  for (const [a, b] of cycles) nodes[a % n].parent_id = visible[b % visible.length].id;
  return nodes;
});

it('orders a thread as the recursive query did', async () => {
  await fc.assert(fc.asyncProperty(thread, async (nodes) => {
    expect(readingOrder(nodes)).toEqual(await reference(nodes));
  }), { seed: SEED, numRuns: 300 });
});

it('hangs a reply from its nearest visible ancestor, over hidden ones and ones outside the thread', async () => {
  const at = (id: number, parent: number | null, visible = true): ThreadNode => ({ id, parent_id: parent, ms: id * 1000, visible });
  const nodes = [at(1, null), at(2, 1, false), at(3, 2, false), at(4, 3), at(5, 777), at(6, 5), at(7, 4)];
  const order = readingOrder(nodes);
  expect(order).toEqual([
    { id: 1, depth: 0, parent: null },
    { id: 4, depth: 1, parent: 1 },
    { id: 7, depth: 2, parent: 4 },
    { id: 5, depth: 0, parent: null },
    { id: 6, depth: 1, parent: 5 },
  ]);
  expect(order).toEqual(await reference(nodes));
});

it('keeps a visible message whose ancestors are a cycle of hidden ones, as the start of a branch', () => {
  const nodes: ThreadNode[] = [
    { id: 1, parent_id: 2, ms: 1, visible: false },
    { id: 2, parent_id: 1, ms: 2, visible: false },
    { id: 3, parent_id: 1, ms: 3, visible: true },
    { id: 4, parent_id: 3, ms: 4, visible: true },
  ];
  expect(readingOrder(nodes)).toEqual([{ id: 3, depth: 0, parent: null }, { id: 4, depth: 1, parent: 3 }]);
});

it('places a chain deeper than MAX_DEPTH without running out of stack, the rest as branches by date', () => {
  const n = MAX_DEPTH + 2_000;
  const nodes: ThreadNode[] = Array.from({ length: n }, (_, i) => ({ id: i + 1, parent_id: i === 0 ? null : i, ms: i, visible: true }));
  const order = readingOrder(nodes);
  expect(order).toHaveLength(n);
  expect(order.slice(0, MAX_DEPTH + 1).every((p, i) => p.id === i + 1 && p.depth === i)).toBe(true);
  expect(order.slice(MAX_DEPTH + 1).every((p, i) => p.id === MAX_DEPTH + 2 + i && p.depth === 0 && p.parent === p.id - 1)).toBe(true);
});

it('leaves out of the page a message hidden between reading the thread and reading its rows', async () => {
  const list = await newList(db.pool, 'race@lists.example.org');
  await archive(db.pool, list, mail({ id: 'race-1@example.org', subject: 'Start', date: 'Mon, 02 Nov 2026 10:00:00 +0000', body: 'first' }));
  await archive(db.pool, list, mail({ id: 'race-2@example.org', subject: 'Re: Start', date: 'Mon, 02 Nov 2026 10:01:00 +0000', body: 'second, hidden in between', inReplyTo: 'race-1@example.org' }));
  await archive(db.pool, list, mail({ id: 'race-3@example.org', subject: 'Re: Start', date: 'Mon, 02 Nov 2026 10:02:00 +0000', body: 'third', inReplyTo: 'race-2@example.org' }));
  const { rows: [{ thread_id: threadId }] } = await db.pool.query<{ thread_id: number }>(`select thread_id from messages where message_id = 'race-1@example.org'`);
  // The reader's connection: a moderator hides race-2 just after the thread's first read.
  let reads = 0;
  const query = async (config: unknown) => {
    const r = await db.pool.query(config as pg.QueryConfig);
    if (++reads === 1) {
      await db.pool.query(`update list_messages set hidden_at = now() where list_id = $1 and message_id = (select id from messages where message_id = 'race-2@example.org')`, [list.id]);
    }
    return r;
  };
  const reader = { query } as unknown as Queryable;
  const entries = await threadTree(reader, list.id, threadId, { limit: 1000, offset: 0, bodyFrom: 0, bodyTo: 50 });
  expect(reads).toBe(2);
  expect(entries.map((e) => e.message_id)).toEqual(['race-1@example.org', 'race-3@example.org']);
  expect(entries.map((e) => e.body ?? '').join(' ')).not.toContain('hidden in between');
});
