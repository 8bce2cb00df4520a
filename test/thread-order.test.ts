import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { threadTree } from '../src/db/archive.ts';
import { hideMessage, unhideMessage } from '../src/db/messages.ts';
import type { Queryable } from '../src/db/pool.ts';
import { MAX_DEPTH, readingOrder, type ThreadNode } from '../src/mail/thread-order.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

/**
 * A thread's reading order (src/mail/thread-order.ts), against the recursive query that worked it
 * out in the database before (kept here as the reference, over the same rows given as JSON): the
 * same messages, in the same order, at the same depths, under the same parents, for threads with
 * hidden messages, parents outside the thread, equal dates and reference cycles. Then the order as
 * thread pages read it (src/db/archive.ts, src/db/thread-nodes.ts): the thread's messages as one
 * bytea in slices, decoded into typed arrays, read and ordered again at every view.
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

it('reads and orders the thread at every view, so a reply, a hide and a showing again change every page at the next view', async () => {
  const list = await newList(db.pool, 'views@lists.example.org');
  const id = (k: number) => `views-${k}@example.org`;
  const post = (k: number, parent: number | null) => archive(db.pool, list, mail({
    id: id(k), subject: 'Re: Views', date: new Date(Date.UTC(2026, 10, 2, 10, k)).toUTCString().replace('GMT', '+0000'), body: `body ${k}`,
    ...(parent === null ? {} : { inReplyTo: id(parent), references: [id(0), id(parent)] }),
  }));
  // 0 ─ 1 ─ 2 ─ 4 ─ 6
  //   ├ 3 ─ 5
  //   └ 7
  for (const [k, parent] of [[0, null], [1, 0], [2, 1], [3, 0], [4, 2], [5, 3], [6, 4], [7, 0]] as const) await post(k, parent);
  const { rows: [{ thread_id: threadId }] } = await db.pool.query<{ thread_id: number }>(`select thread_id from messages where message_id = $1`, [id(0)]);
  const statements: string[] = [];
  const reader = { query: (config: pg.QueryConfig) => (statements.push(config.name ?? ''), db.pool.query(config)) } as unknown as Queryable;
  // Pages of 3 bodies, the whole outline on each.
  const view = (page: number) => threadTree(reader, list.id, threadId, { limit: 1000, offset: 0, bodyFrom: (page - 1) * 3, bodyTo: page * 3 });
  const k = (msgid: string) => Number(/^views-(\d+)@/.exec(msgid)![1]);
  /** Every page's bodies, in page order, with each page's outline: what a reader paging through sees. */
  const readAll = async () => {
    const pages = [await view(1), await view(2), await view(3)];
    for (const p of pages) expect(p.map((e) => e.pos)).toEqual(p.map((_, i) => i + 1));
    // Each page shows the same outline, and its bodies are the outline's at its places.
    for (const p of pages.slice(1)) expect(p.map((e) => [e.message_id, e.depth])).toEqual(pages[0].map((e) => [e.message_id, e.depth]));
    return { outline: pages[0].map((e) => `${'  '.repeat(e.depth)}${k(e.message_id)}`), bodies: pages.flatMap((p) => p.filter((e) => e.body !== null).map((e) => k(e.message_id))) };
  };

  const first = await readAll();
  expect(first.outline).toEqual(['0', '  1', '    2', '      4', '        6', '  3', '    5', '  7']);
  expect(first.bodies).toEqual([0, 1, 2, 4, 6, 3, 5, 7]);
  // Two statements a view: the thread's nodes, then the window's rows.
  expect(statements).toEqual(Array.from({ length: 3 }, () => ['archive-thread-nodes', 'archive-thread-rows']).flat());

  await post(8, 5);
  const replied = await readAll();
  expect(replied.outline).toEqual(['0', '  1', '    2', '      4', '        6', '  3', '    5', '      8', '  7']);
  expect(replied.bodies).toEqual([0, 1, 2, 4, 6, 3, 5, 8, 7]);

  await hideMessage(db.pool, list.id, id(2), 'spam', 'moderator@example.org');
  const hidden = await readAll();
  expect(hidden.outline).toEqual(['0', '  1', '    4', '      6', '  3', '    5', '      8', '  7']);
  expect(hidden.bodies).toEqual([0, 1, 4, 6, 3, 5, 8, 7]);

  await unhideMessage(db.pool, list.id, id(2));
  expect(await readAll()).toEqual(replied);
});

it('orders messages of the same millisecond by id, as readingOrder does, whatever order their microseconds give', async () => {
  const list = await newList(db.pool, 'micro@lists.example.org');
  await archive(db.pool, list, mail({ id: 'micro-0@example.org', subject: 'Micro', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
  for (let k = 1; k <= 4; k++) {
    await archive(db.pool, list, mail({ id: `micro-${k}@example.org`, subject: 'Re: Micro', date: 'Mon, 02 Nov 2026 10:01:00 +0000', inReplyTo: 'micro-0@example.org' }));
  }
  // Later ids, earlier microseconds within one millisecond: the thread's index gives them in reverse.
  await db.pool.query(`update messages set date = timestamptz '2026-11-02 10:01:00.000900+00' - (substring(message_id from 'micro-(\\d)')::int * interval '100 microseconds')
                        where message_id like 'micro-_@example.org' and message_id <> 'micro-0@example.org'`);
  const { rows: [{ thread_id: threadId }] } = await db.pool.query<{ thread_id: number }>(`select thread_id from messages where message_id = 'micro-0@example.org'`);
  const { rows: nodes } = await db.pool.query<ThreadNode>(
    `select m.id, m.parent_id, (extract(epoch from m.date) * 1000)::bigint as ms, true as visible from messages m where m.thread_id = $1`, [threadId]);
  const entries = await threadTree(db.pool, list.id, threadId, { limit: 1000, offset: 0, bodyFrom: 0, bodyTo: 50 });
  expect(entries.map((e) => ({ id: e.id, depth: e.depth, parent: e.parent }))).toEqual(readingOrder(nodes));
  expect(entries.map((e) => e.message_id)).toEqual([0, 1, 2, 3, 4].map((k) => `micro-${k}@example.org`));
});

/**
 * A thread of `n` messages inserted as rows (archiving them one by one would take minutes), in a
 * list of its own; ids from `base` up. `parent(k)` is the index of the message k answers, -1 for
 * none, or 'outside': a message of another thread (archived in the list too).
 */
async function rowsThread(address: string, base: number, n: number, parent: (k: number) => number | 'outside', hidden: (k: number) => boolean, ms: (k: number) => number) {
  const list = await newList(db.pool, address);
  await archive(db.pool, list, mail({ id: `outside-${base}@example.org`, subject: 'Elsewhere', date: 'Mon, 02 Nov 2026 09:00:00 +0000' }));
  const { rows: [{ id: outside }] } = await db.pool.query<{ id: number }>(`select id::float8 as id from messages where message_id = $1`, [`outside-${base}@example.org`]);
  const { rows: [{ t }] } = await db.pool.query<{ t: number }>(`select nextval('thread_ids')::int as t`);
  const parents = Array.from({ length: n }, (_, k) => { const p = parent(k); return p === 'outside' ? outside : p < 0 ? null : base + p; });
  await db.pool.query(
    `insert into messages (id, message_id, raw, size, subject, from_name, from_email, date, body, thread_id, parent_id)
     select $1::bigint + o - 1, $2 || '-' || o || '@example.org', '\\x00', 1, 'Re: Rows', 'Bot', 'bot@example.org',
            to_timestamp(d / 1000.0), 'row ' || o, $3, p
       from unnest($4::bigint[], $5::bigint[]) with ordinality as x (p, d, o)`,
    [base, address, t, parents, Array.from({ length: n }, (_, k) => ms(k))]);
  await db.pool.query(
    `insert into list_messages (list_id, message_id, date, hidden_at)
     select $1, id, date, case when id - $3 = any($4::bigint[]) then now() end from messages where thread_id = $2`,
    [list.id, t, base, Array.from({ length: n }, (_, k) => k).filter(hidden)]);
  // As autovacuum would after a load: the statements' plans, cached by the pool's connections over
  // the few rows of the tests above, are made again (a nested loop over 20,000 rows took minutes).
  await db.pool.query('analyze messages, list_messages');
  const { rows: nodes } = await db.pool.query<ThreadNode>(
    `select m.id::float8 as id, m.parent_id::float8 as parent_id, (extract(epoch from m.date) * 1000)::float8 as ms,
            exists (select 1 from list_messages lm where lm.list_id = $1 and lm.message_id = m.id and lm.hidden_at is null) as visible
       from messages m where m.thread_id = $2`, [list.id, t]);
  return { list, threadId: t, nodes };
}

it('gives a thread of several slices of its bytea the order readingOrder gives its rows, ids above 2^32 included', async () => {
  // 5,000 messages (four slices of 1,600), ids from 2^33: replies to one of the last 40 messages,
  // the root, a message outside the thread, or (every 97th) a later one, which makes cycles; every
  // 9th hidden; dates in runs of the same millisecond, so siblings fall to their ids across slices.
  const n = 5_000;
  const base = 2 ** 33;
  const { list, threadId, nodes } = await rowsThread('slices@lists.example.org', base, n,
    (k) => (k === 0 ? -1 : k % 97 === 0 ? Math.min(n - 1, k + 3) : k % 211 === 0 ? 'outside' : k % 13 === 0 ? 0 : Math.max(0, k - 1 - ((k * 7919) % 40))),
    (k) => k % 9 === 4,
    (k) => Date.UTC(2026, 0, 1) + Math.floor(k / 7) * 60_000 + (k % 3));
  const expected = readingOrder(nodes);
  expect(expected.length).toBe(n - Math.floor((n + 4) / 9));
  expect(expected.some((p) => p.id > 2 ** 32 + 4_000)).toBe(true);
  // The outline in windows of 1,000, as the page reads it, each with the bodies of 50 places in it.
  const entries = [];
  for (let offset = 0; offset < expected.length; offset += 1000) {
    const window = await threadTree(db.pool, list.id, threadId, { limit: 1000, offset, bodyFrom: offset + 50, bodyTo: offset + 100 });
    expect(window.filter((e) => e.body !== null).map((e) => e.pos)).toEqual(Array.from({ length: 50 }, (_, i) => offset + 51 + i));
    entries.push(...window);
  }
  expect(entries.map((e) => ({ id: Number(e.id), depth: e.depth, parent: e.parent === null ? null : Number(e.parent) }))).toEqual(expected);
  expect(entries.every((e, i) => e.total === expected.length && e.pos === i + 1)).toBe(true);
});

it('lets other work of the event loop in between reading a large thread and ordering it', async () => {
  const n = 12_000;
  const { list, threadId } = await rowsThread('turns@lists.example.org', 3_000_000, n, (k) => k - 1, () => false, (k) => Date.UTC(2026, 0, 1) + k * 1000);
  // Something else of the process, queued as soon as the thread's read is back: it runs before the
  // window's rows are asked for only if the view gave the event loop a turn after the read.
  let otherRan = false;
  let ranFirst: boolean | undefined;
  const reader = {
    query: async (config: pg.QueryConfig) => {
      if (config.name === 'archive-thread-rows') ranFirst = otherRan;
      const r = await db.pool.query(config);
      if (config.name === 'archive-thread-nodes') setImmediate(() => (otherRan = true));
      return r;
    },
  } as unknown as Queryable;
  const entries = await threadTree(reader, list.id, threadId, { limit: 1000, offset: 5000, bodyFrom: 5000, bodyTo: 5050 });
  expect(entries.map((e) => e.pos)).toEqual(Array.from({ length: 1000 }, (_, i) => 5001 + i));
  expect(ranFirst).toBe(true);
});
