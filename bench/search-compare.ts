/*
 * Search side by side with public-inbox (`npm run bench -- search-compare`): one deterministic
 * corpus (BENCH_MESSAGES, default 10,000) imported into listkeeper and into a public-inbox v2
 * inbox (Xapian, indexlevel full), both served over HTTP on loopback with one process per core,
 * and the same queries sent to both: rare words, common words, two common words, two words of one
 * message, phrases, author names as words, and the author filter (listkeeper's `from=`,
 * public-inbox's `f:"Name"`).
 *
 * For each class of queries: latency with one connection (p50, p95, max) and then requests per
 * second with 8 connections, the two systems taking turns in short rounds (order flipped each
 * round) so that whatever else runs on the machine weighs on both; and the matches each reports
 * for each query, summed, as a check of recall. Before the timing, both servers are loaded with
 * every timed query for a while (BENCH_WARM_SECONDS, default 10 each), so that the figures are
 * those of running servers, not of code still being compiled; and every class's latency is
 * measured before any load with several connections. Needs the Debian package `public-inbox`; without
 * it, says so and stops (failing only when BENCH_REQUIRE_PUBLIC_INBOX=1).
 */

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { useCliLogging } from '../src/log.ts';
import { benchDatabase } from './bench-db.ts';
import { Corpus } from './corpus.ts';
import { load, loadClient, type LoadResult } from './http-load.ts';
import { importCorpus, SEARCH_CAP as CAP, searchHitsOf as lkHitsOf, startWeb, WEB_PROCESSES } from './listkeeper-archive.ts';
import { searchHitsOf as piHitsOf, PublicInbox, publicInboxInstalled, searchUrl as piSearchUrl } from './public-inbox.ts';

const ROUND_SECONDS = 2;
const QUIET_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const BUSY_ROUNDS = Math.max(1, Math.ceil(QUIET_ROUNDS / 2));
const BUSY_CONNECTIONS = 8;
const WARM_SECONDS = Number(process.env.BENCH_WARM_SECONDS ?? 10);

interface QueryClass {
  label: string;
  lk: string[];
  pi: string[];
}

export async function run(): Promise<void> {
  if (!publicInboxInstalled()) {
    console.log('search-compare: public-inbox is not installed (apt-get install public-inbox): skipped');
    if (process.env.BENCH_REQUIRE_PUBLIC_INBOX === '1') throw new Error('public-inbox is required (BENCH_REQUIRE_PUBLIC_INBOX=1)');
    return;
  }
  const cleanups: (() => Promise<void> | void)[] = [];
  let cleaned: Promise<void> | undefined;
  const cleanup = () => (cleaned ??= (async () => {
    for (const f of cleanups.reverse()) {
      try {
        await f();
      } catch (err) {
        console.error(`search-compare: cleaning up: ${(err as Error).message}`);
      }
    }
  })());
  // Ctrl-C reaches the servers too (same process group); the temporary folder and database are ours to remove.
  const onSignal = (signal: NodeJS.Signals) => {
    console.log(`\nsearch-compare: ${signal}, cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await compare(cleanups);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function compare(cleanups: (() => Promise<void> | void)[]) {
  useCliLogging(process.env.LOG_LEVEL !== undefined); // the migrations' lines would bury the figures
  const n = Number(process.env.BENCH_MESSAGES ?? 10_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-search-compare-'));
  cleanups.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const mbox = path.join(tmp, 'corpus.mbox');
  const corpus = new Corpus({ messages: n });
  corpus.writeMbox(mbox);
  console.log(`corpus: ${corpus.size} messages, ${(fs.statSync(mbox).size / 1048576).toFixed(1)} MB mbox`);

  const bdb = await benchDatabase('lk_bench_search');
  cleanups.push(() => bdb.drop());
  const db = await openDatabase(parseConfig({ DATABASE_URL: bdb.url, LOG_LEVEL: 'warn' }), 'bench');
  const imported = await importCorpus(db, mbox).finally(() => db.close());
  console.log(`listkeeper import: ${imported.added} messages in ${imported.seconds.toFixed(1)} s = ${Math.round(imported.added / imported.seconds)} msgs/s`);
  // The embedded server chose shared_buffers when it started on an empty database; a server
  // started on this archive (any restart, an upgrade) sizes them for it: measure that one. On a
  // fresh .bench-data the 16 MB of an empty start made two common words 3 times slower.
  if (bdb.postmasterPid) console.log(await bdb.restart());

  fs.mkdirSync(path.join(tmp, 'pi'));
  const pi = new PublicInbox(path.join(tmp, 'pi'));
  cleanups.push(() => pi.stop());
  const piSeconds = await pi.importMbox(mbox);
  console.log(`public-inbox import (InboxWritable::import_mbox, git + overview + Xapian): ${corpus.size} messages in ${piSeconds.toFixed(1)} s = ${Math.round(corpus.size / piSeconds)} msgs/s`);

  const lk = await startWeb(bdb.url, 0);
  cleanups.push(() => lk.stop());
  const piBase = await pi.start(WEB_PROCESSES);
  console.log(`servers: listkeeper serve --web with ${WEB_PROCESSES} processes (page cache off), public-inbox-httpd -W ${WEB_PROCESSES}; one per core, both sharing the cores with PostgreSQL and the client (${loadClient})`);
  console.log(`latency: one connection, ${QUIET_ROUNDS} rounds of ${ROUND_SECONDS} s per system; req/s: ${BUSY_CONNECTIONS} connections, ${BUSY_ROUNDS} rounds; p50/p95 are medians over rounds, max the largest`);
  console.log('hits: matches reported per query, each counted up to 300 (past its 100 ranked matches listkeeper reports an estimate), summed; then queries with none and queries over 300');

  // Recall first, each query once on each side; what public-inbox finds nothing for it answers
  // with a 404, which the load client counts as a failure: such queries are left out of the
  // timing, on both sides.
  const classes: { c: QueryClass; lkHits: Hits; piHits: Hits; timed: number[]; lkUrls: string[]; piUrls: string[] }[] = [];
  for (const c of queryClasses(corpus)) {
    const lkHits = await hitsFor(lk.base, c.lk, lkHitsOf);
    const piHits = await hitsFor(piBase, c.pi, piHitsOf);
    const timed = c.pi.map((_, i) => i).filter((i) => piHits.each[i] > 0);
    classes.push({ c, lkHits, piHits, timed, lkUrls: timed.map((i) => c.lk[i]), piUrls: timed.map((i) => c.pi[i]) });
  }
  // Both servers under load with every timed query before any is timed: the figures are a
  // running server's. Node compiles its hot code as it runs (V8 optimises a function after many
  // calls), and each web process warms on its own; with only the single requests above, the
  // first class's rounds timed listkeeper still compiling (rare words read 2.0 ms at p50 where
  // the same server, warm, answers in 1.0). public-inbox gets the same load, so whatever it
  // caches is warm too. The warm-up ends with one connection, as the latency rounds run.
  if (WARM_SECONDS > 0) {
    for (const [base, urls] of [[lk.base, classes.flatMap((k) => k.lkUrls)], [piBase, classes.flatMap((k) => k.piUrls)]] as const) {
      await load(base, urls, { connections: BUSY_CONNECTIONS, seconds: WARM_SECONDS });
      // Two runs of one connection: each is a new connection, and they go to different workers.
      for (let i = 0; i < 2; i++) await load(base, urls, { connections: 1, seconds: WARM_SECONDS / 2 });
    }
    console.log(`warm-up: every timed query, ${BUSY_CONNECTIONS} connections for ${WARM_SECONDS} s and then one for ${WARM_SECONDS} s, on each system (BENCH_WARM_SECONDS)`);
  }
  // Latency with one connection for every class first, then load with several: on this
  // 2-core machine a server answered a single connection up to half again slower for 10-20 s
  // after heavy load (both node's and PostgreSQL's CPU per request up; a CPU hog run instead of
  // the load did not do it), and rounds of one connection that followed rounds of eight measured
  // that, not a quiet machine.
  const timedClasses = classes.filter((k) => k.timed.length > 0);
  const quiet = [];
  for (const k of timedClasses) quiet.push(await interleaved(lk.base, k.lkUrls, piBase, k.piUrls, 1, QUIET_ROUNDS));
  const busy = [];
  for (const k of timedClasses) busy.push(await interleaved(lk.base, k.lkUrls, piBase, k.piUrls, BUSY_CONNECTIONS, BUSY_ROUNDS));
  for (const { c, lkHits, piHits, timed } of classes) {
    const i = timedClasses.findIndex((k) => k.c === c);
    if (i < 0) {
      console.log(`\n${c.label}: no query matches anything in public-inbox; not timed`);
      continue;
    }
    printClass(`${c.label} (${c.lk.length} queries${timed.length < c.lk.length ? `, ${timed.length} timed` : ''})`, quiet[i], busy[i], lkHits, piHits);
    printDisagreements(c, lkHits, piHits);
  }
}

function queryClasses(corpus: Corpus): QueryClass[] {
  const info = corpus.info;
  const lkUrl = (q: string) => `/search?q=${encodeURIComponent(q)}`;
  const same = (label: string, queries: string[]): QueryClass => ({ label, lk: queries.map(lkUrl), pi: queries.map(piSearchUrl) });
  const commonPairs = info.commonWords.map((w, i) => `${w} ${info.commonWords[(i + 7) % info.commonWords.length]}`);
  return [
    same('rare words', info.rareWords),
    same('common words', info.commonWords),
    same('two common words', commonPairs),
    same('two words of a message', info.wordPairs),
    same('phrases', info.contentPhrases.map((p) => `"${p}"`)),
    same('author names as words', info.authorNames),
    {
      label: 'author filter (from= / f:"")',
      lk: info.authorNames.map((a) => `/search?from=${encodeURIComponent(a)}`),
      pi: info.authorNames.map((a) => piSearchUrl(`f:"${a}"`)),
    },
  ];
}

interface Hits {
  each: number[];
  sum: number;
  none: number;
  over: number;
}

/**
 * Each URL once, one at a time. A 404 is an answer too: public-inbox's for no match.
 */
async function hitsFor(base: string, urls: string[], parse: (html: string) => { hits: number }): Promise<Hits> {
  const h: Hits = { each: [], sum: 0, none: 0, over: 0 };
  for (const u of urls) {
    const { status, html } = await getPage(`${base}${u}`);
    if (status !== 200 && status !== 404) throw new Error(`${base}${u}: HTTP ${status}`);
    const { hits } = parse(html);
    h.each.push(hits);
    h.sum += Math.min(hits, CAP);
    if (hits === 0) h.none++;
    if (hits > CAP) h.over++;
  }
  return h;
}

/** One GET on a connection of its own (a kept-alive one may have been closed during the load), 30 s at most. */
function getPage(url: string): Promise<{ status: number; html: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 30_000 }, (res) => {
      let html = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (html += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, html }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within 30 s`)));
    req.on('error', reject);
  });
}

interface Figures {
  p50: number;
  p95: number;
  max: number;
  perSecond: number;
}

/** `rounds` rounds of load on each system in turn, the order flipped each round. */
async function interleaved(lkBase: string, lkUrls: string[], piBase: string, piUrls: string[], connections: number, rounds: number) {
  const lk: LoadResult[] = [];
  const pi: LoadResult[] = [];
  for (let r = 0; r < rounds; r++) {
    const turns: [() => Promise<LoadResult>, LoadResult[]][] = [
      [() => load(lkBase, lkUrls, { connections, seconds: ROUND_SECONDS }), lk],
      [() => load(piBase, piUrls, { connections, seconds: ROUND_SECONDS }), pi],
    ];
    if (r % 2 === 1) turns.reverse();
    for (const [turn, into] of turns) into.push(await turn());
  }
  return { lk: combine(lk), pi: combine(pi) };
}

function combine(rs: LoadResult[]): Figures {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const requests = rs.reduce((a, r) => a + r.requests, 0);
  const seconds = rs.reduce((a, r) => a + r.requests / r.perSecond, 0);
  return { p50: median(rs.map((r) => r.p50)), p95: median(rs.map((r) => r.p95)), max: Math.max(...rs.map((r) => r.max)), perSecond: Math.round(requests / seconds) };
}

function printClass(label: string, quiet: { lk: Figures; pi: Figures }, busy: { lk: Figures; pi: Figures }, lkHits: Hits, piHits: Hits) {
  const ms = (x: number) => x.toFixed(1).padStart(7);
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`.padStart(7);
  const hits = (h: Hits) => `${h.sum} (${h.none} none, ${h.over} over 300)`;
  console.log(`\n${label.padEnd(50)} one connection: p50      p95      max   | ${BUSY_CONNECTIONS} connections: req/s   p50      p95`);
  const row = (name: string, q: Figures, b: Figures, h: Hits) =>
    console.log(`  ${name.padEnd(14)} ${ms(q.p50)} ms ${ms(q.p95)} ms ${ms(q.max)} ms | ${String(b.perSecond).padStart(6)} req/s ${ms(b.p50)} ms ${ms(b.p95)} ms | hits ${hits(h)}`);
  row('listkeeper', quiet.lk, busy.lk, lkHits);
  row('public-inbox', quiet.pi, busy.pi, piHits);
  console.log(`  ${'ratio lk/pi'.padEnd(14)} ${ratio(quiet.lk.p50, quiet.pi.p50)}    ${ratio(quiet.lk.p95, quiet.pi.p95)}    ${ratio(quiet.lk.max, quiet.pi.max)}    | ${ratio(busy.lk.perSecond, busy.pi.perSecond)}       ${ratio(busy.lk.p50, busy.pi.p50)}    ${ratio(busy.lk.p95, busy.pi.p95)}`);
}

/** The queries whose counts differ (up to five), so that a gap in recall can be looked into. */
function printDisagreements(c: QueryClass, lk: Hits, pi: Hits) {
  const differ = c.lk.map((_, i) => i).filter((i) => Math.min(lk.each[i], CAP) !== Math.min(pi.each[i], CAP));
  if (differ.length === 0) return;
  console.log(`  counts differ for ${differ.length} of ${c.lk.length} queries (lk · pi):`);
  for (const i of differ.slice(0, 5)) console.log(`    ${decodeURIComponent(c.lk[i].replace(/^\/search\?/, ''))}: ${lk.each[i]} · ${pi.each[i]}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run();
}
