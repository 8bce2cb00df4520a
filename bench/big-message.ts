/*
 * Large messages on the web: a 10 MB message with 25 attachments, served by a
 * real `listkeeper serve --web` (one process, page cache off, so every request reaches the page).
 * Prints the first view, repeat views (p50/p95/max of 50), its attachments, and what unrelated
 * small pages cost while four other large messages are viewed for the first time at once.
 *
 *   npx tsx bench/big-message.ts              # this checkout
 *   LK_ROOT=/path/to/other/checkout npx tsx bench/big-message.ts   # the same load on other code
 */

import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { bigMessage } from '../test/fixtures/archive/big-message.ts';
import { archive, mail, newList } from '../test/fixtures/archive/seed.ts';
import { benchDatabase, percentile } from './bench-db.ts';
import { spawnListkeeper, timed } from './http-load.ts';

const ROOT = process.env.LK_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function run(): Promise<void> {
  const bdb = await benchDatabase('lk_bench_big');
  const cfg = parseConfig({ DATABASE_URL: bdb.url, LOG_LEVEL: 'warn' });
  const db = await openDatabase(cfg, 'bench');
  const port = await freePort();
  const child = spawnListkeeper(ROOT, ['serve', '--web'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: bdb.url, WEB_PORT: String(port), LOG_LEVEL: 'warn', PAGE_CACHE_MB: '0', WEB_PROCESSES: '1' },
    stdio: 'ignore',
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    const list = await newList(db.pool, 'dev@lists.example.org');
    for (const id of ['big', 'cold-1', 'cold-2', 'cold-3', 'cold-4']) await archive(db.pool, list, bigMessage({ id: `${id}@example.org` }).raw);
    await archive(db.pool, list, mail({ id: 'small@example.org', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
    await db.pool.query('vacuum analyze messages, list_messages');
    await waitFor(`${base}/healthz`);
    await timed(`${base}/message-id/small@example.org`);

    const first = await timed(`${base}/message-id/big@example.org`);
    console.log(`message page, 10 MB / 25 attachments: first view ${first.toFixed(0)} ms`);
    const repeat: number[] = [];
    for (let i = 0; i < 50; i++) repeat.push(await timed(`${base}/message-id/big@example.org`));
    console.log(`  repeat views: ${stats(repeat)}`);
    const attachments: number[] = [];
    for (let n = 1; n <= 25; n++) attachments.push(await timed(`${base}/message-id/attachment/big@example.org/${n}/file-${n}.bin`));
    console.log(`  its 25 attachments: ${stats(attachments)}`);

    const quiet: number[] = [];
    for (let i = 0; i < 30; i++) quiet.push(await timed(`${base}/message-id/small@example.org`));
    console.log(`small message page, nothing else running: ${stats(quiet)}`);
    let busy = true;
    const cold = Promise.all([1, 2, 3, 4].map((i) => timed(`${base}/message-id/cold-${i}@example.org`))).finally(() => (busy = false));
    const during: number[] = [];
    while (busy) during.push(await timed(`${base}/message-id/small@example.org`));
    const colds = await cold;
    console.log(`small message page while 4 other 10 MB messages get their first view: ${stats(during)} (${during.length} requests)`);
    console.log(`  those 4 first views: ${colds.map((ms) => ms.toFixed(0)).join(', ')} ms`);
  } finally {
    child.kill('SIGTERM');
    await db.close();
    await bdb.drop();
  }
}

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  return `p50 ${percentile(s, 50).toFixed(1)} ms, p95 ${percentile(s, 95).toFixed(1)} ms, max ${s[s.length - 1].toFixed(1)} ms`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(url: string) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
