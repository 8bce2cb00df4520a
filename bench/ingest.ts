/*
 * Ingest over SMTP: 20 concurrent sessions that reuse their connections, against a real
 * `listkeeper serve --smtp` process. Messages are committed and indexed (tsvector + GIN) and
 * threaded (a third are replies) before each 250. Prints msgs/s for 1 KB and 20 KB messages and
 * the server's peak memory, to show that memory does not grow with message size.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { benchDatabase } from './bench-db.ts';
import { dotStuff, SmtpSession } from './smtp-client.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SESSIONS = 20;
const WORDS = 'the database replication query index vacuum planner commit transaction lock tuple page buffer checkpoint wal archive standby replica partition trigger function schema'.split(' ');

function body(bytes: number, seed: number): string {
  const lines: string[] = [];
  let size = 0;
  let i = seed;
  while (size < bytes) {
    const words: string[] = [];
    for (let w = 0; w < 11; w++) words.push(WORDS[(i = (i * 1103515245 + 12345) % 2147483648) % WORDS.length]);
    const line = words.join(' ');
    lines.push(line);
    size += line.length + 1;
  }
  return lines.join('\n');
}

function messageFor(run: string, n: number, bytes: number): Buffer {
  const replyTo = n % 3 === 2 ? `In-Reply-To: <${run}-${n - 1}@bench.example>\nReferences: <${run}-${n - 2}@bench.example> <${run}-${n - 1}@bench.example>\n` : '';
  const head = `From: Sender ${n % 50} <sender${n % 50}@bench.example>\nTo: bench@lists.bench.example\nSubject: Benchmark message ${n}\nDate: ${new Date(Date.UTC(2026, 0, 1) + n * 60_000).toUTCString()}\nMessage-ID: <${run}-${n}@bench.example>\n${replyTo}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n`;
  return dotStuff(head + body(bytes - head.length, n + 1));
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function peakRssMb(child: ChildProcess): number {
  const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function startServer(url: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...(process.env.BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROFILE] : []), '--import', 'tsx', path.join(ROOT, 'src/main.ts'), 'serve', '--smtp'], {
    env: { ...process.env, DATABASE_URL: url, SMTP_PORT: String(port), LOG_LEVEL: 'warn', SMTP_MAX_SIZE: String(64 * 1024 * 1024), MAIL_DOMAIN: 'lists.bench.example' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout!.on('data', (d: Buffer) => {
    const text = d.toString();
    if (text.includes('"level":50')) process.stderr.write(text);
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => d.toString().includes('listkeeper is running') && resolve());
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return child;
}

async function load(port: number, run: string, count: number, bytes: number): Promise<number> {
  const messages = Array.from({ length: count }, (_, n) => messageFor(run, n, bytes));
  const sessions = await Promise.all(Array.from({ length: SESSIONS }, () => SmtpSession.open(port)));
  let next = 0;
  const started = performance.now();
  await Promise.all(
    sessions.map(async (s) => {
      while (next < count) {
        const n = next++;
        const reply = await s.send(`sender${n % 50}@bench.example`, 'bench@lists.bench.example', messages[n]);
        if (!reply.startsWith('250')) throw new Error(`message ${n}: ${reply}`);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  sessions.forEach((s) => s.close());
  return count / seconds;
}

export async function run(): Promise<void> {
  const bench = await benchDatabase('lk_bench_ingest');
  let server: ChildProcess | undefined;
  try {
    const port = await freePort();
    server = await startServer(bench.url, port);
    const pool = new pg.Pool({ connectionString: bench.url, max: 2 });
    await pool.query(`insert into lists (address, local_part, domain, name, post_policy) values ('bench@lists.bench.example', 'bench', 'lists.bench.example', 'bench', 'open')`);
    console.log(`ingest over SMTP, ${SESSIONS} sessions reusing connections, committed + indexed + threaded before 250`);
    // Warm up JIT, connections and their prepared statements. Then gather statistics, as
    // autovacuum does within a minute (autovacuum_naptime) of a new database's first writes: plans
    // made while the tables were empty scan them whole (the foreign-key checks' most of all), and
    // the figures should be those of a server that has been up for more than its first minute.
    await load(port, 'warm', 1000, 1024);
    await pool.query('analyze');
    for (const [label, bytes, count] of [['1 KB', 1024, Number(process.env.BENCH_INGEST_1K ?? 6000)], ['20 KB', 20 * 1024, Number(process.env.BENCH_INGEST_20K ?? 1500)]] as const) {
      const rate = await load(port, `run${bytes}`, count, bytes);
      const { rows } = await pool.query(`select count(*)::int as n from messages where message_id like $1`, [`run${bytes}-%`]);
      if (rows[0].n !== count) throw new Error(`expected ${count} stored messages, found ${rows[0].n}`);
      console.log(`  ${label.padEnd(6)} ${rate.toFixed(0).padStart(6)} msgs/s   (${count} messages, all stored; server peak RSS ${peakRssMb(server).toFixed(0)} MB)`);
    }
    const big = await load(port, 'big', 20, 5 * 1024 * 1024);
    console.log(`  5 MB   ${big.toFixed(1).padStart(6)} msgs/s   (20 messages; server peak RSS ${peakRssMb(server).toFixed(0)} MB)`);
    await pool.end();
  } finally {
    server?.kill('SIGTERM');
    await new Promise((r) => server?.once('exit', r) ?? r(null));
    await bench.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
