/*
 * Ingest over SMTP: 20 concurrent sessions that reuse their connections, against a real
 * `listkeeper serve --smtp` process. Messages are committed and indexed (tsvector + GIN) and
 * threaded (a third are replies) before each 250. Prints msgs/s for 1 KB and 20 KB messages and
 * the server's peak memory, to show that memory does not grow with message size.
 *
 * Every post is authenticated as it arrives (SPF, DKIM, DMARC, ARC: src/core/post-authentication.ts),
 * so the server's DNS is a stub in this process (test/helpers/stub-dns.ts, over UDP through
 * DNS_SERVERS): bench.example lets loopback send (SPF), publishes a DKIM key and DMARC p=none.
 * The 1 KB DKIM-signed run measures the checks at their dearest: a signature to verify besides
 * the SPF and DMARC lookups every post makes.
 *
 * The per-connection row sends as many MTAs do: a new connection for every post, 20 at a time,
 * through Postfix's smtp-source (C, so the client costs the shared cores little).
 *
 * Rows: 1k, 20k, signed, 5mb, per-connection (`npm run bench -- ingest:per-connection`).
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import pg from 'pg';
import { LOOPBACK_SPF, StubDns } from '../test/helpers/stub-dns.ts';
import { benchDatabase } from './bench-db.ts';
import { spawnListkeeper } from './http-load.ts';
import { describeMemory, peakMemoryDuring, systemMemory } from './pss.ts';
import { dotStuff, SmtpSession } from './smtp-client.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SESSIONS = 20;
const SMTP_SOURCE = '/usr/sbin/smtp-source';
const ROWS = ['1k', '20k', 'signed', '5mb', 'per-connection'];
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

function messageText(run: string, n: number, bytes: number): string {
  const replyTo = n % 3 === 2 ? `In-Reply-To: <${run}-${n - 1}@bench.example>\nReferences: <${run}-${n - 2}@bench.example> <${run}-${n - 1}@bench.example>\n` : '';
  const head = `From: Sender ${n % 50} <sender${n % 50}@bench.example>\nTo: bench@lists.bench.example\nSubject: Benchmark message ${n}\nDate: ${new Date(Date.UTC(2026, 0, 1) + n * 60_000).toUTCString()}\nMessage-ID: <${run}-${n}@bench.example>\n${replyTo}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n`;
  return head + body(bytes - head.length, n + 1);
}

function messageFor(run: string, n: number, bytes: number): Buffer {
  return dotStuff(messageText(run, n, bytes));
}

// The authors' DKIM key (RSA-2048, as most senders use), published by the stub DNS below.
const AUTHOR_KEY = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const AUTHOR_DKIM = { signingDomain: 'bench.example', selector: 'bench', privateKey: AUTHOR_KEY.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), canonicalization: 'relaxed/relaxed' };

/**
 * The same messages signed by their author's domain (signed here, before the clock starts). Each
 * signature is checked here first: mailauth's signer makes a bad one about once in 2,000 messages
 * (dkimpy's dkimverify refuses them too), and the run counts on every post passing.
 */
async function signedMessages(run: string, count: number, bytes: number): Promise<Buffer[]> {
  const record = `v=DKIM1; k=rsa; p=${AUTHOR_KEY.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  const out: Buffer[] = [];
  for (let n = 0; out.length < count; n++) {
    const text = messageText(run, n, bytes).replace(/\r?\n/g, '\r\n');
    const { signatures } = await dkimSign(text, { ...AUTHOR_DKIM, signatureData: [AUTHOR_DKIM] });
    const check = await dkimVerify(signatures + text, { resolver: async () => [[record]] });
    if (check.results[0]?.status.result === 'pass') out.push(dotStuff(signatures + text));
  }
  return out;
}

async function startDns(): Promise<{ dns: StubDns; servers: string }> {
  const dns = new StubDns({ defaultSpf: LOOPBACK_SPF });
  const servers = await dns.start();
  dns.set('bench._domainkey.bench.example', { txt: [`v=DKIM1; k=rsa; p=${AUTHOR_KEY.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`] });
  dns.set('_dmarc.bench.example', { txt: ['v=DMARC1; p=none'] });
  return { dns, servers };
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

async function startServer(url: string, port: number, dnsServers: string): Promise<ChildProcess> {
  const child = spawnListkeeper(ROOT, ['serve', '--smtp'], {
    env: { ...process.env, DATABASE_URL: url, SMTP_PORT: String(port), LOG_LEVEL: 'warn', SMTP_MAX_SIZE: String(64 * 1024 * 1024), MAIL_DOMAIN: 'lists.bench.example', DNS_SERVERS: dnsServers },
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

async function load(port: number, run: string, count: number, bytes: number, prepared?: Buffer[]): Promise<number> {
  const messages = prepared ?? Array.from({ length: count }, (_, n) => messageFor(run, n, bytes));
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

/**
 * `count` 1 KB posts, each over its own connection, SESSIONS connections at a time (smtp-source
 * without -d). Returns msgs/s; the caller checks that every post was stored.
 */
async function loadPerConnection(port: number, count: number): Promise<number> {
  const started = performance.now();
  const child = spawn(SMTP_SOURCE, ['-s', String(SESSIONS), '-m', String(count), '-l', '1024', '-M', 'source.bench.example',
    '-f', 'sender@bench.example', '-t', 'bench@lists.bench.example', `127.0.0.1:${port}`], { stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`smtp-source exited with ${code}`);
  return count / ((performance.now() - started) / 1000);
}

export async function run(rows: string[] = ROWS): Promise<void> {
  const unknown = rows.filter((r) => !ROWS.includes(r));
  if (unknown.length) throw new Error(`no such ingest row: ${unknown.join(', ')} (rows: ${ROWS.join(', ')})`);
  if (rows.includes('per-connection') && !fs.existsSync(SMTP_SOURCE)) throw new Error(`${SMTP_SOURCE} is missing: apt-get install postfix`);
  const bench = await benchDatabase('lk_bench_ingest');
  let server: ChildProcess | undefined;
  const { dns, servers } = await startDns();
  try {
    const port = await freePort();
    // Signed before the server starts: signing is the sender's work, not the listener's.
    const signed = rows.includes('signed') ? await signedMessages('signed', Number(process.env.BENCH_INGEST_SIGNED ?? 4000), 1024) : [];
    server = await startServer(bench.url, port, servers);
    const pool = new pg.Pool({ connectionString: bench.url, max: 2 });
    // An idle connection ended from outside (other work on a shared server) is replaced, not fatal.
    pool.on('error', () => undefined);
    await pool.query(`insert into lists (address, local_part, domain, name, post_policy) values ('bench@lists.bench.example', 'bench', 'lists.bench.example', 'bench', 'open')`);
    console.log(`ingest over SMTP, ${SESSIONS} sessions reusing connections, authenticated (SPF, DKIM, DMARC, ARC; stub DNS), committed + indexed + threaded before 250`);
    // Warm up JIT, connections and their prepared statements. Then gather statistics, as
    // autovacuum does within a minute (autovacuum_naptime) of a new database's first writes: plans
    // made while the tables were empty scan them whole (the foreign-key checks' most of all), and
    // the figures should be those of a server that has been up for more than its first minute.
    await load(port, 'warm', 1000, 1024);
    await pool.query('analyze');
    for (const [row, label, bytes, count] of [['1k', '1 KB', 1024, Number(process.env.BENCH_INGEST_1K ?? 6000)], ['20k', '20 KB', 20 * 1024, Number(process.env.BENCH_INGEST_20K ?? 1500)]] as const) {
      if (!rows.includes(row)) continue;
      const { result: rate, peak } = await peakMemoryDuring(load(port, `run${bytes}`, count, bytes), () => systemMemory(server!.pid!, bench.url, bench.postmasterPid));
      const { rows: stored } = await pool.query(`select count(*)::int as n from messages where message_id like $1`, [`run${bytes}-%`]);
      if (stored[0].n !== count) throw new Error(`expected ${count} stored messages, found ${stored[0].n}`);
      console.log(`  ${label.padEnd(6)} ${rate.toFixed(0).padStart(6)} msgs/s   (${count} messages, all stored; server peak RSS ${peakRssMb(server).toFixed(0)} MB)`);
      console.log(`         under this load: ${describeMemory(peak)}`);
    }
    // Authentication at its dearest: each post's RSA-2048 signature verified, its key looked up.
    if (rows.includes('signed')) await signedRow(port, pool, signed);
    if (rows.includes('5mb')) {
      const big = await load(port, 'big', 20, 5 * 1024 * 1024);
      console.log(`  5 MB   ${big.toFixed(1).padStart(6)} msgs/s   (20 messages; server peak RSS ${peakRssMb(server).toFixed(0)} MB)`);
    }
    if (rows.includes('per-connection')) {
      // 20,000: long enough that the first seconds (new connections' code still cold) weigh little.
      const count = Number(process.env.BENCH_INGEST_PER_CONNECTION ?? 20_000);
      const rate = await loadPerConnection(port, count);
      const { rows: stored } = await pool.query(`select count(*)::int as n from messages where message_id like '%@source.bench.example'`);
      if (stored[0].n !== count) throw new Error(`expected ${count} stored messages from smtp-source, found ${stored[0].n}`);
      console.log(`  1 KB, new connection per message ${rate.toFixed(0).padStart(6)} msgs/s   (${count} messages by smtp-source -s ${SESSIONS}, all stored; goal ≥ 1,000)`);
    }
    await pool.end();
  } finally {
    server?.kill('SIGTERM');
    await new Promise((r) => server?.once('exit', r) ?? r(null));
    await bench.drop();
    await dns.stop();
  }
}

/** The DKIM-signed posts, each of which must be stored with dkim=pass and spf=pass. */
async function signedRow(port: number, pool: pg.Pool, signed: Buffer[]) {
  const signedCount = signed.length;
  const signedRate = await load(port, 'signed', signedCount, 1024, signed);
  const { rows: dkimRows } = await pool.query(`select count(*)::int as n from messages where message_id like 'signed-%' and checks->'auth'->>'dkim' = 'pass' and checks->'auth'->>'spf' = 'pass'`);
  if (dkimRows[0].n !== signedCount) {
    const { rows: odd } = await pool.query(`select message_id, checks->'auth' as auth from messages where message_id like 'signed-%' and not (checks->'auth'->>'dkim' = 'pass' and checks->'auth'->>'spf' = 'pass') limit 3`);
    throw new Error(`expected ${signedCount} stored messages with dkim=pass and spf=pass, found ${dkimRows[0].n}: ${JSON.stringify(odd)}`);
  }
  console.log(`  1 KB DKIM-signed ${signedRate.toFixed(0).padStart(6)} msgs/s   (${signedCount} messages, all stored with dkim=pass; goal ≥ 700)`);
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
