/*
 * Archive benchmark: imports a deterministic corpus (BENCH_MESSAGES, default 100,000) through
 * `importMbox`, then measures over HTTP, against `listkeeper serve --web` in its own processes
 * (one per core): search (rare words, common words, phrases), the message page, a month page and
 * the page of a 300-message thread and of a 3,000-reply chain, with the page cache off (every
 * request does the work), then the message page again with the cache on. Prints p50/p95/max latencies (one request at a time)
 * and requests per second (8 connections), measured with wrk when installed (bench/http-load.ts).
 */

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config.ts';
import { importMbox } from '../src/core/archive-import.ts';
import { openDatabase, type Database } from '../src/db/database.ts';
import { findList } from '../src/db/lists.ts';
import { messageIdPath } from '../src/mail/message-id.ts';
import { benchDatabase, type BenchDatabase } from './bench-db.ts';
import { Corpus } from './corpus.ts';
import { load, loadClient, warm, type LoadResult } from './http-load.ts';
import { importCorpus, startWeb, WEB_PROCESSES, type WebServer } from './listkeeper-archive.ts';
import { describeMemory, peakMemoryDuring, systemMemory, type SystemMemory } from './pss.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Connections of the req/s load (BENCH_HTTP_CONNECTIONS: more readers at once, more pooled connections wanted)
const BUSY_CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 8);
const GOALS = 'goals: import >= 1650 msgs/s; search p95 <= 15 ms (words), <= 60 ms (phrases), max <= 150 ms; message page p95 <= 5 ms and >= 1000 req/s; thread page p95 <= 40 ms';

const ROWS = ['search', 'message', 'month', 'thread', 'chain', 'cached', 'size'];
/** Replies in the `chain` row's thread, each answering the one before (a bot answering itself). */
const CHAIN = 3_000;

/**
 * rows: some of ROWS (`npm run bench -- archive:message`); the import always runs. keep: leave the
 * archive's database (and the embedded server, sized for it) for a benchmark that follows, and
 * return what drops it.
 */
export async function run(rows: string[] = ROWS, opts: { keep?: boolean } = {}): Promise<BenchDatabase | undefined> {
  const unknown = rows.filter((r) => !ROWS.includes(r));
  if (unknown.length) throw new Error(`no such archive row: ${unknown.join(', ')} (rows: ${ROWS.join(', ')})`);
  const n = Number(process.env.BENCH_MESSAGES ?? 100_000);
  const outDir = path.join(ROOT, 'bench/out');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `archive-corpus-${n}-${process.pid}.mbox`);
  const corpus = new Corpus({ messages: n });
  corpus.writeMbox(file);
  const mb = fs.statSync(file).size / 1048576;

  const bdb = await benchDatabase('lk_bench_archive');
  const cfg = () => parseConfig({ DATABASE_URL: bdb.url, LOG_LEVEL: 'warn' });
  let db = await openDatabase(cfg(), 'bench');
  let server: WebServer | undefined;
  let finished = false;
  try {
    const imported = await importCorpus(db, file);
    console.log(`corpus: ${corpus.size} messages, ${mb.toFixed(1)} MB mbox`);
    console.log(`import: ${imported.added} messages in ${imported.seconds.toFixed(1)} s = ${Math.round(imported.added / imported.seconds)} msgs/s (chunks of ${imported.chunkMessages.toLocaleString('en-US')} split by thread between ${imported.writers} writers; threading and tsvector included)`);
    if (rows.includes('size')) console.log(await databaseSize(db, imported.added));
    // The embedded server chose its settings when it started on an empty database; a server
    // started on this archive (any restart, an upgrade) sizes them for it: measure that one.
    if (bdb.postmasterPid) {
      await db.close();
      console.log(await bdb.restart());
      db = await openDatabase(cfg(), 'bench');
    }

    // First without the page cache (PAGE_CACHE_MB=0): every request does the work, which is what
    // the goals are about. Then the message page again as deployed, cache on, for repeat views.
    server = await startWeb(bdb.url, 0);
    let base = server.base;
    console.log(`web: ${WEB_PROCESSES} processes (WEB_PROCESSES); load client: ${loadClient}; latency with one request at a time, req/s with ${BUSY_CONNECTIONS} connections`);

    const info = corpus.info;
    const search = async (label: string, queries: string[]) => {
      const urls = queries.map((q) => `/search?q=${encodeURIComponent(q)}`);
      await warm(base, urls);
      report(`search ${label}`, await load(base, urls, { connections: 1, seconds: 3 }));
    };
    if (rows.includes('search')) {
      await search('rare words', info.rareWords);
      await search('common words', info.commonWords);
      await search('phrases', info.phrases.map((p) => `"${p}"`));
      await search('two words', info.phrases);
    }

    const { rows: sample } = await db.pool.query<{ message_id: string }>('select message_id from messages order by id % 997, id limit 2000');
    const messageUrls = sample.map((r) => `/message-id/${messageIdPath(r.message_id)}`);
    // The whole system's memory under that load (bench/pss.ts): what issue 14 set a goal for.
    if (rows.includes('message')) {
      const memory = await page('message page', messageUrls, base, () => systemMemory(server!.child.pid!, bdb.url, bdb.postmasterPid));
      console.log(`  under the message page load: ${describeMemory(memory!)}`);
    }
    const { rows: months } = await db.pool.query<{ m: string }>(`select distinct to_char(date, 'YYYY-MM') as m from list_messages limit 12`);
    if (rows.includes('month')) await page('month page', months.map((r) => `/lists/dev/${r.m}/`), base);
    if (rows.includes('thread') && info.bigThreadRoot) {
      const { rows } = await db.pool.query<{ thread_id: number; n: number }>(
        'select thread_id, (select count(*) from messages x where x.thread_id = m.thread_id)::int as n from messages m where message_id = $1', [info.bigThreadRoot]);
      await page(`thread page (${rows[0].n} messages)`, [`/lists/dev/thread/${rows[0].thread_id}`], base);
    }
    if (rows.includes('chain')) {
      // A thread as deep as it is long: its page's cost once grew with depth times length.
      const chain = path.join(outDir, `archive-chain-${process.pid}.mbox`);
      try {
        writeChainMbox(chain, CHAIN);
        await importMbox(db, await findList(db.pool, 'dev@lists.example.org'), chain);
      } finally {
        fs.rmSync(chain, { force: true });
      }
      const { rows } = await db.pool.query<{ thread_id: number }>(`select thread_id from messages where message_id = 'chain-0@bench.example'`);
      await page(`thread page (a chain of ${CHAIN.toLocaleString('en-US')} replies)`, [`/lists/dev/thread/${rows[0].thread_id}`], base);
    }
    await server.stop();
    server = undefined;
    if (rows.includes('cached')) {
      // Repeat views: the same 2,000 messages, read again and again within the cache's 10 s (each
      // process caches its own copy of a page); 4 s of load fill the caches first.
      server = await startWeb(bdb.url, 64);
      base = server.base;
      await load(base, messageUrls, { connections: 8, seconds: 4 });
      const cached = await page('message page, page cache on', messageUrls, base, () => systemMemory(server!.child.pid!, bdb.url, bdb.postmasterPid));
      console.log(`  with the default settings (page cache on): ${describeMemory(cached!)}`);
      console.log(GOALS);
    }
    finished = true;
    return opts.keep ? bdb : undefined;
  } finally {
    await server?.stop();
    await db.close();
    if (!(finished && opts.keep)) await bdb.drop();
    fs.rmSync(file, { force: true });
  }
}

/** An mbox of `n` messages, each a reply to the one before, a minute apart. */
function writeChainMbox(file: string, n: number) {
  const fd = fs.openSync(file, 'w');
  try {
    const start = Date.UTC(2025, 0, 1);
    for (let i = 0; i < n; i++) {
      const refs = i === 0 ? '' : `In-Reply-To: <chain-${i - 1}@bench.example>\nReferences: <chain-0@bench.example> <chain-${i - 1}@bench.example>\n`;
      fs.writeSync(fd, `From builds@bench.example Wed Jan  1 00:00:00 2025\nFrom: Build Bot <builds@bench.example>\nTo: dev@lists.example.org\n`
        + `Subject: ${i === 0 ? '' : 'Re: '}nightly build status\nDate: ${new Date(start + i * 60_000).toUTCString()}\nMessage-ID: <chain-${i}@bench.example>\n${refs}\n`
        + `Build ${i} finished.\n\n`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Latency with one request at a time, then requests per second with 8 connections; with `memory`,
 * the peak of the system's memory sampled during the 8 connections' load.
 */
async function page(label: string, urls: string[], base: string, memory?: () => Promise<SystemMemory>): Promise<SystemMemory | undefined> {
  await warm(base, urls.slice(0, 50));
  const serial = await load(base, urls, { connections: 1, seconds: 4 });
  const busyLoad = load(base, urls, { connections: BUSY_CONNECTIONS, seconds: 4 });
  const { result: busy, peak } = memory ? await peakMemoryDuring(busyLoad, memory) : { result: await busyLoad, peak: undefined };
  report(label, serial, busy.perSecond);
  return peak;
}

/** The database's size on disk per message, and its biggest parts (after the import's VACUUM ANALYZE). */
async function databaseSize(db: Database, messages: number): Promise<string> {
  const { rows } = await db.pool.query<{ name: string; bytes: string }>(
    `select 'database' as name, pg_database_size(current_database()) as bytes
     union all select 'messages (heap and TOAST)', pg_table_size('messages')
     union all select 'messages indexes', pg_indexes_size('messages')
     union all select 'of which full text (GIN)', pg_relation_size('messages_tsv')
     union all select 'list_messages and its indexes', pg_total_relation_size('list_messages')`);
  const per = (b: string) => `${(Number(b) / messages / 1024).toFixed(2)} KB`;
  const mb = (b: string) => `${(Number(b) / 1048576).toFixed(0)} MB`;
  return `database size: ${rows.map((r) => `${r.name} ${mb(r.bytes)} (${per(r.bytes)} a message)`).join('; ')}`;
}

function report(label: string, r: LoadResult, perSecond?: number) {
  const f = (x: number) => x.toFixed(1).padStart(6);
  console.log(`${label.padEnd(30)} p50 ${f(r.p50)} ms  p95 ${f(r.p95)} ms  max ${f(r.max)} ms${perSecond ? `  ${perSecond} req/s` : ''}  (${r.requests} requests)`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run();
}
