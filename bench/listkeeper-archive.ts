/*
 * The listkeeper side of the archive benchmarks: a list with a corpus imported through
 * `importMbox`, and `listkeeper serve --web` in its own processes answering over HTTP.
 */

import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importMbox } from '../src/core/archive-import.ts';
import type { Database } from '../src/db/database.ts';
import { createList } from '../src/db/lists.ts';
import { freePort, spawnListkeeper, stopProcess, waitFor } from './http-load.ts';

// LK_ROOT=/other/checkout: serve that checkout's code (of the same schema) under the same load.
const ROOT = process.env.LK_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** One web process per core, as docs/operations.md advises for production (BENCH_WEB_PROCESSES=1: the default). */
export const WEB_PROCESSES = Number(process.env.BENCH_WEB_PROCESSES ?? os.availableParallelism());

/** The list dev@lists.example.org (public archive) with the mbox imported; statistics fresh. */
export async function importCorpus(db: Database, mbox: string): Promise<{ added: number; seconds: number; writers: number; chunkMessages: number }> {
  const list = await createList(db.pool, {
    address: 'dev@lists.example.org', name: 'Developers', description: 'bench', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [],
  });
  const t0 = performance.now();
  const state = await importMbox(db, list, mbox);
  const seconds = (performance.now() - t0) / 1000;
  await db.pool.query('vacuum analyze messages, list_messages');
  return { added: state.added, seconds, writers: state.writers, chunkMessages: state.chunkMessages };
}

export interface WebServer {
  child: ChildProcess;
  base: string;
  stop(): Promise<void>;
}

/** `serve --web` on a free loopback port with WEB_PROCESSES processes; `cacheMb` 0 turns the page cache off. */
export async function startWeb(databaseUrl: string, cacheMb: number): Promise<WebServer> {
  const port = await freePort();
  const child = spawnListkeeper(ROOT, ['serve', '--web'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, WEB_PORT: String(port), LOG_LEVEL: 'warn', PAGE_CACHE_MB: String(cacheMb), WEB_PROCESSES: String(WEB_PROCESSES) },
    stdio: 'ignore',
  });
  const server = { child, base: `http://127.0.0.1:${port}`, stop: () => stopProcess(child) };
  try {
    await waitFor(`${server.base}/healthz`, 120); // tsx compiles on start: slow when the cores are busy
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** Recall is compared up to this many matches per query (listkeeper's count past its ranked set is an estimate). */
export const SEARCH_CAP = 300;

/**
 * Matches a listkeeper search page reports: "N messages found" (exact), "About N messages match"
 * (the planner's estimate, past the ranked set), "No messages found." or no count at all when the
 * query had nothing to search for.
 */
export function searchHitsOf(html: string): { hits: number; estimated: boolean } {
  const number = (s: string) => Number(s.replace(/,/g, ''));
  const about = /About ([\d,]+) messages match/.exec(html);
  if (about) return { hits: number(about[1]), estimated: true };
  const m = /([\d,]+) messages? found/.exec(html);
  return { hits: m ? number(m[1]) : 0, estimated: false };
}
