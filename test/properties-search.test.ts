import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList } from '../src/db/lists.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/**
 * The websearch input path over the real web app: whatever a reader types in
 * the search form, or puts in the query string by hand, the answer is results (200), a redirect
 * to the message a Message-ID names (302), a refusal that says why (400; 414 or 431 for a URL
 * past the server's limits), or 404 for a list filter naming no readable list; never a 500.
 */
const SEED = Number(process.env.PROPERTY_SEED ?? 1202);

let db: TestDatabase;
let smtp: RunningIngest;
let web: RunningWeb;

beforeAll(async () => {
  db = await testDatabase();
  await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  smtp = await startIngest(db.pool);
  const bodies = ['vacuum freezes old tuples', 'the planner picks an index scan', 'replication slots keep WAL', 'a - b -- c (d) "e f" | g & !h'];
  for (const [i, body] of bodies.entries()) {
    const res = await sendRaw(smtp.port, { from: 'a@example.org', to: ['dev@lists.example.org'] }, message({ id: `search-${i}@example.org`, subject: body.split(' ')[1], body }));
    expect(res.ok).toBe(true);
  }
  web = await startWeb(db);
});

afterAll(async () => {
  await web?.stop();
  await smtp?.stop();
  await db?.drop();
});

/** What readers type, and what websearch_to_tsquery trips on. */
const query = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.string({ unit: fc.constantFrom('-', '"', '(', ')', '|', '&', '!', ':', '*', '<', '>', '<->', ' or ', ' OR ', ' and ', ' ', 'vacuum', 'index', '\\', "'", '\u0000', '%', 'é', '@', '<a@b>'), maxLength: 80 }),
  fc.tuple(fc.constantFrom('', 'a '), fc.constantFrom('-', '!', '(', '"', '-a ', 'a -', 'or ', '- ', '"a" '), fc.integer({ min: 10, max: 300 }), fc.constantFrom('', 'x', ' x', ' vacuum'))
    .map(([head, s, n, tail]) => head + s.repeat(n) + tail),
);

/** 404 is right too when the list filter names no list the reader may read. */
const ok = (status: number, params: URLSearchParams) => [200, 302, 400, 414, 431].includes(status) || (status === 404 && params.has('list'));

async function search(params: URLSearchParams): Promise<void> {
  const res = await fetch(`${web.url}/search?${params}`, { redirect: 'manual' });
  await res.arrayBuffer();
  expect(ok(res.status, params), `/search?${params.toString().slice(0, 300)} answered ${res.status}`).toBe(true);
}

it('any string typed into search gives results, a redirect or a 400, never a 500', async () => {
  await fc.assert(fc.asyncProperty(query, (q) => search(new URLSearchParams({ q }))), { seed: SEED, numRuns: 300 });
});

it('any strings as the list, author and date filters give results, a redirect, a 400 or a 404 for the list, never a 500', async () => {
  const filters = fc.record({ list: query, from: query, after: query, before: query }, { requiredKeys: [] });
  await fc.assert(fc.asyncProperty(fc.constantFrom('', 'vacuum', 'index -scan'), filters, async (q, f) => {
    const params = new URLSearchParams({ q });
    for (const [k, v] of Object.entries(f)) params.set(k, v);
    await search(params);
  }), { seed: SEED, numRuns: 150 });
});

it('a hand-made query string (any bytes percent-encoded, repeated keys, odd encodings) gives results, a redirect or a 400', async () => {
  const piece = fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => [...b].map((x) => `%${x.toString(16).padStart(2, '0').toUpperCase()}`).join('')),
    fc.constantFrom('%', '%2', '%ZZ', '%E0%A4%A', '%C0%80', '%00', '+', '&q=', '&q[]=', '&q[a]=', '=', '&page=', '99999999999999999999', '-1', '&list=', '&from=', '&after=', '&before=2026-13-45', 'vacuum'),
  );
  await fc.assert(fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 10 }), async (pieces) => {
    const qs = `q=${pieces.join('')}`;
    const res = await fetch(`${web.url}/search?${qs}`, { redirect: 'manual' });
    await res.arrayBuffer();
    expect(ok(res.status, new URLSearchParams(qs.replace(/%(?![0-9A-Fa-f]{2})/g, '%25'))), `/search?${qs.slice(0, 300)} answered ${res.status}`).toBe(true);
  }), { seed: SEED, numRuns: 150 });
});
