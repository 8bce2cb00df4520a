/*
 * Fan-out of one post to 1,000 and 10,000 members through a local relay, every copy with its
 * member's VERP envelope sender and one-click header, by one and by two `listkeeper serve
 * --worker` processes; once unsigned and once by a list with a DKIM key (RSA-2048: one signature
 * per copy plus the post's ARC set), beside the ceiling one core sets for RSA-2048 signatures. The relay is Postfix's smtp-sink when installed (it costs the machine
 * little CPU), else an smtp-server in this process. Prints deliveries/s from the start of the
 * post's transaction (which writes one outbox row per member) to the last row marked sent, and
 * the sending rate alone (from its commit).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';
import type pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { createList, updateDeliverySettings } from '../src/db/lists.ts';
import { migrate } from '../src/db/migrate.ts';
import { createPool, withTransaction } from '../src/db/pool.ts';
import { parse } from '../src/mail/parse.ts';
import { acceptPost } from '../src/core/accept-post.ts';
import { config } from '../src/config.ts';
import { log } from '../src/log.ts';
import { benchDatabase } from './bench-db.ts';
import { spawnListkeeper } from './http-load.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SINK = '/usr/sbin/smtp-sink';
const SIZES = (process.env.BENCH_DELIVERY_SIZES ?? "1000,10000").split(",").map(Number);
const WORKERS = (process.env.BENCH_DELIVERY_WORKERS ?? "1,2").split(",").map(Number);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startRelay(): Promise<{ url: string; name: string; stop(): Promise<void> }> {
  const port = await freePort();
  if (fs.existsSync(SINK)) {
    const args = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
    const sink = spawn(SINK, [...args, `127.0.0.1:${port}`, '256'], { stdio: 'ignore' });
    for (let i = 0; i < 50; i++) {
      if (await canConnect(port)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return { url: `smtp://127.0.0.1:${port}`, name: 'smtp-sink', stop: async () => void sink.kill() };
  }
  const server = new SMTPServer({
    authOptional: true, disabledCommands: ['AUTH', 'STARTTLS'], logger: false, maxClients: 1000,
    onData(stream, _s, cb) { stream.on('data', () => undefined); stream.on('end', () => cb(null)); },
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return { url: `smtp://127.0.0.1:${port}`, name: 'smtp-server (in the benchmark process)', stop: () => new Promise((r) => server.close(() => r())) };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

function startWorker(url: string, relay: string): ChildProcess {
  return spawnListkeeper(ROOT, ['serve', '--worker'], {
    cwd: ROOT,
    stdio: ['ignore', process.env.BENCH_WORKER_LOG ? 'inherit' : 'ignore', 'inherit'],
    env: {
      ...process.env, DATABASE_URL: url, RELAY_URL: relay, LOG_LEVEL: process.env.BENCH_WORKER_LOG ?? 'warn', MAIL_DOMAIN: 'lists.bench.example',
      PUBLIC_URL: 'https://lists.bench.example', DELIVERY_BATCH_SIZE: '500', DELIVERY_CONNECTIONS: '16', DELIVERY_POLL_MS: '1000',
    },
  });
}

/**
 * CPU seconds (user + system) the worker processes have used so far, from /proc: unlike the
 * rates, it hardly moves when other work shares the machine, so a change in the cost per copy
 * shows even on a busy machine.
 */
function cpuSeconds(workers: ChildProcess[]): number {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const w of workers) {
    try {
      const stat = fs.readFileSync(`/proc/${w.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      return NaN; // not Linux, or the worker is gone
    }
  }
  return total;
}

async function waitForWorkers(pool: pg.Pool, n: number) {
  const deadline = Date.now() + 60_000;
  while ((await pool.query<{ n: number }>('select count(*)::int as n from delivery_workers')).rows[0].n < n) {
    if (Date.now() > deadline) throw new Error('workers did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopWorkers(workers: ChildProcess[]) {
  await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
    w.once('exit', () => resolve());
    w.kill('SIGTERM');
  })));
}

const BODY = `${'The planner chose a nested loop over the partitioned index; with the new statistics it should not.\n'.repeat(20)}`;

const KEY = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const KEY_PEM = KEY.export({ type: 'pkcs8', format: 'pem' }).toString();

/**
 * RSA-2048 signatures (SHA-256) one core makes in a second, with node:crypto: the ceiling of
 * signed delivery. Per second of wall-clock time, and per CPU-second of this process (the figure
 * to set beside the workers' CPU per copy: it hardly moves when other work shares the machine).
 */
function signaturesPerSecond(): { wall: number; cpu: number } {
  const data = crypto.randomBytes(1200); // about a copy's signed header fields
  for (let i = 0; i < 200; i++) crypto.sign('sha256', data, KEY);
  let n = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  while (performance.now() - t0 < 2000) {
    crypto.sign('sha256', data, KEY);
    n++;
  }
  const cpu = process.cpuUsage(cpu0);
  return { wall: n / ((performance.now() - t0) / 1000), cpu: n / ((cpu.user + cpu.system) / 1e6) };
}

async function fanOut(pool: pg.Pool, members: number, run: string, signed = false): Promise<{ enqueueMs: number; seconds: number; sendSeconds: number }> {
  const list = await createList(pool, {
    address: `${run}@lists.bench.example`, name: run, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [],
  });
  if (signed) await updateDeliverySettings(pool, list.id, { dkim_domain: 'lists.bench.example', dkim_selector: 'bench', dkim_private_key: KEY_PEM });
  await pool.query(
    `insert into members (list_id, email, mode) select $1, 'member' || g || '@d' || (g % 20) || '.bench.example', 'each' from generate_series(1, $2::int) g`,
    [list.id, members],
  );
  const raw = Buffer.from(`From: Alice <alice@bench.example>\r\nTo: ${list.address}\r\nSubject: Fan-out ${run}\r\nDate: ${new Date().toUTCString()}\r\nMessage-ID: <${run}@bench.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${BODY.replace(/\n/g, '\r\n')}`);
  const message = await parse(raw);
  const t0 = performance.now();
  await withTransaction(pool, (tx) => acceptPost(tx, { list, raw, message, envelopeFrom: 'alice@bench.example', log, settings: config() }));
  const enqueueMs = performance.now() - t0;
  for (;;) {
    const { rows } = await pool.query<{ left: number; failed: number }>(
      `select count(*) filter (where state in ('queued', 'sending'))::int as left, count(*) filter (where state = 'failed')::int as failed
         from outbox where list_id = $1`, [list.id]);
    if (rows[0].failed > 0) throw new Error(`${rows[0].failed} deliveries failed`);
    if (rows[0].left === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const seconds = (performance.now() - t0) / 1000;
  return { enqueueMs, seconds, sendSeconds: seconds - enqueueMs / 1000 };
}

/** `opts`: the list sizes and worker counts to run (bench/scale.ts asks for 100,000 members and one worker). */
export async function run(_rows?: string[], opts: { sizes: number[]; workers: number[] } = { sizes: SIZES, workers: WORKERS }): Promise<void> {
  // config() sets the log level from LOG_LEVEL when first called: call it first, then quieten.
  config();
  log.level = 'warn';
  const db = await benchDatabase('lk_bench_delivery');
  const pool = createPool(db.url, 4, 'bench');
  const relay = await startRelay();
  try {
    await migrate(pool);
    const ceiling = signaturesPerSecond();
    console.log(`ceiling: RSA-2048 signatures on one core (node:crypto, this process): ${Math.round(ceiling.wall)}/s, ${Math.round(ceiling.cpu)} per CPU-second`);
    console.log(`relay: ${relay.name}; 2 KB post; VERP and a one-click header per copy; batch 500, 16 connections per worker`);
    console.log('members   workers   list DKIM+ARC   fan-out commit   all sent after   deliveries/s   sending rate/s   worker CPU per 1000   per CPU-second');
    for (const n of opts.workers) {
      const workers = Array.from({ length: n }, () => startWorker(db.url, relay.url));
      try {
        await waitForWorkers(pool, n);
        // Warm-up posts: connections open, code paths compiled by V8 (a worker runs for days).
        for (let i = 0; i < 3; i++) await fanOut(pool, 2000, `warm${n}x${i}`, i === 2);
        for (const members of opts.sizes) {
          for (const signed of [false, true]) {
            const cpu0 = cpuSeconds(workers);
            const r = await fanOut(pool, members, `b${members}w${n}${signed ? 's' : ''}`, signed);
            const cpuMs = ((cpuSeconds(workers) - cpu0) * 1e6) / members;
            console.log(`${String(members).padStart(7)}   ${String(n).padStart(7)}   ${(signed ? 'yes' : 'no').padStart(13)}   ${r.enqueueMs.toFixed(0).padStart(11)} ms   ${r.seconds.toFixed(2).padStart(12)} s   ${Math.round(members / r.seconds).toString().padStart(12)}   ${Math.round(members / r.sendSeconds).toString().padStart(14)}   ${cpuMs.toFixed(0).padStart(16)} ms   ${Math.round(1e6 / cpuMs).toString().padStart(14)}`);
          }
        }
      } finally {
        await stopWorkers(workers);
        await pool.query('delete from delivery_workers');
      }
    }
  } finally {
    await relay.stop();
    await pool.end();
    await db.drop();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await run();
}
