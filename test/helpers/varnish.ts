/*
 * A private Varnish (Debian's varnishd 7.1) for the purge tests, with the VCL of
 * docs/operations.md "Behind Varnish" as written: the fenced blocks are read out of the markdown
 * and only the backend's port is replaced. Never the system service: its own working directory
 * (-n), address (-a) and no privilege separation (-j none), in the foreground (-F) as a child.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './cli.ts';
import { alive, childPids } from './proc.ts';

export const VARNISHD = '/usr/sbin/varnishd';
const DOC = path.join(ROOT, 'docs/operations.md');

/** The VCL blocks of the docs: with vmod-xkey, and the ban variant built from it as the docs say. */
export function readVcl(markdown = fs.readFileSync(DOC, 'utf8')): { xkey: string; ban: string } {
  const start = markdown.indexOf('### Behind Varnish');
  const end = markdown.indexOf('\n## ', start + 1);
  const blocks = [...markdown.slice(start, end).matchAll(/^```vcl\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  const xkey = blocks.find((b) => b.startsWith('# /etc/varnish/default.vcl, with vmod-xkey'));
  const banPart = blocks.find((b) => b.startsWith('# /etc/varnish/default.vcl, plain Varnish'));
  if (!xkey || !banPart) throw new Error('docs/operations.md: the two VCL blocks of "Behind Varnish" are missing');
  const branch = (vcl: string) => {
    const from = vcl.indexOf('    if (req.method == "PURGE") {');
    const to = vcl.indexOf('\n    }\n', from) + '\n    }\n'.length;
    if (from < 0 || to < from) throw new Error('docs/operations.md: no PURGE branch in a VCL block');
    return vcl.slice(from, to);
  };
  const ban = xkey.replace('import xkey;', 'import std;').replace(branch(xkey), branch(banPart));
  return { xkey, ban };
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface Varnish {
  url: string;
  port: number;
  /** the listener for purges alone (-a purge=…), where PURGE_URL points */
  purgeUrl: string;
  purgePort: number;
  /** starts it again on the same port (an empty cache: storage is memory) */
  start(): Promise<void>;
  /** SIGKILL to the manager and its cache process */
  kill(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

export async function startVarnish(vcl: string, backendPort: number): Promise<Varnish> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-varnish-'));
  const vclFile = path.join(dir, 'default.vcl');
  fs.writeFileSync(vclFile, vcl.replace('.port = "8080";', `.port = "${backendPort}";`));
  const port = await freePort();
  const purgePort = await freePort();
  let child: ChildProcess | null = null;
  let out = '';
  const pidFile = path.join(dir, 'varnishd.pid');

  const up = async () => {
    out = '';
    child = spawn(VARNISHD, ['-F', '-j', 'none', '-n', path.join(dir, 'work'), '-a', `127.0.0.1:${port}`, '-a', `purge=127.0.0.1:${purgePort}`, '-f', vclFile,
      '-s', 'malloc,32m', '-T', 'none', '-P', pidFile, '-p', 'ban_lurker_sleep=0.01', '-p', 'ban_lurker_age=0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const end = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`varnishd exited: ${out}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > end) throw new Error(`varnishd did not listen within 60 s: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** The cache process is the manager's child: both go, so that the port is free again. */
  const down = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const pids = childPids(c.pid!);
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone already
      }
    }
    await exited;
    for (const pid of pids) {
      while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
    }
  };
  await up();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    purgeUrl: `http://127.0.0.1:${purgePort}/`,
    purgePort,
    start: up,
    kill: () => down('SIGKILL'),
    stop: async () => {
      await down('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
    output: () => out,
  };
}

