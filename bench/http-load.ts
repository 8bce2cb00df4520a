/*
 * HTTP load for the benchmarks: GETs cycling through a list of URLs, on `connections` keep-alive
 * connections for `seconds`, reporting latency percentiles and requests per second.
 *
 * It uses wrk (Debian package `wrk`) when installed: a C client that costs the machine a tenth of
 * what Node's own client does per request, which matters when client and server share two cores.
 * Without wrk it falls back to node:http and says so. Any answer other than 200 fails the run.
 * Also the servers' plumbing the HTTP benchmarks share: a free loopback port, waiting for a server
 * to answer, stopping it.
 */

import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { percentile } from './bench-db.ts';

export interface LoadResult {
  p50: number;
  p95: number;
  max: number;
  requests: number;
  perSecond: number;
}

export const loadClient = hasWrk() ? 'wrk' : 'node:http';

function hasWrk(): boolean {
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
}

export async function load(base: string, urls: string[], opts: { connections: number; seconds: number }): Promise<LoadResult> {
  return loadClient === 'wrk' ? wrk(base, urls, opts) : nodeLoad(base, urls, opts);
}

// The URL list goes to wrk in a file; the script cycles through it and prints its figures as JSON.
const SCRIPT = `
local urls = {}
for line in io.lines(os.getenv("LK_URLS")) do urls[#urls + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", urls[(i - 1) % #urls + 1])
end
local bad = 0
response = function(status) if status ~= 200 then bad = bad + 1 end end
done = function(summary, latency, requests)
  io.write(string.format('LK {"p50":%d,"p95":%d,"max":%d,"requests":%d,"us":%d,"errors":%d}\\n',
    latency:percentile(50), latency:percentile(95), latency.max, summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
end
`;

// Run asynchronously: a benchmark blocked in spawnSync cannot take Ctrl-C and clean up (tsx
// kills a child that does not acknowledge the signal within 60 ms).
async function wrk(base: string, urls: string[], opts: { connections: number; seconds: number }): Promise<LoadResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-wrk-'));
  const remove = () => fs.rmSync(dir, { recursive: true, force: true });
  process.once('exit', remove); // a benchmark that exits on Ctrl-C does not wait for this run
  try {
    fs.writeFileSync(path.join(dir, 'urls'), urls.join('\n') + '\n');
    fs.writeFileSync(path.join(dir, 'load.lua'), SCRIPT);
    // --timeout: wrk's own 2 s would count a slow answer on a busy machine as a failure, not a latency.
    const child = spawn('wrk', ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--timeout', '30s', '-s', path.join(dir, 'load.lua'), base], {
      env: { ...process.env, LK_URLS: path.join(dir, 'urls') }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const status = await new Promise<number | null>((resolve, reject) => child.on('error', reject).on('close', resolve));
    const line = /^LK (\{.*\})$/m.exec(stdout);
    if (status !== 0 || !line) throw new Error(`wrk failed: ${stderr || stdout}`);
    const r = JSON.parse(line[1]);
    if (r.errors > 0) throw new Error(`wrk: ${r.errors} requests failed or did not answer 200 (${urls[0]} …)`);
    return { p50: r.p50 / 1000, p95: r.p95 / 1000, max: r.max / 1000, requests: r.requests, perSecond: Math.round(r.requests / (r.us / 1e6)) };
  } finally {
    process.off('exit', remove);
    remove();
  }
}

async function nodeLoad(base: string, urls: string[], opts: { connections: number; seconds: number }): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.connections });
  const times: number[] = [];
  const t0 = performance.now();
  const until = t0 + opts.seconds * 1000;
  try {
    await Promise.all(Array.from({ length: opts.connections }, async (_, w) => {
      for (let i = w; performance.now() < until; i += opts.connections) times.push(await get(agent, `${base}${urls[i % urls.length]}`));
    }));
  } finally {
    agent.destroy();
  }
  const elapsed = (performance.now() - t0) / 1000;
  const s = times.sort((a, b) => a - b);
  return { p50: percentile(s, 50), p95: percentile(s, 95), max: s[s.length - 1], requests: s.length, perSecond: Math.round(s.length / elapsed) };
}

/**
 * Asks for each URL once, one at a time (to warm caches before a measurement), on connections
 * closed afterwards: one left idle through a long measurement would be closed by the server.
 */
export async function warm(base: string, urls: string[]): Promise<void> {
  const agent = new http.Agent({ keepAlive: true });
  try {
    for (const u of urls) await get(agent, `${base}${u}`);
  } finally {
    agent.destroy();
  }
}

/** One GET, resolving with its time in ms; anything but 200 rejects. */
function get(agent: http.Agent, url: string): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    http.get(url, { agent }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`${url}: HTTP ${res.statusCode}`));
      res.on('data', () => undefined);
      res.on('end', () => resolve(performance.now() - t));
    }).on('error', reject);
  });
}

/**
 * `listkeeper ARGS` started as a user starts it: the bin itself, so that the node flags on its #!
 * line apply (bin/listkeeper.js: the heap sizes the memory figures are about). `root`: the
 * checkout to run. BENCH_PROFILE=DIR adds a CPU profile: node is then started by name with the
 * #! line's flags and --cpu-prof (Node 20 refuses --cpu-prof in NODE_OPTIONS).
 */
export function spawnListkeeper(root: string, args: string[], opts: SpawnOptions & { env: NodeJS.ProcessEnv }): ChildProcess {
  const bin = path.join(root, 'bin/listkeeper.js');
  if (!process.env.BENCH_PROFILE) return spawn(bin, args, opts);
  const shebang = fs.readFileSync(bin, 'utf8').split('\n', 1)[0];
  const flags = shebang.split(/\s+/).filter((f) => f.startsWith('--'));
  return spawn(process.execPath, [...flags, '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`, bin, ...args], opts);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().on('error', reject).listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Waits until `url` answers 200, for at most `seconds`; each try has its own 2 s deadline. */
export async function waitFor(url: string, seconds = 30): Promise<void> {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within ${seconds} s`);
}

/** SIGTERM, and SIGKILL if the process has not exited within `seconds`. */
export async function stopProcess(child: ChildProcess, seconds = 10): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), seconds * 1000);
  await exited;
  clearTimeout(timer);
}

/** One GET, read to its end: how long it took, in ms. Any answer other than 200 throws. */
export async function timed(url: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(url);
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  return performance.now() - t;
}
