/*
 * Downloads and readers who stall: a month of 60 messages of 2 MB (an attachment each) served by a
 * real `listkeeper serve --web` (one process). Prints three mbox downloads of the month read at full
 * speed, one after the other (times, rate, the process's peak RSS above what it held before), then what the process
 * holds while STALLED readers (BENCH_STALLED, 60 by default) have each opened the month's mbox and
 * read nothing past its first bytes, how many of them were answered 200, and a small message
 * page's time meanwhile.
 *
 *   npx tsx bench/downloads.ts              # this checkout
 *   LK_ROOT=/path/to/other/checkout npx tsx bench/downloads.ts   # the same load on other code
 *
 * RSS is read from /proc/PID/status (VmRSS, VmHWM) of the one web process.
 */

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseConfig } from '../src/config.ts';
import { openDatabase } from '../src/db/database.ts';
import { bigMessage } from '../test/fixtures/archive/big-message.ts';
import { archive, mail, newList } from '../test/fixtures/archive/seed.ts';
import { benchDatabase, percentile } from './bench-db.ts';
import { freePort, spawnListkeeper, timed, waitFor } from './http-load.ts';

const ROOT = process.env.LK_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MESSAGES = 60;
const MESSAGE_BYTES = 2 * 1024 * 1024;
const STALLED = Number(process.env.BENCH_STALLED ?? 60);
const MONTH = '/lists/dev/2026-11.mbox';

export async function run(): Promise<void> {
  const bdb = await benchDatabase('lk_bench_dl');
  const cfg = parseConfig({ DATABASE_URL: bdb.url, LOG_LEVEL: 'warn' });
  const db = await openDatabase(cfg, 'bench');
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawnListkeeper(ROOT, ['serve', '--web'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: bdb.url, WEB_PORT: String(port), LOG_LEVEL: 'error', WEB_PROCESSES: '1' },
    stdio: 'ignore',
  });
  const sockets: net.Socket[] = [];
  try {
    const list = await newList(db.pool, 'dev@lists.example.org');
    for (let i = 0; i < MESSAGES; i++) {
      const date = `${String(1 + (i % 28)).padStart(2, '0')} Nov 2026 ${String(10 + Math.floor(i / 28)).padStart(2, '0')}:00:00 +0000`;
      await archive(db.pool, list, bigMessage({ id: `dl-${i}@example.org`, attachments: 1, bytes: MESSAGE_BYTES, date }).raw);
    }
    await archive(db.pool, list, mail({ id: 'small@example.org', date: '30 Nov 2026 10:00:00 +0000' }));
    await db.pool.query('vacuum analyze messages, list_messages');
    await waitFor(`${base}/healthz`);
    const pid = child.pid!;
    for (let i = 0; i < 20; i++) await timed(`${base}/message-id/small@example.org`);
    const before = status(pid).rss;
    console.log(`month: ${MESSAGES} messages of ${MESSAGE_BYTES / 1048576} MB; web process ${before.toFixed(0)} MB RSS at rest (code: ${ROOT})`);

    resetPeak(pid);
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const res = await fetch(`${base}${MONTH}`);
      bytes = (await res.arrayBuffer()).byteLength;
      times.push((performance.now() - t) / 1000);
    }
    const s = times.sort((a, b) => a - b)[1];
    console.log(`one download read at full speed, 3 in turn: ${(bytes / 1048576).toFixed(0)} MB in ${times.map((t) => t.toFixed(2)).join(', ')} s (median ${(bytes / 1048576 / s).toFixed(0)} MB/s), peak ${(status(pid).peak - before).toFixed(0)} MB above rest`);

    resetPeak(pid);
    const statuses = new Map<number, number>();
    for (let i = 0; i < STALLED; i++) {
      const { code, socket } = await stall(port, MONTH, `10.0.${i >> 8}.${i & 255}`);
      sockets.push(socket);
      statuses.set(code, (statuses.get(code) ?? 0) + 1);
    }
    // The stalled downloads have filled their sockets and wait; the process settles.
    await new Promise((r) => setTimeout(r, 3000));
    const small: number[] = [];
    for (let i = 0; i < 20; i++) small.push(await timed(`${base}/message-id/small@example.org`));
    const held = status(pid);
    const answers = [...statuses].sort().map(([code, n]) => `${n} × ${code}`).join(', ');
    console.log(`${STALLED} readers who stall on the month's mbox (${answers}): ${(held.rss - before).toFixed(0)} MB RSS above rest, peak ${(held.peak - before).toFixed(0)} MB; a small message page meanwhile p50 ${percentile(small.sort((a, b) => a - b), 50).toFixed(1)} ms`);
  } finally {
    for (const s of sockets) s.destroy();
    child.kill('SIGTERM');
    await db.close();
    await bdb.drop();
  }
}

/** VmRSS and VmHWM (peak) of a process, in MB. */
function status(pid: number): { rss: number; peak: number } {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)![1]);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Resets VmHWM to the current RSS (proc(5), clear_refs 5). */
function resetPeak(pid: number) {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** A reader who sends a GET, reads the first bytes of the answer and nothing more. */
async function stall(port: number, urlPath: string, ip: string): Promise<{ code: number; socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(`GET ${urlPath} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${ip}\r\n\r\n`);
  const first = await new Promise<Buffer>((resolve, reject) => {
    socket.once('data', (d: Buffer) => {
      socket.pause();
      resolve(d);
    });
    socket.once('close', () => reject(new Error('closed before an answer')));
  });
  return { code: Number(/^HTTP\/1\.1 (\d{3})/.exec(first.toString('latin1'))?.[1] ?? 0), socket };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
